//! Runs the AXL Go binary as a child process and keeps it running.
//!
//! [`Supervisor::start`] makes sure the node key exists ([`key::ensure_key`]), writes
//! AXL's `node-config.json` into the data directory, and spawns
//! `<bin> -config <data_dir>/node-config.json` in its own process group (so a Ctrl-C
//! on the terminal reaches the daemon, which then stops AXL in order). Each line the
//! child prints goes to `tracing` (target `axl`, prefixed `[axl]`). The node counts as
//! running once `GET /topology` answers; if it exits, it is restarted after an
//! exponential back-off (250 ms doubling to 30 s, back to 250 ms after a stable run).
//! [`Supervisor::shutdown`] kills the child and waits for it, and dropping the
//! supervisor (or the runtime) kills it too, so no AXL process outlives the daemon,
//! except when the daemon itself is SIGKILLed.

pub mod key;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{AxlClient, AxlError, Transport as _};
use crate::backoff::Backoff;

/// Name of the config file written into the data directory.
pub const CONFIG_FILE_NAME: &str = "node-config.json";
/// Log lines from the child longer than this are cut.
const MAX_LOG_LINE: usize = 2000;
/// How often readiness (`GET /topology`) is polled while the child starts.
const READY_POLL: Duration = Duration::from_millis(50);

/// Why the supervisor could not start or the node did not come up.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The data directory or config file could not be written.
    #[error("AXL data dir {path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The node key could not be created or read.
    #[error(transparent)]
    Key(#[from] key::KeyError),
    /// The local API URL was unusable.
    #[error(transparent)]
    Client(#[from] AxlError),
    /// The node did not report running in time.
    #[error("AXL node not running after {0:?} (state {1:?})")]
    NotReady(Duration, SupervisorState),
}

/// What to run and how AXL is configured. Build it with [`SupervisorConfig::new`].
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// The AXL `node` binary.
    pub bin: PathBuf,
    /// Arguments to pass instead of `-config <data_dir>/node-config.json`.
    pub args: Option<Vec<String>>,
    /// Where `node-config.json` is written; the child's working directory.
    pub data_dir: PathBuf,
    /// The node's ed25519 key (PKCS#8 PEM); created if absent.
    pub key_path: PathBuf,
    /// AXL's local HTTP API port (`api_port`), on 127.0.0.1.
    pub api_port: u16,
    /// AXL's internal TCP port inside the mesh (`tcp_port`).
    pub tcp_port: u16,
    /// Peers to dial, e.g. `tls://1.2.3.4:9001` (`Peers`).
    pub peers: Vec<String>,
    /// Addresses to accept peers on, e.g. `tls://0.0.0.0:9001` (`Listen`).
    pub listen: Vec<String>,
    /// AXL's `max_message_size`, when not the 16 MiB default.
    pub max_message_size: Option<usize>,
    /// How long one start may take before the child is killed and retried.
    pub ready_timeout: Duration,
    /// First restart delay.
    pub backoff_min: Duration,
    /// Longest restart delay (`backoff_min` when lower).
    pub backoff_max: Duration,
    /// A run at least this long resets the restart delay to `backoff_min`.
    pub stable_after: Duration,
}

impl SupervisorConfig {
    /// Defaults: key at `<data_dir>/private.pem`, no peers, no listeners, 30 s to start,
    /// restarts after 250 ms doubling to 30 s, reset after a minute of stable running.
    pub fn new(
        bin: impl Into<PathBuf>,
        data_dir: impl Into<PathBuf>,
        api_port: u16,
        tcp_port: u16,
    ) -> Self {
        let data_dir = data_dir.into();
        SupervisorConfig {
            bin: bin.into(),
            args: None,
            key_path: data_dir.join("private.pem"),
            data_dir,
            api_port,
            tcp_port,
            peers: Vec::new(),
            listen: Vec::new(),
            max_message_size: None,
            ready_timeout: Duration::from_secs(30),
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            stable_after: Duration::from_secs(60),
        }
    }

    /// Path of the config file the child reads.
    pub fn config_path(&self) -> PathBuf {
        self.data_dir.join(CONFIG_FILE_NAME)
    }

    /// The local API base URL.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }
}

/// AXL's `node-config.json`: Yggdrasil's fields (capitalised) and AXL's own.
#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct NodeConfigJson<'a> {
    #[serde(rename = "PrivateKeyPath")]
    private_key_path: String,
    #[serde(rename = "Peers")]
    peers: &'a [String],
    #[serde(rename = "Listen")]
    listen: &'a [String],
    api_port: u16,
    tcp_port: u16,
    bridge_addr: &'static str,
    max_message_size: Option<usize>,
}

/// Write `node-config.json` (atomically) for `cfg`; returns its path.
pub fn write_node_config(cfg: &SupervisorConfig) -> Result<PathBuf, SupervisorError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| SupervisorError::Io { path, source }
    };
    crate::files::private_dir(&cfg.data_dir).map_err(io(&cfg.data_dir))?;
    // AXL resolves a relative key path against its working directory; make it absolute.
    let key_path = std::path::absolute(&cfg.key_path).map_err(io(&cfg.key_path))?;
    let json = NodeConfigJson {
        private_key_path: key_path.display().to_string(),
        peers: &cfg.peers,
        listen: &cfg.listen,
        api_port: cfg.api_port,
        tcp_port: cfg.tcp_port,
        bridge_addr: "127.0.0.1",
        max_message_size: cfg.max_message_size,
    };
    let text = serde_json::to_string_pretty(&json).map_err(|e| SupervisorError::Io {
        path: cfg.config_path().display().to_string(),
        source: std::io::Error::other(e),
    })?;
    let path = cfg.config_path();
    let tmp = cfg.data_dir.join(format!(".{CONFIG_FILE_NAME}.tmp"));
    std::fs::write(&tmp, text + "\n").map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(path)
}

/// The child runs in `data_dir`, so every path it is given must not depend on our
/// working directory. A bare program name (no `/`) is left for the `PATH` lookup.
fn absolute_paths(mut cfg: SupervisorConfig) -> Result<SupervisorConfig, SupervisorError> {
    let abs = |p: &Path| {
        std::path::absolute(p).map_err(|source| SupervisorError::Io {
            path: p.display().to_string(),
            source,
        })
    };
    cfg.data_dir = abs(&cfg.data_dir)?;
    cfg.key_path = abs(&cfg.key_path)?;
    if cfg.bin.components().count() > 1 {
        cfg.bin = abs(&cfg.bin)?;
    }
    Ok(cfg)
}

/// Where the supervised node is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SupervisorState {
    /// The child is spawned and its API has not answered yet.
    Starting,
    /// The child's API answered `GET /topology`.
    Running,
    /// The child exited (or failed to start); waiting before the next start.
    Backoff,
    /// Shut down; no child.
    Stopped,
}

/// A snapshot of the supervisor, for `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SupervisorStatus {
    /// Life-cycle state.
    pub state: SupervisorState,
    /// How many times the child was started again after the first start.
    pub restarts: u32,
    /// The current child's process id.
    pub pid: Option<u32>,
    /// How the last child ended (or why it could not be spawned).
    pub last_exit: Option<String>,
}

/// A running supervisor. Dropping it stops the child.
pub struct Supervisor {
    status: watch::Receiver<SupervisorStatus>,
    cancel: CancellationToken,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    api_url: String,
}

impl Supervisor {
    /// Prepare the key and config, then start supervising. Returns at once; use
    /// [`Supervisor::wait_running`] to wait for the API.
    pub async fn start(cfg: SupervisorConfig) -> Result<Supervisor, SupervisorError> {
        let cfg = absolute_paths(cfg)?;
        let key_path = cfg.key_path.clone();
        let origin = tokio::task::spawn_blocking(move || key::ensure_key(&key_path))
            .await
            .map_err(|e| SupervisorError::Io {
                path: cfg.key_path.display().to_string(),
                source: std::io::Error::other(e),
            })??;
        tracing::debug!(target: "axl", ?origin, "AXL node key ready");
        let config_path = write_node_config(&cfg)?;
        let client = AxlClient::new(&cfg.api_url())?;
        let (tx, rx) = watch::channel(SupervisorStatus {
            state: SupervisorState::Starting,
            restarts: 0,
            pid: None,
            last_exit: None,
        });
        let cancel = CancellationToken::new();
        let api_url = cfg.api_url();
        let task = tokio::spawn(supervise(cfg, config_path, client, tx, cancel.clone()));
        Ok(Supervisor {
            status: rx,
            cancel,
            task: tokio::sync::Mutex::new(Some(task)),
            api_url,
        })
    }

    /// The current status.
    pub fn status(&self) -> SupervisorStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn subscribe(&self) -> watch::Receiver<SupervisorStatus> {
        self.status.clone()
    }

    /// The node's local API base URL.
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// Wait until the node is running (its API answered), at most `timeout`.
    pub async fn wait_running(
        &self,
        timeout: Duration,
    ) -> Result<SupervisorStatus, SupervisorError> {
        let mut rx = self.status.clone();
        let waited = tokio::time::timeout(
            timeout,
            rx.wait_for(|s| matches!(s.state, SupervisorState::Running | SupervisorState::Stopped)),
        )
        .await;
        let now = self.status();
        match waited {
            Ok(Ok(_)) if now.state == SupervisorState::Running => Ok(now),
            _ => Err(SupervisorError::NotReady(timeout, now.state)),
        }
    }

    /// Stop supervising: kill the child and wait until it has exited. Idempotent.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        let task = self.task.lock().await.take();
        if let Some(task) = task {
            if let Err(e) = task.await {
                tracing::warn!(target: "axl", error = %e, "AXL supervisor task ended abnormally");
            }
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // The task sees this, kills the child and reaps it. If the runtime is going away
        // instead, the child handle is dropped with `kill_on_drop`.
        self.cancel.cancel();
    }
}

/// How one run of the child ended.
enum RunEnd {
    /// Shutdown was requested (the child has been killed and reaped).
    Cancelled,
    /// The child exited, could not be spawned, or never became ready.
    Ended { ran_for: Duration },
}

async fn supervise(
    cfg: SupervisorConfig,
    config_path: PathBuf,
    client: AxlClient,
    tx: watch::Sender<SupervisorStatus>,
    cancel: CancellationToken,
) {
    let args = cfg
        .args
        .clone()
        .unwrap_or_else(|| vec!["-config".into(), config_path.display().to_string()]);
    let mut backoff = Backoff::new(cfg.backoff_min, cfg.backoff_max);
    let mut first = true;
    loop {
        if !first {
            tx.send_modify(|s| s.restarts += 1);
        }
        first = false;
        tx.send_modify(|s| {
            s.state = SupervisorState::Starting;
            s.pid = None;
        });
        match run_once(&cfg, &args, &client, &tx, &cancel).await {
            RunEnd::Cancelled => break,
            RunEnd::Ended { ran_for } => {
                if ran_for >= cfg.stable_after {
                    backoff.reset();
                }
            }
        }
        tx.send_modify(|s| {
            s.state = SupervisorState::Backoff;
            s.pid = None;
        });
        let delay = backoff.next_wait();
        tracing::info!(target: "axl", delay_ms = delay.as_millis() as u64, "restarting AXL node after back-off");
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    tx.send_modify(|s| {
        s.state = SupervisorState::Stopped;
        s.pid = None;
    });
    tracing::info!(target: "axl", "AXL supervisor stopped");
}

/// Whether an environment variable holds a secret, or says where one is: the keys and
/// tokens of the daemon's settings (`*_PRIVATE_KEY`, `*_API_KEY`, `*_TOKEN`, `*_KEY_PATH`,
/// their `_PATH` forms), `EDGENT_IMPORT_KEY`, and systemd's `CREDENTIALS_DIRECTORY`.
pub fn secret_env(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    let n = n.strip_suffix("_PATH").unwrap_or(&n);
    n == "EDGENT_IMPORT_KEY"
        || n == "CREDENTIALS_DIRECTORY"
        || ["_PRIVATE_KEY", "_API_KEY", "_TOKEN", "_KEY", "_SECRET"]
            .iter()
            .any(|s| n.ends_with(s))
}

async fn run_once(
    cfg: &SupervisorConfig,
    args: &[String],
    client: &AxlClient,
    tx: &watch::Sender<SupervisorStatus>,
    cancel: &CancellationToken,
) -> RunEnd {
    let started = Instant::now();
    let mut cmd = Command::new(&cfg.bin);
    // AXL needs none of the daemon's secrets (the systemd unit puts the wallet key in its
    // environment, the user's .env may too): the child does not inherit them.
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(secret_env) {
            cmd.env_remove(&name);
        }
    }
    cmd.args(args)
        .current_dir(&cfg.data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    {
        // If the daemon dies without running its shutdown (SIGKILL, abort), the kernel
        // kills the AXL child too, so it is never orphaned.
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(target: "axl", bin = %cfg.bin.display(), error = %e, "cannot start the AXL node");
            tx.send_modify(|s| s.last_exit = Some(format!("spawn failed: {e}")));
            return RunEnd::Ended {
                ran_for: Duration::ZERO,
            };
        }
    };
    let pid = child.id();
    tracing::info!(target: "axl", pid, bin = %cfg.bin.display(), "AXL node started");
    tx.send_modify(|s| s.pid = pid);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward_lines(out, "stdout"));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward_lines(err, "stderr"));
    }

    // Starting: wait for the API, the child's exit, or shutdown.
    let deadline = started + cfg.ready_timeout;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                stop_child(&mut child, tx).await;
                return RunEnd::Cancelled;
            }
            status = child.wait() => {
                record_exit(tx, status, "before its API answered");
                return RunEnd::Ended { ran_for: started.elapsed() };
            }
            ready = client.topology() => {
                if ready.is_ok() {
                    break;
                }
            }
        }
        if Instant::now() >= deadline {
            tracing::error!(target: "axl", timeout = ?cfg.ready_timeout, "AXL API did not answer in time; killing the node");
            stop_child(&mut child, tx).await;
            tx.send_modify(|s| s.last_exit = Some("API did not answer in time".into()));
            return RunEnd::Ended {
                ran_for: started.elapsed(),
            };
        }
        tokio::select! {
            _ = cancel.cancelled() => {
                stop_child(&mut child, tx).await;
                return RunEnd::Cancelled;
            }
            _ = tokio::time::sleep(READY_POLL) => {}
        }
    }
    tracing::info!(target: "axl", pid, url = %cfg.api_url(), "AXL node running");
    tx.send_modify(|s| s.state = SupervisorState::Running);

    tokio::select! {
        _ = cancel.cancelled() => {
            stop_child(&mut child, tx).await;
            RunEnd::Cancelled
        }
        status = child.wait() => {
            record_exit(tx, status, "while running");
            RunEnd::Ended { ran_for: started.elapsed() }
        }
    }
}

fn record_exit(
    tx: &watch::Sender<SupervisorStatus>,
    status: std::io::Result<std::process::ExitStatus>,
    when: &str,
) {
    let text = match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("wait failed: {e}"),
    };
    tracing::warn!(target: "axl", exit = %text, "AXL node exited {when}");
    tx.send_modify(|s| {
        s.last_exit = Some(text);
        s.pid = None;
    });
}

/// Kill the child (SIGKILL: AXL keeps no state worth flushing) and reap it.
async fn stop_child(child: &mut Child, tx: &watch::Sender<SupervisorStatus>) {
    #[cfg(unix)]
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // The child leads its own process group: take down anything it started too.
        // SAFETY: plain syscall on a pid we own.
        unsafe {
            libc::killpg(pid, libc::SIGKILL);
        }
    }
    if let Err(e) = child.start_kill() {
        tracing::debug!(target: "axl", error = %e, "AXL node already gone");
    }
    match child.wait().await {
        Ok(s) => {
            tracing::info!(target: "axl", exit = %s, "AXL node stopped");
            tx.send_modify(|st| st.last_exit = Some(s.to_string()));
        }
        Err(e) => tracing::warn!(target: "axl", error = %e, "waiting for the AXL node failed"),
    }
    tx.send_modify(|s| s.pid = None);
}

/// Forward each line of the child's output into `tracing`, prefixed `[axl]`.
async fn forward_lines<R: AsyncRead + Unpin>(stream: R, which: &'static str) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end();
                let shown: String = line.chars().take(MAX_LOG_LINE).collect();
                if is_per_message_line(&shown) {
                    tracing::debug!(target: "axl", stream = which, "[axl] {shown}");
                } else {
                    tracing::info!(target: "axl", stream = which, "[axl] {shown}");
                }
            }
            Err(e) => {
                tracing::debug!(target: "axl", stream = which, error = %e, "AXL output closed");
                break;
            }
        }
    }
}

/// AXL prints a line for every inbound connection (`Connection from peer ...`): at a
/// message's rate that would drown the log, so such lines go to debug.
fn is_per_message_line(line: &str) -> bool {
    line.contains("Connection from peer")
}

#[cfg(test)]
mod line_level_tests {
    use super::is_per_message_line;

    #[test]
    fn connection_lines_are_per_message() {
        assert!(is_per_message_line(
            "2026/05/01 10:00:00 Connection from peer 200:abcd::1"
        ));
        assert!(!is_per_message_line("Listening on tls://0.0.0.0:9001"));
    }
}
