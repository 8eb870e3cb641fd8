//! The AXL supervisor with real child processes.
//!
//! The child is a stand-in for AXL's `node` binary: a shell script, written by the test,
//! that takes AXL's command line (`-config <file>`), reads `api_port` from the config the
//! supervisor wrote, and execs `edgent mesh-sim --nodes 1` on that port, which serves
//! AXL's local HTTP API (the sim is the test harness for that contract). The Go binary
//! itself is not built here.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use edgent::axl::supervisor::key::{ensure_key, KeyError, KeyOrigin};
use edgent::axl::supervisor::{
    write_node_config, Supervisor, SupervisorConfig, SupervisorState, SupervisorStatus,
};
use edgent::axl::{AxlClient, Transport};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn alive(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie would still show "Z".
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.contains(") Z "),
        Err(_) => false,
    }
}

fn openssl_reads_key(path: &Path) -> bool {
    std::process::Command::new("openssl")
        .args(["pkey", "-noout", "-in"])
        .arg(path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Writes the stand-in AXL binary into `dir` and returns its path.
fn standin_axl(dir: &Path) -> PathBuf {
    let path = dir.join("axl-node-standin.sh");
    let script = format!(
        r#"#!/bin/sh
# Stand-in for AXL's `node -config <file>`: AXL's local API from edgent's mesh sim.
[ "$1" = "-config" ] || {{ echo "usage: $0 -config <file>" >&2; exit 64; }}
port=$(sed -n 's/.*"api_port": *\([0-9][0-9]*\).*/\1/p' "$2")
[ -n "$port" ] || {{ echo "no api_port in $2" >&2; exit 65; }}
echo "stand-in AXL node on port $port"
exec "{edgent}" mesh-sim --nodes 1 --base-port "$port" --seed 9
"#,
        edgent = env!("CARGO_BIN_EXE_edgent")
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

async fn wait_status(
    sup: &Supervisor,
    what: &str,
    cond: impl Fn(&SupervisorStatus) -> bool,
) -> SupervisorStatus {
    let mut rx = sup.subscribe();
    let waited = tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|s| cond(s)))
        .await
        .map(|r| r.map(|s| s.clone()));
    match waited {
        Ok(Ok(s)) => s,
        _ => panic!("timed out waiting for {what}; status {:?}", sup.status()),
    }
}

#[test]
fn key_is_created_once_in_openssl_format() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("keys/axl.pem");
    assert_eq!(ensure_key(&key).unwrap(), KeyOrigin::Created);
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(openssl_reads_key(&key), "openssl pkey must accept the key");
    assert_eq!(ensure_key(&key).unwrap(), KeyOrigin::Existing);
    assert_eq!(
        std::fs::read_to_string(&key).unwrap(),
        text,
        "key unchanged"
    );
    let other = dir.path().join("other.pem");
    ensure_key(&other).unwrap();
    assert_ne!(
        std::fs::read_to_string(&other).unwrap(),
        text,
        "fresh randomness"
    );
}

#[test]
fn a_key_made_by_openssl_is_accepted_and_garbage_is_not_touched() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("openssl.pem");
    let made = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    assert_eq!(ensure_key(&key).unwrap(), KeyOrigin::Existing);

    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a key").unwrap();
    assert!(matches!(ensure_key(&bad), Err(KeyError::Malformed { .. })));
    assert_eq!(std::fs::read_to_string(&bad).unwrap(), "not a key");
}

#[test]
fn node_config_has_axl_field_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = SupervisorConfig::new("/nonexistent/node", dir.path().join("axl"), 19002, 17000);
    cfg.peers = vec!["tls://1.2.3.4:9001".into()];
    cfg.listen = vec!["tls://0.0.0.0:9001".into()];
    let path = write_node_config(&cfg).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(v["Peers"], serde_json::json!(["tls://1.2.3.4:9001"]));
    assert_eq!(v["Listen"], serde_json::json!(["tls://0.0.0.0:9001"]));
    assert_eq!(v["api_port"], 19002);
    assert_eq!(v["tcp_port"], 17000);
    assert_eq!(v["bridge_addr"], "127.0.0.1");
    let key_path = v["PrivateKeyPath"].as_str().unwrap();
    assert!(Path::new(key_path).is_absolute());
    assert!(key_path.ends_with("axl/private.pem"));
    assert!(v.get("max_message_size").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_a_killed_node_and_leaves_no_process_behind() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cfg =
        SupervisorConfig::new(standin_axl(dir.path()), dir.path().join("axl"), port, 17001);
    cfg.backoff_min = Duration::from_millis(50);
    let key_path = cfg.key_path.clone();
    let sup = Supervisor::start(cfg.clone()).await.unwrap();
    let first = sup.wait_running(Duration::from_secs(30)).await.unwrap();
    assert_eq!(first.restarts, 0);
    let pid1 = first.pid.expect("pid while running");
    assert!(alive(pid1));
    let client = AxlClient::new(sup.api_url()).unwrap();
    client.topology().await.unwrap();
    let key_text = std::fs::read_to_string(&key_path).unwrap();
    assert!(openssl_reads_key(&key_path));

    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid1.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let second = wait_status(&sup, "a restart", |s| {
        s.restarts == 1 && s.state == SupervisorState::Running
    })
    .await;
    let pid2 = second.pid.expect("pid after restart");
    assert_ne!(pid1, pid2);
    assert!(!alive(pid1));
    assert!(
        second.last_exit.as_deref().unwrap_or("").contains("signal"),
        "{second:?}"
    );
    client.topology().await.unwrap();

    sup.shutdown().await;
    assert_eq!(sup.status().state, SupervisorState::Stopped);
    assert_eq!(sup.status().pid, None);
    assert!(!alive(pid2), "no AXL process may outlive shutdown");
    assert!(client.topology().await.is_err());

    // A second start reuses the key: the node id survives restarts of the daemon.
    let sup = Supervisor::start(cfg).await.unwrap();
    sup.wait_running(Duration::from_secs(30)).await.unwrap();
    assert_eq!(std::fs::read_to_string(&key_path).unwrap(), key_text);
    let pid3 = sup.status().pid.unwrap();
    drop(sup);
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid3) {
        assert!(
            Instant::now() < deadline,
            "dropping the supervisor must stop the node"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_crashing_node_is_retried_with_growing_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = SupervisorConfig::new("/bin/false", dir.path(), free_port(), 17002);
    cfg.backoff_min = Duration::from_millis(20);
    cfg.backoff_max = Duration::from_millis(80);
    let sup = Supervisor::start(cfg).await.unwrap();
    let started = Instant::now();
    let s = wait_status(&sup, "4 restarts", |s| s.restarts >= 4).await;
    // Sleeps of 20 + 40 + 80 + 80 ms come before the 4th restart.
    assert!(started.elapsed() >= Duration::from_millis(220));
    assert_eq!(s.last_exit.as_deref(), Some("exit status: 1"));
    assert!(sup.wait_running(Duration::from_millis(1)).await.is_err());
    sup.shutdown().await;
    assert_eq!(sup.status().state, SupervisorState::Stopped);
}

#[tokio::test]
async fn a_missing_binary_is_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = SupervisorConfig::new(
        dir.path().join("no-such-node"),
        dir.path(),
        free_port(),
        17003,
    );
    cfg.backoff_min = Duration::from_millis(10);
    let sup = Supervisor::start(cfg).await.unwrap();
    let s = wait_status(&sup, "a failed spawn", |s| s.last_exit.is_some()).await;
    assert!(s.last_exit.unwrap().starts_with("spawn failed"));
    sup.shutdown().await;
}

/// Collects formatted log lines in memory.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The child's stdout and stderr lines reach `tracing` with the `[axl]` prefix, and the
/// argument override replaces `-config <file>`. (Single-threaded runtime: the log
/// forwarders run on this thread, under this thread's subscriber.)
#[tokio::test]
async fn child_output_is_logged_with_a_prefix() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = SupervisorConfig::new("/bin/sh", dir.path(), free_port(), 17004);
    cfg.args = Some(vec![
        "-c".into(),
        "echo hello-from-axl; echo oops-on-stderr >&2; exec sleep 30".into(),
    ]);
    let sup = Supervisor::start(cfg).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(logs.text().contains("[axl] hello-from-axl")
        && logs.text().contains("[axl] oops-on-stderr"))
    {
        assert!(Instant::now() < deadline, "logs so far:\n{}", logs.text());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = sup.status().pid.expect("sleep is running");
    assert_eq!(
        sup.status().state,
        SupervisorState::Starting,
        "no API, so not running"
    );
    sup.shutdown().await;
    assert!(!alive(pid));
    assert!(
        !logs.text().contains("PRIVATE KEY"),
        "the key is never logged"
    );
}

/// `path` (absolute) as seen relative to the current directory, via `..` components.
fn relative_to_cwd(path: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap();
    let mut rel = PathBuf::new();
    for _ in cwd.components().skip(1) {
        rel.push("..");
    }
    rel.join(path.strip_prefix("/").unwrap())
}

/// The child runs in the data directory: relative paths from the daemon's point of view
/// must still point at the right files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_paths_are_resolved_before_the_child_changes_directory() {
    let dir = tempfile::tempdir().unwrap();
    let bin = relative_to_cwd(&standin_axl(dir.path()));
    let data = relative_to_cwd(&dir.path().join("axl-data"));
    assert!(bin.is_relative() && data.is_relative());
    let sup = Supervisor::start(SupervisorConfig::new(bin, data, free_port(), 17005))
        .await
        .unwrap();
    sup.wait_running(Duration::from_secs(30)).await.unwrap();
    assert!(openssl_reads_key(&dir.path().join("axl-data/private.pem")));
    sup.shutdown().await;
}
