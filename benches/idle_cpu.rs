//! Idle CPU of one daemon: `edgent mesh-sim --nodes 2` and one `edgent run` (role both,
//! demo backend) attached to node 0, left alone. The daemon's own work while idle is the
//! receive loop polling AXL's `/recv` and the provider's model refresh; on a Jetson that
//! should cost next to nothing. Goal: at most 1% of one core.
//!
//! Prints figures only (`cargo bench --bench idle_cpu`); it asserts nothing.

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{DaemonProc, MeshSimProc};

/// How long the daemon is left to settle after it answers `/healthz`.
const SETTLE: Duration = Duration::from_secs(2);
/// The measured window.
const WINDOW: Duration = Duration::from_secs(30);

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

fn main() {
    let hz = clock_ticks();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().expect("temp dir");
    let daemon = rt.block_on(DaemonProc::start(
        dir.path(),
        &[
            ("EDGENT_ROLE", "both"),
            ("INFERENCE_BACKEND", "demo"),
            ("AXL_API_URL", &mesh.nodes[0].1),
            ("RUST_LOG", "info"),
        ],
    ));
    std::thread::sleep(SETTLE);

    let (dpid, mpid) = (daemon.pid().expect("daemon runs"), mesh.pid());
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
