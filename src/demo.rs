//! `edgent demo`: one delegation end to end on one machine, with nothing else running.
//!
//! It starts a two-node in-process mesh (the AXL HTTP contract harness), a provider
//! daemon and a requester daemon attached to it, and sends one `POST /delegate` over real
//! HTTP to the requester, printing each step. It uses Ollama at `OLLAMA_URL` when that
//! answers with a model, else the built-in demo backend, which it labels as such.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde_json::{json, Value};

use crate::axl::sim::MeshSim;
use crate::config::{BackendKind, Config, Role, Sources};
use crate::daemon::Daemon;
use crate::inference::demo::DEMO_MODEL;
use crate::inference::{Backend, DemoBackend, OllamaBackend};

/// Options of `edgent demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Exit after the delegation (status 0 only if it succeeded).
    pub once: bool,
    /// Where the requester's API and dashboard listen.
    pub http_addr: SocketAddr,
    /// The prompt.
    pub prompt: String,
    /// The model; by default the first Ollama model, or the demo backend's.
    pub model: Option<String>,
}

fn step(n: u32, text: &str) {
    println!("[{n}] {text}");
}

async fn pick_backend(base: &Config, wanted: Option<&str>) -> (Arc<dyn Backend>, String, bool) {
    if let Ok(ollama) = OllamaBackend::new(&base.ollama_url) {
        if let Ok(models) = ollama.models().await {
            let chosen = match wanted {
                Some(w) => models
                    .iter()
                    .find(|m| crate::inference::model_matches(w, m))
                    .cloned(),
                None => models.first().cloned(),
            };
            if let Some(m) = chosen {
                return (Arc::new(ollama), m, true);
            }
        }
    }
    (Arc::new(DemoBackend), DEMO_MODEL.to_string(), false)
}

fn node_config(
    base: &Config,
    role: Role,
    ens: &str,
    axl_url: String,
    data: PathBuf,
    http: SocketAddr,
) -> Config {
    let mut c = base.clone();
    c.role = role;
    c.ens_name = Some(ens.to_string());
    c.axl_spawn = false;
    c.axl_api_url = axl_url;
    c.data_dir = data.clone();
    c.axl_key_path = data.join("axl-private.pem");
    c.http_addr = http;
    c.payments = false;
    c
}

/// Run the demo; returns whether the delegation succeeded.
pub async fn run(opts: DemoOptions) -> anyhow::Result<bool> {
    let t0 = Instant::now();
    let mut sources = Sources::from_process()?;
    sources.flags.insert("EDGENT_PAYMENTS".into(), "off".into());
    let base = Config::from_sources(&sources)?;
    let root = std::env::temp_dir().join(format!("edgent-demo-{}", std::process::id()));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;

    println!("edgent demo: one delegation across a two-node AXL-API mesh on this machine");
    let mesh = MeshSim::start(2, 0, 0xED6E)
        .await
        .context("starting the in-process mesh")?;
    step(
        1,
        &format!(
            "mesh up (in-process AXL API harness): requester node {} at {}, provider node {} at {}",
            mesh.key(0).short(),
            mesh.url(0),
            mesh.key(1).short(),
            mesh.url(1)
        ),
    );

    let (backend, model, real) = pick_backend(&base, opts.model.as_deref()).await;
    if real {
        step(
            2,
            &format!(
                "provider backend: Ollama at {} with model {model}",
                base.ollama_url
            ),
        );
    } else {
        step(2, &format!(
            "provider backend: built-in DEMO backend (no Ollama answered at {}; this is not a language model)",
            base.ollama_url
        ));
    }
    let mut pcfg = node_config(
        &base,
        Role::Provider,
        "provider.demo.edgent.eth",
        mesh.url(1),
        root.join("provider"),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    );
    pcfg.backend = if real {
        BackendKind::Ollama
    } else {
        BackendKind::Demo
    };
    let provider = Daemon::start(pcfg, Some(backend))
        .await
        .context("starting the provider daemon")?;
    step(
        3,
        &format!(
            "provider daemon up: API http://{}, advertising {:?}",
            provider.http_addr(),
            provider.provider.status().models
        ),
    );

    let rcfg = node_config(
        &base,
        Role::Requester,
        "requester.demo.edgent.eth",
        mesh.url(0),
        root.join("requester"),
        opts.http_addr,
    );
    let requester = match Daemon::start(rcfg.clone(), None).await {
        Ok(d) => d,
        Err(e) if opts.http_addr.port() != 0 => {
            println!("    ({e:#}; using a free port instead)");
            let mut c = rcfg;
            c.http_addr = SocketAddr::from(([127, 0, 0, 1], 0));
            Daemon::start(c, None)
                .await
                .context("starting the requester daemon")?
        }
        Err(e) => return Err(e.context("starting the requester daemon")),
    };
    let url = format!("http://{}", requester.http_addr());
    step(
        4,
        &format!("requester daemon up: API and dashboard at {url}/"),
    );

    step(
        5,
        &format!(
            "agent -> POST {url}/delegate {{model: {model:?}, prompt: {:?}}}",
            opts.prompt
        ),
    );
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{url}/delegate"))
        .json(&json!({"model": model, "prompt": opts.prompt, "timeout_ms": 120_000}))
        .send()
        .await
        .context("calling /delegate")?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let ok = status.is_success();
    if ok {
        let p = &body["provider"];
        step(
            6,
            &format!(
                "discovered and chose provider {} ({}) in {} ms",
                p["ens"].as_str().unwrap_or("?"),
                p["node_id"]
                    .as_str()
                    .map(|s| &s[..s.len().min(8)])
                    .unwrap_or("?"),
                body["timings"]["discover_ms"]
            ),
        );
        step(
            7,
            &format!(
                "inference on the provider took {} ms",
                body["timings"]["inference_ms"]
            ),
        );
        step(
            8,
            &format!(
                "answer received over AXL, {} ms end to end:",
                body["timings"]["total_ms"]
            ),
        );
        println!("    job {}", body["job_id"].as_str().unwrap_or("?"));
        println!("    output: {}", body["output"].as_str().unwrap_or(""));
    } else {
        step(6, &format!("delegation FAILED: HTTP {status}: {body}"));
    }
    println!("demo finished in {} ms", t0.elapsed().as_millis());

    if !opts.once {
        println!("dashboard: {url}/  (Ctrl-C to stop)");
        crate::shutdown::wait_for_signal().await;
    }
    requester.shutdown().await;
    provider.shutdown().await;
    mesh.shutdown();
    let _ = std::fs::remove_dir_all(&root);
    Ok(ok)
}
