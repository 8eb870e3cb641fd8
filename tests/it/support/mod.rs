//! The shared harness of the integration tests: real `edgent` processes (the mesh
//! harness and daemons), the Ollama stub in the test process, and polling helpers.
#![allow(dead_code)]

pub mod chain;
pub mod evil;
pub mod gemma;
pub mod group;
pub mod ollama;
pub mod paid;
pub mod python;
pub mod rpc_count;
pub mod sim;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `edgent` binary under test.
pub fn edgent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_edgent"))
}

/// The root of the repository (where `scripts/` and `tests/python/` are).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cache root the install scripts share: `EDGENT_CACHE`, else `~/.cache/edgent`.
pub fn cache_root() -> PathBuf {
    match std::env::var_os("EDGENT_CACHE") {
        Some(c) => PathBuf::from(c),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".cache/edgent"),
    }
}

/// A file an install script caches: `$var` when set, else `rel` under [`cache_root`].
/// Panics (fails the test) when it is missing, naming `what` and the `script` that makes
/// it: these tests never skip.
pub fn cached_file(var: &str, rel: &str, what: &str, script: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_root().join(rel));
    assert!(
        path.is_file(),
        "{what} is missing at {}: run `bash scripts/{script}` (scripts/test.sh does) or set {var}",
        path.display()
    );
    path
}

/// A free TCP port on 127.0.0.1, below the kernel's ephemeral range ([`free_port_block`]):
/// a port the kernel handed out (`bind(0)`) was, between this check and the server's bind,
/// taken by another test's client connection once ("Address already in use" on a daemon's
/// `EDGENT_HTTP_ADDR`).
pub fn free_port() -> u16 {
    free_port_block(1)
}

/// The first of `n` consecutive free TCP ports on 127.0.0.1, below the kernel's ephemeral
/// range (32768 and up), so that no client connection of a test running alongside can take
/// one of them between this check and the bind of the process given the block (a mesh-sim
/// binds `base..base+n`).
pub fn free_port_block(n: u16) -> u16 {
    for _ in 0..1000 {
        let base = fastrand::u16(20_000..32_000 - n);
        let all_free = (base..base + n).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no block of {n} free ports below 32000");
}

/// An HTTP client for the tests' servers on 127.0.0.1 (no proxy from the environment).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// Poll `cond` until it holds, or panic after `timeout` (as [`eventually`]).
pub async fn until<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually(what, timeout, || {
        let holds = cond();
        async move { holds.await.then_some(()) }
    })
    .await
}

/// Poll `f` until it returns Some, or panic after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match poll(timeout, f).await {
        Some(v) => v,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// Poll `f` until it returns Some; `None` once `timeout` passed (for a caller that says
/// itself what was missing).
pub async fn poll<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut delay = Duration::from_millis(10);
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}

/// `edgent mesh-sim` as a child process.
pub struct MeshSimProc {
    child: Child,
    /// (node id, API URL) per node.
    pub nodes: Vec<(String, String)>,
}

impl MeshSimProc {
    /// Start `n` nodes on ports `base..base+n` and read the printed ids.
    pub fn start(n: usize, base_port: u16) -> MeshSimProc {
        MeshSimProc::start_with(n, &["--base-port", &base_port.to_string()])
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for MeshSimProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An `edgent run` daemon as a child process.
pub struct DaemonProc {
    child: Option<Child>,
    env: HashMap<String, String>,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its API base URL.
    pub url: String,
    log: PathBuf,
}

impl DaemonProc {
    /// Start a daemon with `env` on a fresh port, attached to the AXL API at `axl_url`
    /// (or with `AXL_SPAWN` and friends in `env`), and wait until `/healthz` answers.
    pub async fn start(data_dir: &Path, extra: &[(&str, &str)]) -> DaemonProc {
        let port = free_port();
        let mut env: HashMap<String, String> = HashMap::new();
        env.insert("EDGENT_HTTP_ADDR".into(), format!("127.0.0.1:{port}"));
        env.insert("EDGENT_DATA_DIR".into(), data_dir.display().to_string());
        env.insert("EDGENT_PAYMENTS".into(), "off".into());
        env.insert("AXL_SPAWN".into(), "false".into());
        env.insert("DISCOVERY_WINDOW_MS".into(), "1500".into());
        env.insert("RUST_LOG".into(), "info,edgent=debug".into());
        // Spot checks re-run jobs on other providers: off unless a test asks for them
        // (tests/it/spot_checks.rs), so other stories count their own runs.
        env.insert("VERIFY_RATE".into(), "0".into());
        env.insert("VERIFY_FIRST".into(), "0".into());
        // A stray .env in the test's working directory must not leak in.
        env.insert(
            "EDGENT_ENV_FILE".into(),
            data_dir.join("no.env").display().to_string(),
        );
        // The test command's mark of its processes (scripts/leftovers.sh), through the
        // cleared environment: a daemon left running is found.
        if let Ok(run) = std::env::var("EDGENT_TEST_RUN") {
            env.insert("EDGENT_TEST_RUN".into(), run);
        }
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        // Attached to a mesh-sim node: its key file, as an operator gives a real node's, so
        // the provider signs its receipts.
        if let Some(axl) = env
            .get("AXL_API_URL")
            .filter(|_| !env.contains_key("AXL_KEY_PATH"))
        {
            let key = data_dir.join("axl-private.pem");
            if !key.exists() {
                if let Ok(r) = reqwest::get(format!("{axl}/sim/key")).await {
                    if r.status().is_success() {
                        let pem = r.text().await.expect("sim key");
                        std::fs::create_dir_all(data_dir).expect("data dir");
                        std::fs::write(&key, pem).expect("write the AXL key");
                        let private = std::os::unix::fs::PermissionsExt::from_mode(0o600);
                        std::fs::set_permissions(&key, private).expect("key mode");
                    }
                }
            }
        }
        let mut d = DaemonProc {
            child: None,
            env,
            data_dir: data_dir.to_path_buf(),
            url: format!("http://127.0.0.1:{port}"),
            log: data_dir.join("daemon.log"),
        };
        d.spawn().await;
        d
    }

    async fn spawn(&mut self) {
        std::fs::create_dir_all(&self.data_dir).expect("data dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(edgent_bin())
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&self.env)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn edgent run");
        self.child = Some(child);
        let url = self.url.clone();
        let http = reqwest::Client::new();
        let log = self.log.clone();
        let start = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{url}/healthz")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "daemon exited early with {status}; log:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!(
                    "daemon at {url} did not come up; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGTERM and wait for exit; returns whether it exited successfully.
    pub fn stop(&mut self) -> bool {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(s)) = c.try_wait() {
                    return s.success();
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    return false;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        true
    }

    /// SIGKILL (no chance to clean up) and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again after [`DaemonProc::kill`], with the same settings and data.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "daemon is still running");
        self.spawn().await;
    }

    /// Stop and start again with the same settings and data.
    pub async fn restart(&mut self) {
        assert!(
            self.stop(),
            "daemon did not stop cleanly; log:\n{}",
            self.log()
        );
        self.spawn().await;
    }

    /// A request to `path` with the daemon's API token, when it has one.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = reqwest::Client::new().request(method, format!("{}{path}", self.url));
        match self.env.get("EDGENT_API_TOKEN") {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// GET a JSON path (with the token, when the daemon has one).
    pub async fn get(&self, path: &str) -> Value {
        self.request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON")
    }

    /// The text of `/metrics` (OpenMetrics).
    pub async fn metrics(&self) -> String {
        self.request(reqwest::Method::GET, "/metrics")
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("/metrics text")
    }

    /// Job `id` as `/jobs` shows it.
    pub async fn job(&self, id: &str) -> Option<Value> {
        let jobs = self.get("/jobs").await;
        jobs.as_array()?
            .iter()
            .find(|j| j["job_id"].as_str() == Some(id))
            .cloned()
    }

    /// The newest job `/jobs` shows.
    pub async fn newest_job(&self) -> Option<Value> {
        self.get("/jobs").await.as_array()?.first().cloned()
    }

    /// Wait until job `id` is in `state`; returns it.
    pub async fn job_in_state(&self, id: &str, state: &str, within: Duration) -> Value {
        eventually(
            &format!("job {id} {state} at {}", self.url),
            within,
            || async {
                let j = self.job(id).await?;
                (j["state"].as_str() == Some(state)).then_some(j)
            },
        )
        .await
    }

    /// POST /delegate; returns (status, body).
    pub async fn delegate(&self, body: Value) -> (u16, Value) {
        let r = self
            .request(reqwest::Method::POST, "/delegate")
            .json(&body)
            .send()
            .await
            .expect("POST /delegate");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Wait up to `within` until this node's ad cache lists every provider in `ids`;
    /// returns its `/status` then.
    pub async fn knows_providers(&self, ids: &[&str], within: Duration) -> Value {
        eventually("the requester to know every provider", within, || async {
            let st = self.get("/status").await;
            let listed = st["mesh_providers"].as_array()?.clone();
            ids.iter()
                .all(|id| listed.iter().any(|p| p["node_id"] == serde_json::json!(id)))
                .then_some(st)
        })
        .await
    }

    /// POST /delegate with `body` (which asks for `stream: true`); returns the whole NDJSON
    /// stream as text.
    pub async fn delegate_stream(&self, body: Value) -> String {
        self.request(reqwest::Method::POST, "/delegate")
            .json(&body)
            .send()
            .await
            .expect("POST /delegate")
            .text()
            .await
            .expect("the stream's text")
    }
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Whether a process is alive (and not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .split(") ")
            .nth(1)
            .is_some_and(|rest| rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Send raw bytes from one mesh node's API to another node (by its full id).
pub async fn raw_send(from_url: &str, to_id: &str, body: Vec<u8>) -> u16 {
    reqwest::Client::new()
        .post(format!("{from_url}/send"))
        .header("X-Destination-Peer-Id", to_id)
        .body(body)
        .send()
        .await
        .expect("send")
        .status()
        .as_u16()
}

/// Mesh node `from_id` (at `from_url`, running no daemon) announces itself to `to_id`, so
/// that node learns its full key: a node answers a refused task only to a full key it
/// knows (threat model line 26).
pub async fn raw_introduce(from_url: &str, from_id: &str, to_id: &str) {
    let hello = edgent::protocol::Message::Announce(edgent::protocol::Announce {
        node_id: edgent::axl::PeerKey::from_hex(from_id).expect("node id"),
        ens: None,
        known: vec![],
        ad: None,
        ttl_ms: 60_000,
    });
    let code = raw_send(from_url, to_id, hello.encode().expect("announce").to_vec()).await;
    assert_eq!(code, 200, "announce");
}

/// A provider daemon on mesh node 1 and a requester daemon on node 0, with data under
/// `dir`, each given its extra settings; returns `(requester, provider)`.
pub async fn start_pair(
    mesh: &MeshSimProc,
    dir: &Path,
    provider_env: &[(&str, &str)],
    requester_env: &[(&str, &str)],
) -> (DaemonProc, DaemonProc) {
    let with = |node: usize, role: &'static str, extra: &[(&str, &str)]| {
        let mut env: Vec<(String, String)> = vec![
            ("AXL_API_URL".into(), mesh.nodes[node].1.clone()),
            ("EDGENT_ROLE".into(), role.into()),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env
    };
    let p_env = with(1, "provider", provider_env);
    let r_env = with(0, "requester", requester_env);
    let provider = DaemonProc::start_owned(&dir.join("provider"), p_env).await;
    let requester = DaemonProc::start_owned(&dir.join("requester"), r_env).await;
    (requester, provider)
}

/// A requester daemon on node 0 and a provider daemon on node 1 of a `mesh-sim` of
/// `nodes` nodes (the others left free), the provider's inference backend at the URL given
/// to [`Pair::start`]; `backend` (the Ollama stub, the real Ollama) and the daemons' data
/// directory live as long as the pair.
pub struct Pair<B> {
    /// The mesh.
    pub mesh: MeshSimProc,
    /// The requester, on node 0.
    pub requester: DaemonProc,
    /// The provider, on node 1.
    pub provider: DaemonProc,
    /// The provider's backend.
    pub backend: B,
    _dir: tempfile::TempDir,
}

impl<B> Pair<B> {
    /// Start the mesh and both daemons, the provider's `OLLAMA_URL` set to `backend_url`.
    pub async fn start(nodes: usize, backend: B, backend_url: &str) -> Pair<B> {
        let mesh = MeshSimProc::start(nodes, 0);
        let dir = tempfile::tempdir().expect("temp dir");
        let (requester, provider) =
            start_pair(&mesh, dir.path(), &[("OLLAMA_URL", backend_url)], &[]).await;
        Pair {
            mesh,
            requester,
            provider,
            backend,
            _dir: dir,
        }
    }
}

impl Pair<edgent::harness::ollama_stub::OllamaStub> {
    /// [`Pair::start`] with the Ollama stub behaving as `behaviour` as the backend.
    pub async fn with_stub(
        nodes: usize,
        behaviour: edgent::harness::ollama_stub::StubBehaviour,
    ) -> Self {
        let stub = edgent::harness::ollama_stub::OllamaStub::start(behaviour)
            .await
            .expect("Ollama stub");
        let url = stub.url();
        Pair::start(nodes, stub, &url).await
    }
}

impl DaemonProc {
    /// [`DaemonProc::start`] with owned settings.
    pub async fn start_owned(data_dir: &Path, extra: Vec<(String, String)>) -> DaemonProc {
        let borrowed: Vec<(&str, &str)> = extra
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        DaemonProc::start(data_dir, &borrowed).await
    }
}

impl MeshSimProc {
    /// Start `edgent mesh-sim` with `n` nodes on ephemeral ports and the extra arguments
    /// `args`, e.g. `&["--parents", "0,0,0", "--real"]`, `&["--topology", "hubs:2",
    /// "--real", "--time-scale", "0.5"]` or `&["--block-ms", "3000"]` (see
    /// `edgent mesh-sim --help`; `n` must match a `--parents` list). Add `--base-port`
    /// to `args` for fixed ports.
    pub fn start_with(n: usize, args: &[&str]) -> MeshSimProc {
        let mut all: Vec<String> = vec!["mesh-sim".into(), "--nodes".into(), n.to_string()];
        if !args.contains(&"--base-port") {
            all.extend(["--base-port".to_string(), "0".to_string()]);
        }
        all.extend(args.iter().map(|a| a.to_string()));
        let mut child = Command::new(edgent_bin())
            .args(&all)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mesh-sim");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut nodes = Vec::new();
        while nodes.len() < n {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                _ => panic!("mesh-sim {all:?} exited before printing its {n} nodes"),
            };
            let field = |name: &str| {
                line.split(name)
                    .nth(1)
                    .and_then(|s| s.split_whitespace().next())
                    .map(str::to_string)
            };
            if let (Some(id), Some(url)) = (field("id="), field("url=")) {
                nodes.push((id, url));
            }
        }
        MeshSimProc { child, nodes }
    }

    /// POST a `/sim/` control route (e.g. `"/sim/kill/3"`) on the first node that answers
    /// (a down node's port refuses connections); returns (status, JSON body or Null).
    pub async fn sim_post(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        let http = http();
        for (_, url) in &self.nodes {
            let mut req = http.post(format!("{url}{path}"));
            if let Some(b) = &body {
                req = req.json(b);
            }
            if let Ok(r) = req.send().await {
                let status = r.status().as_u16();
                return (status, r.json().await.unwrap_or(Value::Null));
            }
        }
        panic!("no mesh-sim node answered POST {path}");
    }

    /// GET a `/sim/` route (e.g. `"/sim/stats"`) on the first node that answers.
    pub async fn sim_get(&self, path: &str) -> Value {
        let http = http();
        for (_, url) in &self.nodes {
            if let Ok(r) = http.get(format!("{url}{path}")).send().await {
                return r.json().await.expect("JSON from mesh-sim");
            }
        }
        panic!("no mesh-sim node answered GET {path}");
    }

    /// Kill node `i` (SIGKILL-like: its queue and in-flight messages are lost, its port
    /// refuses connections until [`MeshSimProc::restart_node`]).
    pub async fn kill_node(&self, i: usize) {
        let (status, body) = self.sim_post(&format!("/sim/kill/{i}"), None).await;
        assert_eq!(status, 200, "kill node {i}: {body}");
    }

    /// Start node `i` again with the same key and port (killing it first if it runs).
    pub async fn restart_node(&self, i: usize) {
        let (status, body) = self.sim_post(&format!("/sim/restart/{i}"), None).await;
        assert_eq!(status, 200, "restart node {i}: {body}");
    }

    /// The per-node counters of `/sim/stats` (`sent`, `delivered`, `queued`, …).
    pub async fn stats(&self) -> Vec<Value> {
        self.sim_get("/sim/stats")
            .await
            .as_array()
            .cloned()
            .expect("stats array")
    }

    /// Node `i`'s `/topology` as JSON.
    pub async fn topology(&self, i: usize) -> Value {
        http()
            .get(format!("{}/topology", self.nodes[i].1))
            .send()
            .await
            .expect("GET /topology")
            .json()
            .await
            .expect("topology JSON")
    }
}
