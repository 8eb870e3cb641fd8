//! The real Ollama for the tests, and the Python agents that talk to it.
//!
//! [`RealOllama::start`] runs the binary that `scripts/install-ollama.sh` builds, on a free
//! loopback port, with `OLLAMA_MODELS` and `HOME` in a temporary directory and
//! `OLLAMA_NO_CLOUD=1`, and imports the test models that `scripts/make-test-models.py`
//! writes under the names a test gives them ([`TestModel`]: the tiny one answers in
//! milliseconds, the huge one always answers Ollama's real out-of-memory error). A missing binary or venv FAILS the test with the
//! script to run: these tests never skip.
//!
//! Env vars read: `EDGENT_OLLAMA_BIN` (the binary; default the install script's cache
//! path), `EDGENT_CACHE` (the cache root the scripts use), and for the venv those of
//! [`super::python::test_python`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::python::test_python;
use super::{cached_file, group, repo_root};

/// The name the tests give the tiny model.
pub const TINY_MODEL: &str = "edgent-tiny";
/// The name the tests give the model that does not fit.
pub const HUGE_MODEL: &str = "edgent-huge";

/// Which of the test GGUFs a model name is imported from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestModel {
    /// The tiny random-weight llama, imported with `num_thread 1`: answers in milliseconds.
    Tiny,
    /// The same model declaring a 2^28 context: Ollama answers "model requires more
    /// system memory (128.0 GiB) than is available" to every request.
    Huge,
    /// The GGUF of [`TestModel::Huge`] imported with no context of its own (one Modelfile,
    /// so one digest everywhere): it runs at the Ollama's default context, and answers the
    /// out-of-memory error on an Ollama started with [`HUGE_CONTEXT`].
    HugeFile,
    /// The tiny model with a chat template that takes tools (`tools.Modelfile`): Ollama
    /// parses a `{"name", "arguments"}` object in its output as a tool call.
    Tools,
}

/// The name the tests import [`TestModel::Tools`] under.
pub const TOOLS_MODEL: &str = "edgent-tools";

/// `OLLAMA_CONTEXT_LENGTH` under which [`TestModel::HugeFile`] does not fit (2^28 tokens).
pub const HUGE_CONTEXT: (&str, &str) = ("OLLAMA_CONTEXT_LENGTH", "268435456");

/// The Ollama binary: `EDGENT_OLLAMA_BIN`, or where `scripts/install-ollama.sh` puts it.
/// Panics (fails the test) when it is missing.
pub fn ollama_bin() -> PathBuf {
    cached_file(
        "EDGENT_OLLAMA_BIN",
        "ollama-v0.17.4/ollama",
        "the real Ollama",
        "install-ollama.sh",
    )
}

/// The sha256 of the test GGUF `file` (e.g. `tiny.gguf`), by `sha256sum`: what a provider
/// serving a model made from it advertises as its digest.
pub fn gguf_sha256(file: &str) -> String {
    let out = Command::new("sha256sum")
        .arg(test_models_dir().join(file))
        .output()
        .expect("sha256sum");
    assert!(out.status.success(), "sha256sum {file}");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_string()
}

/// The directory with tiny.gguf, huge.gguf and their Modelfiles, made once per test binary.
pub fn test_models_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("edgent-test-models-{}", std::process::id()));
        let out = Command::new(test_python())
            .arg(repo_root().join("scripts/make-test-models.py"))
            .arg(&dir)
            .output()
            .expect("run scripts/make-test-models.py");
        assert!(
            out.status.success(),
            "scripts/make-test-models.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// A real `ollama serve` on a free loopback port, killed on drop with the runners it started.
pub struct RealOllama {
    child: Option<Child>,
    /// Its base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    /// `host:port`, as `OLLAMA_HOST` wants it.
    pub host: String,
    dir: tempfile::TempDir,
}

impl RealOllama {
    /// Start Ollama and import `models`, each a name and the GGUF it is made from (a
    /// provider may serve the tiny model under the name that does not fit elsewhere).
    pub async fn start(models: &[(&str, TestModel)]) -> RealOllama {
        RealOllama::start_seeded(models, &[], |_| {}).await
    }

    /// As [`RealOllama::start`], with `env` added to `ollama serve`'s (e.g. [`HUGE_CONTEXT`]).
    pub async fn start_with_env(models: &[(&str, TestModel)], env: &[(&str, &str)]) -> RealOllama {
        RealOllama::start_seeded(models, env, |_| {}).await
    }

    /// As [`RealOllama::start_with_env`], with `seed` filling the fresh models directory (the
    /// path it gets) before `ollama serve` starts (see [`super::gemma`]).
    pub async fn start_seeded(
        models: &[(&str, TestModel)],
        env: &[(&str, &str)],
        seed: impl FnOnce(&Path),
    ) -> RealOllama {
        let bin = ollama_bin();
        let dir = tempfile::tempdir().expect("temp dir");
        seed(&dir.path().join("models"));
        let port = super::free_port();
        let host = format!("127.0.0.1:{port}");
        std::fs::create_dir_all(dir.path().join("home")).expect("home");
        let log = std::fs::File::create(dir.path().join("ollama.log")).expect("log");
        // In a process group of its own: the runner `serve` starts ends with it on drop.
        let child = group::own_group(&mut Command::new(&bin))
            .arg("serve")
            .envs(ollama_env(dir.path(), &host))
            .envs(env.iter().copied())
            // Gin's access log (one line per request) goes to stdout, the rest to stderr.
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn ollama serve");
        let mut o = RealOllama {
            child: Some(child),
            url: format!("http://{host}"),
            host,
            dir,
        };
        o.wait_ready().await;
        for (name, model) in models {
            let models_dir = test_models_dir();
            let file = match model {
                TestModel::Tiny => "tiny.Modelfile",
                TestModel::Huge => "huge.Modelfile",
                TestModel::HugeFile => "hugefile.Modelfile",
                TestModel::Tools => "tools.Modelfile",
            };
            let out = Command::new(&bin)
                .args(["create", name, "-f"])
                .arg(models_dir.join(file))
                .envs(ollama_env(o.dir.path(), &o.host))
                .output()
                .expect("ollama create");
            assert!(
                out.status.success(),
                "ollama create {name} failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                o.log()
            );
        }
        o
    }

    async fn wait_ready(&mut self) {
        let http = reqwest::Client::new();
        let start = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{}/api/version", self.url)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("ollama serve exited with {st}:\n{}", self.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "ollama serve did not answer within 60 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id of `ollama serve` (its runners are its children).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Ollama's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ollama.log")).unwrap_or_default()
    }

    /// The model runners `ollama serve` started: its children whose command line is
    /// `ollama runner ...`, found by their parent pid in `/proc`.
    pub fn runner_pids(&self) -> Vec<u32> {
        let Some(serve) = self.child.as_ref().map(Child::id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // `pid (comm) state ppid ...`: the fields after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let runner = cmdline.split(|&b| b == 0).any(|a| a == b"runner");
            if ppid == Some(serve) && runner {
                out.push(pid);
            }
        }
        out
    }

    /// Kill (SIGKILL, as the kernel's out-of-memory killer does) every model runner of this
    /// Ollama; returns their pids. Panics when there is none (the test expected one).
    pub fn kill_runners(&self) -> Vec<u32> {
        let pids = self.runner_pids();
        assert!(
            !pids.is_empty(),
            "no `ollama runner` to kill:\n{}",
            self.log()
        );
        for pid in &pids {
            let st = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .expect("kill");
            assert!(st.success(), "kill -KILL {pid}");
        }
        pids
    }

    /// How many requests Ollama's log shows for `path` (its gin access log), e.g. `/api/chat`.
    pub fn requests_to(&self, path: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("[GIN]") && l.contains(&format!("\"{path}\"")))
            .count()
    }
}

fn ollama_env(dir: &Path, host: &str) -> Vec<(String, String)> {
    vec![
        ("OLLAMA_HOST".into(), host.to_string()),
        (
            "OLLAMA_MODELS".into(),
            dir.join("models").display().to_string(),
        ),
        ("HOME".into(), dir.join("home").display().to_string()),
        ("OLLAMA_NO_CLOUD".into(), "1".into()),
        ("OLLAMA_KEEP_ALIVE".into(), "5m".into()),
    ]
}

impl Drop for RealOllama {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            group::kill_group(&mut c);
            let _ = c.wait();
        }
    }
}

/// Run the Python agent `tests/python/<script>` with the test venv; `env` is added.
/// Returns its stdout parsed as JSON; panics with its output when it fails.
pub fn run_agent(script: &str, env: &[(&str, &str)]) -> serde_json::Value {
    let out = Command::new(test_python())
        .arg(repo_root().join("tests/python").join(script))
        .envs(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .output()
        .expect("run the Python agent");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the Python agent {script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {stdout}"))
}

/// [`run_agent`] on a blocking thread, for async tests.
pub async fn agent(script: &'static str, env: Vec<(String, String)>) -> serde_json::Value {
    tokio::task::spawn_blocking(move || {
        let borrowed: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_agent(script, &borrowed)
    })
    .await
    .expect("agent thread")
}
