//! `edgent demo`: one paid delegation end to end on one machine, with nothing else running.
//!
//! It starts anvil (from the npm package `npm ci` installs), deploys MockUSDC and
//! EdgentEscrow, funds the requester's wallet, starts a two-node in-process mesh (the AXL
//! HTTP contract harness), a provider daemon and a requester daemon attached to it, and
//! sends one `POST /delegate` over real HTTP to the requester, printing each step: stake,
//! inference, proof, verification, and the release transaction. Without anvil it runs
//! `npm ci` to install it; if that fails (or with `--unpaid`) it runs the unpaid flow. It uses Ollama at
//! `OLLAMA_URL` when that answers with a model, else the built-in demo backend, which it
//! labels as such.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use alloy::primitives::{Address, U256};
use anyhow::Context;
use serde_json::{json, Value};

use crate::chain::{ChainSettings, EscrowClient};
use crate::config::{format_usdc, BackendKind, Config, Role, Sources};
use crate::daemon::Daemon;
use crate::harness::anvil::{deploy_local, LocalChain, LocalChainError, LocalDeployment};
use crate::harness::mesh_sim::MeshSim;
use crate::inference::demo::DEMO_MODEL;
use crate::inference::{Backend, DemoBackend, OllamaBackend};

pub mod agent;

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
    /// Skip the chain: run the unpaid flow.
    pub unpaid: bool,
    /// The requester's own Ollama (`--agent-ollama`): the agent then calls the requester's
    /// Ollama API, which tries this Ollama first and offloads to the mesh when it fails
    /// (see [`agent`]); without it the agent calls `/delegate`.
    pub agent_ollama: Option<String>,
}

/// Numbered steps, printed unless quiet.
pub struct Steps {
    n: u32,
    print: bool,
}

impl Steps {
    /// Print each step.
    pub fn loud() -> Steps {
        Steps { n: 0, print: true }
    }

    /// Print nothing (benchmarks).
    pub fn quiet() -> Steps {
        Steps { n: 0, print: false }
    }

    fn say(&mut self, text: &str) {
        self.n += 1;
        if self.print {
            println!("[{}] {text}", self.n);
        }
    }
}

/// Anvil accounts the demo uses: 0 deploys, 1 is the escrow's operator, 2 the requester's
/// wallet, 3 the provider's.
const DEPLOYER: usize = 0;
const OPERATOR: usize = 1;
const REQUESTER_WALLET: usize = 2;
const PROVIDER_WALLET: usize = 3;

/// What the requester's wallet is funded with: 100 USDC.
const DEMO_FUNDS: u64 = 100_000_000;

/// A local chain with the escrow deployed, for the paid demo.
struct DemoChain {
    chain: LocalChain,
    deployment: LocalDeployment,
    /// Reads balances for the summary.
    reader: EscrowClient,
}

impl DemoChain {
    /// The chain settings for a node signing with dev account `wallet`.
    fn settings(&self, wallet: usize) -> ChainSettings {
        let mut s = self.chain.settings(&self.deployment);
        s.wallet_key = Some(self.chain.key(wallet));
        // The provider trusts the deployment's arbiter (the demo's operator account).
        s.trusted_arbiters = vec![self.deployment.operator];
        s.explorer_url = "http://localhost/anvil".into();
        s
    }

    async fn balance(&self, who: Address) -> String {
        match self.reader.usdc_balance(who).await {
            Ok(v) => format_usdc(u64::try_from(v).unwrap_or(u64::MAX)),
            Err(_) => "?".into(),
        }
    }
}

/// Install anvil the way the repository does (`npm ci` next to `package-lock.json`, in
/// the current directory or the source tree), so the Quick start's first command runs the
/// paid demo on a fresh machine.
async fn install_anvil(steps: &mut Steps) -> Result<(), String> {
    let root = [
        std::env::current_dir().ok(),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    ]
    .into_iter()
    .flatten()
    .find(|d| d.join("package-lock.json").is_file())
    .ok_or("no package-lock.json in the current directory or the source tree")?;
    steps.say(&format!(
        "anvil is missing: installing it with `npm ci` in {} (once; needs Node.js and npm)",
        root.display()
    ));
    let status = tokio::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&root)
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .map_err(|e| format!("cannot run npm: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`npm ci` failed ({status})"))
    }
}

/// Start anvil (installing it first when missing) and deploy, or say why not (the demo
/// then runs unpaid).
async fn start_chain(steps: &mut Steps) -> Option<DemoChain> {
    let started = match LocalChain::start().await {
        Err(LocalChainError::AnvilMissing(_)) => match install_anvil(steps).await {
            Ok(()) => LocalChain::start().await,
            Err(why) => {
                steps.say(&format!(
                    "anvil could not be installed: {why}. Running the UNPAID flow instead"
                ));
                return None;
            }
        },
        other => other,
    };
    let chain = match started {
        Ok(c) => c,
        Err(e) => {
            steps.say(&format!(
                "no local chain: {e}. Running the UNPAID flow instead"
            ));
            return None;
        }
    };
    let funds = [(
        chain.signer(REQUESTER_WALLET).address(),
        U256::from(DEMO_FUNDS),
    )];
    match deploy_local(
        &chain.rpc_url(),
        chain.signer(DEPLOYER),
        chain.signer(OPERATOR).address(),
        &funds,
    )
    .await
    {
        Ok(deployment) => {
            let reader = match EscrowClient::connect(&chain.settings(&deployment), None).await {
                Ok(r) => r,
                Err(e) => {
                    steps.say(&format!(
                        "the deployed escrow cannot be read ({e}); running the UNPAID flow instead"
                    ));
                    return None;
                }
            };
            steps.say(&format!(
                "local chain up (anvil at {}, chain {}): MockUSDC {:#x}, EdgentEscrowV4 {:#x}; requester wallet {:#x} funded with {} USDC",
                chain.rpc_url(),
                chain.chain_id(),
                deployment.usdc,
                deployment.escrow,
                chain.signer(REQUESTER_WALLET).address(),
                format_usdc(DEMO_FUNDS)
            ));
            Some(DemoChain {
                chain,
                deployment,
                reader,
            })
        }
        Err(e) => {
            steps.say(&format!(
                "deploying the escrow failed ({e}); running the UNPAID flow instead"
            ));
            None
        }
    }
}

async fn pick_backend(base: &Config, wanted: Option<&str>) -> (Arc<dyn Backend>, String, bool) {
    if let Ok(ollama) = OllamaBackend::new(&base.inference.ollama_url) {
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
    c.node.role = role;
    c.node.ens_name = Some(ens.to_string());
    c.axl.spawn = false;
    c.axl.api_url = axl_url;
    c.node.data_dir = data.clone();
    c.axl.key_path = data.join("axl-private.pem");
    c.node.http_addr = http;
    c.payments_mode = crate::config::PaymentsMode::Off;
    c.payments = crate::config::Payments::Off(None);
    c
}

/// Switch a node's configuration to the paid flow on the demo chain.
fn paid(mut c: Config, chain: &DemoChain, wallet: usize) -> Config {
    c.payments_mode = crate::config::PaymentsMode::On;
    c.payments = crate::config::Payments::On(Box::new(chain.settings(wallet)));
    // Within the local escrow's 30 s dispute window (also the stake's margin).
    c.paid.payment_grace = std::time::Duration::from_secs(5);
    c.paid.payment_tick = std::time::Duration::from_millis(200);
    c
}

/// Two daemons on one machine, over an in-process mesh, paid through a local chain when
/// anvil is there: what `edgent demo` and the phase benchmark run on.
pub struct LocalNet {
    chain: Option<DemoChain>,
    mesh: MeshSim,
    /// The provider daemon.
    pub provider: Daemon,
    /// The requester daemon.
    pub requester: Daemon,
    /// The requester's API base URL.
    pub url: String,
    /// The model the provider serves.
    pub model: String,
    /// The provider's price, base units.
    pub price_units: u64,
    root: PathBuf,
}

impl LocalNet {
    /// Start everything, telling `steps` what came up.
    pub async fn start(opts: &DemoOptions, steps: &mut Steps) -> anyhow::Result<LocalNet> {
        let mut sources = Sources::from_process()?;
        sources.flags.insert("EDGENT_PAYMENTS".into(), "off".into());
        let base = Config::from_sources(&sources)?;
        let root = std::env::temp_dir().join(format!("edgent-demo-{}", std::process::id()));
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;

        let chain = if opts.unpaid {
            None
        } else {
            start_chain(steps).await
        };
        let mesh = MeshSim::start(2, 0, 0xED6E)
            .await
            .context("starting the in-process mesh")?;
        steps.say(&format!(
            "mesh up (in-process AXL API harness): requester node {} at {}, provider node {} at {}",
            mesh.key(0).short(),
            mesh.url(0),
            mesh.key(1).short(),
            mesh.url(1)
        ));

        let (backend, model, real) = pick_backend(&base, opts.model.as_deref()).await;
        if real {
            steps.say(&format!(
                "provider backend: Ollama at {} with model {model}",
                base.inference.ollama_url
            ));
        } else {
            steps.say(&format!(
            "provider backend: built-in DEMO backend (no Ollama answered at {}; this is not a language model)",
            base.inference.ollama_url
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
        pcfg.inference.backend = if real {
            BackendKind::Ollama
        } else {
            BackendKind::Demo
        };
        if let Some(c) = &chain {
            pcfg = paid(pcfg, c, PROVIDER_WALLET);
        }
        // The provider signs its receipts with its AXL node's key, as from a key file.
        crate::files::private_dir(&pcfg.node.data_dir)
            .and_then(|()| crate::files::write_private(&pcfg.axl.key_path, &mesh.key_pem(1), true))
            .context("writing the provider's AXL key")?;
        let provider = Daemon::start(pcfg, Some(backend))
            .await
            .context("starting the provider daemon")?;
        steps.say(&format!(
            "provider daemon up: API http://{}, advertising {:?}{}",
            provider.http_addr(),
            provider.provider.status().models,
            match &chain {
                Some(c) => format!(
                    " at {} USDC per job, paid to {:#x}",
                    format_usdc(base.provider.price_units),
                    c.chain.signer(PROVIDER_WALLET).address()
                ),
                None => String::new(),
            }
        ));

        let mut rcfg = node_config(
            &base,
            Role::Requester,
            "requester.demo.edgent.eth",
            mesh.url(0),
            root.join("requester"),
            opts.http_addr,
        );
        if let Some(c) = &chain {
            rcfg = paid(rcfg, c, REQUESTER_WALLET);
        }
        if let Some(own) = &opts.agent_ollama {
            rcfg.inference.ollama_url = own.trim_end_matches('/').to_string();
            // The agent's call must be able to go either way (`oom` or `predict`).
            if matches!(
                rcfg.front.offload,
                crate::config::OffloadMode::Always | crate::config::OffloadMode::Never
            ) {
                rcfg.front.offload = crate::config::OffloadMode::Oom;
            }
        }
        let requester = match Daemon::start(rcfg.clone(), None).await {
            Ok(d) => d,
            Err(e) if opts.http_addr.port() != 0 => {
                println!("    ({e:#}; using a free port instead)");
                let mut c = rcfg;
                c.node.http_addr = SocketAddr::from(([127, 0, 0, 1], 0));
                Daemon::start(c, None)
                    .await
                    .context("starting the requester daemon")?
            }
            Err(e) => return Err(e.context("starting the requester daemon")),
        };
        let url = format!("http://{}", requester.http_addr());
        steps.say(&format!(
            "requester daemon up: API and dashboard at {url}/{}",
            if chain.is_some() {
                " (it releases its stakes with its own wallet)"
            } else {
                ""
            }
        ));
        Ok(LocalNet {
            chain,
            mesh,
            provider,
            requester,
            url,
            model,
            price_units: base.provider.price_units,
            root,
        })
    }

    /// Whether jobs are paid on the local chain.
    pub fn paid(&self) -> bool {
        self.chain.is_some()
    }

    /// Stop the daemons, the mesh and the chain, and remove the data.
    pub async fn shutdown(self) {
        self.requester.shutdown().await;
        self.provider.shutdown().await;
        self.mesh.shutdown();
        drop(self.chain);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Run the demo; returns whether the delegation succeeded.
pub async fn run(opts: DemoOptions) -> anyhow::Result<bool> {
    let t0 = Instant::now();
    println!("edgent demo: one delegation across a two-node AXL-API mesh on this machine");
    let mut steps = Steps::loud();
    let net = LocalNet::start(&opts, &mut steps).await?;
    let ok = match &opts.agent_ollama {
        Some(own) => agent::call(&net, own, &opts.prompt, &mut steps).await?,
        None => delegate(&net, &opts.prompt, &mut steps).await?,
    };
    println!("demo finished in {} ms", t0.elapsed().as_millis());

    if !opts.once {
        println!("dashboard: {}/  (Ctrl-C to stop)", net.url);
        crate::shutdown::wait_for_signal().await;
    }
    net.shutdown().await;
    Ok(ok)
}

impl DemoChain {
    /// The requester's, the provider's and the escrow's USDC, as one line.
    async fn balances(&self) -> String {
        format!(
            "balances now: requester {} USDC, provider {} USDC, escrow {} USDC",
            self.balance(self.chain.signer(REQUESTER_WALLET).address())
                .await,
            self.balance(self.chain.signer(PROVIDER_WALLET).address())
                .await,
            self.balance(self.deployment.escrow).await
        )
    }
}

/// The agent calls `/delegate` on the requester, waiting until the payment settled.
async fn delegate(net: &LocalNet, prompt: &str, steps: &mut Steps) -> anyhow::Result<bool> {
    let (url, model, chain) = (net.url.clone(), net.model.clone(), net.chain.as_ref());
    steps.say(&format!(
        "agent -> POST {url}/delegate {{model: {model:?}, prompt: {:?}{}}}",
        prompt,
        if chain.is_some() {
            ", wait: \"settled\""
        } else {
            ""
        }
    ));
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{url}/delegate"))
        .json(&json!({"model": model, "prompt": prompt, "timeout_ms": 120_000, "wait": "settled"}))
        .send()
        .await
        .context("calling /delegate")?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let ok = status.is_success();
    if ok {
        let p = &body["provider"];
        let t = &body["timings"];
        steps.say(&format!(
            "discovered and chose provider {} ({}) in {} ms",
            p["ens"].as_str().unwrap_or("?"),
            p["node_id"]
                .as_str()
                .map(|s| &s[..s.len().min(8)])
                .unwrap_or("?"),
            t["discover_ms"]
        ));
        let pay = &body["payment"];
        if pay.is_object() {
            // With an EIP-3009 authorization (the default) the requester signs and the
            // provider's own transaction carries the stake: the requester sends none.
            let how = match pay["stake_tx"].as_str() {
                Some(tx) if !tx.is_empty() => format!("tx {tx}"),
                _ => "signed an EIP-3009 authorization; the provider's transaction carried it"
                    .to_string(),
            };
            steps.say(&format!(
                "staked {} USDC in the escrow for job {}: {how} ({} ms)",
                format_usdc(pay["amount_units"].as_u64().unwrap_or(0)),
                body["job_id"].as_str().unwrap_or("?"),
                t["stake_ms"]
            ));
        }
        steps.say(&format!(
            "provider {}ran the inference in {} ms; the answer came back over AXL",
            if pay.is_object() {
                "checked the stake and "
            } else {
                ""
            },
            t["inference_ms"]
        ));
        if pay.is_object() {
            steps.say(&format!(
                "provider proved the output (Groth16) and sent an x402 payment_request over AXL ({} ms after the answer)",
                t["prove_ms"]
            ));
            steps.say(&format!(
                "requester verified the commitments and the proof in {} ms: proof_verified = {}",
                t["verify_ms"], body["proof_verified"]
            ));
            steps.say(&format!(
                "released to the provider in {} ms: tx {} ({})",
                t["settle_ms"],
                pay["tx_hash"].as_str().unwrap_or("?"),
                pay["status"].as_str().unwrap_or("?")
            ));
            if let Some(c) = chain {
                steps.say(&c.balances().await);
            }
        }
        steps.say(&format!("done, {} ms end to end:", t["total_ms"]));
        println!("    job {}", body["job_id"].as_str().unwrap_or("?"));
        println!("    output: {}", body["output"].as_str().unwrap_or(""));
    } else {
        steps.say(&format!("delegation FAILED: HTTP {status}: {body}"));
    }
    Ok(ok)
}
