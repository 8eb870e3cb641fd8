//! Idle CPU of one daemon: `edgent mesh-sim --nodes 2` and one `edgent run` (role both,
//! demo backend) attached to node 0, left alone. The daemon's own work while idle is the
//! receive loop polling AXL's `/recv` and the provider's model refresh; on a Jetson that
//! should cost next to nothing. Goal: at most 1% of one core.
//!
//! Prints figures only (`cargo bench --bench idle_cpu`); it asserts nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the daemon is left to settle after it answers `/healthz`.
const SETTLE: Duration = Duration::from_secs(2);
/// The measured window.
const WINDOW: Duration = Duration::from_secs(30);

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Clock ticks per second, from `getconf CLK_TCK`.
fn clock_ticks() -> f64 {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("run getconf CLK_TCK");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("getconf CLK_TCK printed a number")
}

/// utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/<pid>/stat).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
    // The command name (field 2) may contain spaces; fields after it follow the last ')'.
    let rest = stat.rsplit_once(") ").expect("stat has a ')'").1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 -> index 11, stime 15 -> index 12.
    let utime: u64 = fields[11].parse().expect("utime");
    let stime: u64 = fields[12].parse().expect("stime");
    utime + stime
}

/// GET `path` on 127.0.0.1:`port` with plain HTTP/1.1; the status code, if any answer.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn main() {
    let bin = env!("CARGO_BIN_EXE_edgent");
    let hz = clock_ticks();

    let mut mesh = Command::new(bin)
        .args(["mesh-sim", "--nodes", "2", "--base-port", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn edgent mesh-sim");
    let stdout = mesh.stdout.take().expect("mesh-sim stdout");
    let mesh = Proc(mesh);
    let mut lines = BufReader::new(stdout).lines();
    let mut urls = Vec::new();
    while urls.len() < 2 {
        let line = lines
            .next()
            .expect("mesh-sim printed its nodes")
            .expect("read mesh-sim stdout");
        if let Some(url) = line
            .split("url=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
        {
            urls.push(url.to_string());
        }
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let daemon = Command::new(bin)
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("EDGENT_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("EDGENT_DATA_DIR", dir.path())
        .env("EDGENT_ENV_FILE", dir.path().join("no.env"))
        .env("EDGENT_ROLE", "both")
        .env("EDGENT_PAYMENTS", "off")
        .env("INFERENCE_BACKEND", "demo")
        .env("AXL_SPAWN", "false")
        .env("AXL_API_URL", &urls[0])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn edgent run");
    let daemon = Proc(daemon);
    let start = Instant::now();
    while http_status(port, "/healthz") != Some(200) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the daemon did not answer /healthz within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(SETTLE);

    let (dpid, mpid) = (daemon.0.id(), mesh.0.id());
    let (d0, m0, t0) = (cpu_ticks(dpid), cpu_ticks(mpid), Instant::now());
    std::thread::sleep(WINDOW);
    let (d1, m1, elapsed) = (cpu_ticks(dpid), cpu_ticks(mpid), t0.elapsed().as_secs_f64());

    let pct = |ticks: u64| (ticks as f64 / hz) / elapsed * 100.0;
    println!(
        "daemon idle CPU: {:.2}% of one core over {:.0} s ({} ticks at {} Hz)",
        pct(d1 - d0),
        elapsed,
        d1 - d0,
        hz
    );
    println!(
        "harness (edgent mesh-sim, serving the daemon's /recv polls) CPU: {:.2}% of one core over {:.0} s ({} ticks)",
        pct(m1 - m0),
        elapsed,
        m1 - m0
    );
    println!("goal: daemon <= 1% of one core");
}
