//! The `edgent` command line: the daemon, a client for its API, the mesh harness, and
//! the demo.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use edgent::config::{Config, Sources};
use edgent::daemon::Daemon;

#[derive(Parser)]
#[command(
    name = "edgent",
    version,
    about = "Delegate inference over the Gensyn AXL mesh"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon.
    Run(RunArgs),
    /// Delegate one prompt through the local daemon.
    Delegate {
        /// Model to run.
        #[arg(long)]
        model: String,
        /// Highest price, USDC.
        #[arg(long)]
        max_price: Option<String>,
        /// Deadline, milliseconds.
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Paid jobs: answer once the proof checks (`verified`) or once the release is
        /// confirmed (`settled`).
        #[arg(long, value_parser = ["verified", "settled"])]
        wait: Option<String>,
        /// The daemon's API.
        #[arg(long, env = "EDGENT_URL")]
        url: Option<String>,
        /// The prompt.
        prompt: String,
    },
    /// Show the local daemon's status.
    Status {
        /// The daemon's API.
        #[arg(long, env = "EDGENT_URL")]
        url: Option<String>,
    },
    /// List the local daemon's jobs.
    Jobs {
        /// The daemon's API.
        #[arg(long, env = "EDGENT_URL")]
        url: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Serve MCP tools (delegate, list_models, jobs, status) over stdio for an MCP host,
    /// calling the local daemon's HTTP API.
    Mcp {
        /// The daemon's API.
        #[arg(long, env = "EDGENT_API_URL", default_value = edgent::mcp::DEFAULT_API_URL)]
        url: String,
        /// Bearer token for the daemon's API (else `EDGENT_API_TOKEN` from the environment or `.env`).
        #[arg(long, env = "EDGENT_API_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Serve N simulated AXL nodes (a TEST AND DEMO HARNESS for AXL's local HTTP API).
    MeshSim {
        /// Number of nodes.
        #[arg(long, default_value_t = 2)]
        nodes: usize,
        /// Node i serves on base-port + i (0: ephemeral ports).
        #[arg(long, default_value_t = 9002)]
        base_port: u16,
        /// Seed of the node keys (same seed, same ids).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Zero-knowledge proofs: prove an output, verify a proof (snarkjs JSON).
    #[command(subcommand)]
    Zk(edgent::zk::cli::ZkCmd),
    /// The escrow contract: deploy one, or show a job's stake.
    #[command(subcommand)]
    Escrow(edgent::chain::cli::EscrowCmd),
    /// ENS: resolve names, reverse lookups, and this node's text records.
    #[command(subcommand)]
    Ens(edgent::chain::cli::EnsCmd),
    /// One delegation end to end on this machine.
    Demo {
        /// Exit after the delegation; status 0 only if it succeeded.
        #[arg(long)]
        once: bool,
        /// Where the requester's API and dashboard listen.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http_addr: SocketAddr,
        /// Model (default: the first Ollama model, else the built-in demo backend's).
        #[arg(long)]
        model: Option<String>,
        /// Skip the local chain and run the unpaid flow.
        #[arg(long)]
        unpaid: bool,
        /// The prompt.
        #[arg(
            long,
            default_value = "Explain in one sentence why edge devices offload inference."
        )]
        prompt: String,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// EDGENT_HTTP_ADDR
    #[arg(long)]
    http_addr: Option<String>,
    /// EDGENT_DATA_DIR
    #[arg(long)]
    data_dir: Option<String>,
    /// EDGENT_ROLE (requester|provider|both)
    #[arg(long)]
    role: Option<String>,
    /// AXL_API_URL
    #[arg(long)]
    axl_api_url: Option<String>,
    /// Any setting, as KEY=VALUE (repeatable); beats the environment and .env.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// Log to stderr, filtered by `RUST_LOG` from the environment or `.env`, else `default`.
fn init_tracing(default: &str) {
    let directive = Sources::from_process()
        .ok()
        .and_then(|s| s.get("RUST_LOG"))
        .unwrap_or_else(|| default.into());
    let filter = tracing_subscriber::EnvFilter::try_new(&directive).unwrap_or_else(|e| {
        eprintln!("edgent: RUST_LOG {directive:?} is not a valid filter ({e}); using info");
        tracing_subscriber::EnvFilter::new("info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn api_url(url: Option<String>) -> anyhow::Result<String> {
    if let Some(u) = url {
        return Ok(u.trim_end_matches('/').to_string());
    }
    let cfg = Config::from_sources(&Sources::from_process()?)?;
    Ok(format!("http://{}", cfg.http_addr))
}

/// Chain settings from the environment and `.env` (same precedence as the daemon's).
fn chain_settings() -> anyhow::Result<edgent::chain::ChainSettings> {
    let sources = Sources::from_process()?;
    Ok(edgent::chain::ChainSettings::from_lookup(|k| {
        sources.get(k)
    })?)
}

async fn show(resp: reqwest::Response) -> anyhow::Result<ExitCode> {
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .context("the daemon's answer is not JSON")?;
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run_daemon(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut sources = Sources::from_process()?;
    for (key, v) in [
        ("EDGENT_HTTP_ADDR", args.http_addr),
        ("EDGENT_DATA_DIR", args.data_dir),
        ("EDGENT_ROLE", args.role),
        ("AXL_API_URL", args.axl_api_url),
    ] {
        if let Some(v) = v {
            sources.flags.insert(key.into(), v);
        }
    }
    for kv in args.set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
        sources.flags.insert(k.trim().to_string(), v.to_string());
    }
    let config = Config::from_sources(&sources)?;
    let daemon = Daemon::start(config, None).await?;
    let cancel = daemon.cancel_token();
    tokio::select! {
        _ = edgent::shutdown::wait_for_signal() => tracing::info!("signal received, shutting down"),
        _ = cancel.cancelled() => {}
    }
    daemon.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    let http = reqwest::Client::new();
    match cli.cmd {
        Cmd::Run(args) => run_daemon(args).await,
        Cmd::Delegate {
            model,
            max_price,
            timeout_ms,
            wait,
            url,
            prompt,
        } => {
            let url = api_url(url)?;
            let mut body = json!({"model": model, "prompt": prompt});
            if let Some(w) = wait {
                body["wait"] = json!(w);
            }
            if let Some(p) = max_price {
                body["max_price"] = json!(p);
            }
            if let Some(t) = timeout_ms {
                body["timeout_ms"] = json!(t);
            }
            let resp = http
                .post(format!("{url}/delegate"))
                .json(&body)
                .send()
                .await
                .with_context(|| format!("is the daemon running at {url}?"))?;
            show(resp).await
        }
        Cmd::Status { url } => {
            let url = api_url(url)?;
            show(
                http.get(format!("{url}/status"))
                    .send()
                    .await
                    .with_context(|| format!("is the daemon running at {url}?"))?,
            )
            .await
        }
        Cmd::Jobs { url, limit } => {
            let url = api_url(url)?;
            show(
                http.get(format!("{url}/jobs?limit={limit}"))
                    .send()
                    .await
                    .with_context(|| format!("is the daemon running at {url}?"))?,
            )
            .await
        }
        Cmd::Mcp { url, token } => {
            let token = match token {
                Some(t) => Some(t),
                None => Sources::from_process()?.get("EDGENT_API_TOKEN"),
            };
            edgent::mcp::serve_stdio(edgent::mcp::ApiClient::http(&url, token)).await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::MeshSim {
            nodes,
            base_port,
            seed,
        } => {
            let cancel = CancellationToken::new();
            tokio::spawn(edgent::shutdown::cancel_on_signal(cancel.clone()));
            edgent::axl::sim::run_mesh_sim_cli(nodes, base_port, seed, cancel).await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Zk(cmd) => {
            edgent::zk::cli::run(cmd)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Escrow(cmd) => {
            edgent::chain::cli::run(cmd, &chain_settings()?).await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Ens(cmd) => {
            edgent::chain::cli::run_ens(cmd, &chain_settings()?).await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Demo {
            once,
            http_addr,
            model,
            prompt,
            unpaid,
        } => {
            let ok = edgent::demo::run(edgent::demo::DemoOptions {
                once,
                http_addr,
                prompt,
                model,
                unpaid,
            })
            .await?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own steps; its daemons' logs would drown them.
    init_tracing(if matches!(cli.cmd, Cmd::Demo { .. }) {
        "warn"
    } else {
        "info"
    });
    match real_main(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("edgent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
