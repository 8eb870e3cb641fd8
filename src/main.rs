//! The `edgent` command line: the daemon, a client for its API, the mesh harness, and
//! the demo (these two with the cargo feature `harness`, on by default).

#[cfg(feature = "harness")]
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::Value;
#[cfg(feature = "harness")]
use tokio_util::sync::CancellationToken;

use edgent::cli;
use edgent::client::ApiClient;
use edgent::config::{Config, Sources};
use edgent::daemon::Daemon;
use edgent::request::{DelegateRequest, MaxPrice, WaitFor};

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
    /// Delegate a prompt, a conversation (`--messages FILE`) or a chat on standard input
    /// (`--chat`) through the local daemon. Exit codes: 0 answered, 3 no provider, 4
    /// deadline, 5 payment refused, 6 bad request, 7 daemon or mesh unreachable, 8 provider
    /// failed, 9 unauthorized, 1 anything else, 2 a wrong command line.
    Delegate {
        /// Model to run.
        #[arg(long)]
        model: String,
        /// Highest price, USDC.
        #[arg(long, value_parser = MaxPrice::parse)]
        max_price: Option<MaxPrice>,
        /// Deadline, milliseconds.
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Paid jobs: answer once the proof checks (`verified`) or once the release is
        /// confirmed (`settled`).
        #[arg(long, value_enum)]
        wait: Option<WaitFor>,
        /// Print the text as it is generated.
        #[arg(long)]
        stream: bool,
        /// Print the answer as JSON (with `--stream`, a `{"delta"}` line per piece first).
        #[arg(long)]
        json: bool,
        /// A conversation to send: a JSON array of `{role, content}` (`-`: standard input).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["prompt", "chat"])]
        messages: Option<PathBuf>,
        /// A chat: each line of standard input is your next message; the answers print as
        /// they come and join the conversation.
        #[arg(long, conflicts_with = "prompt")]
        chat: bool,
        /// The daemon's API.
        #[arg(long, env = "EDGENT_URL")]
        url: Option<String>,
        /// The prompt.
        #[arg(required_unless_present_any = ["messages", "chat"])]
        prompt: Option<String>,
    },
    /// First run: create (or import) this node's wallet as a key file (mode 0600) in the
    /// data dir and write `.env` from `.env.example` with the choices below.
    Init(InitArgs),
    /// This node's wallet: its address and its ETH and USDC balances.
    Wallet,
    /// Show the local daemon's status, at a glance (`--json`: the API's answer).
    Status {
        /// The daemon's API.
        #[arg(long, env = "EDGENT_URL")]
        url: Option<String>,
        /// Print `/status` as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the local daemon's jobs, a line each (`--json`: the API's answer).
    Jobs {
        /// The daemon's API.
        #[arg(long, env = "EDGENT_URL")]
        url: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print `/jobs` as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the dashboard's address with the API token, to open once in a browser (it
    /// sets the dashboard's cookie).
    Dashboard {
        /// The daemon's API.
        #[arg(long, env = "EDGENT_URL")]
        url: Option<String>,
    },
    /// Serve MCP tools (delegate, list_models, jobs, status) over stdio for an MCP host,
    /// calling the local daemon's HTTP API.
    Mcp {
        /// The daemon's API.
        #[arg(long, env = "EDGENT_API_URL", default_value = edgent::mcp::DEFAULT_API_URL)]
        url: String,
        /// Bearer token for the daemon's API (else `EDGENT_API_TOKEN` or the file at
        /// `EDGENT_API_TOKEN_PATH`, from the environment or `.env`).
        #[arg(long, env = "EDGENT_API_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Serve N simulated AXL nodes (a TEST AND DEMO HARNESS for AXL's local HTTP API).
    #[cfg(feature = "harness")]
    MeshSim(edgent::harness::mesh_sim::MeshSimArgs),
    /// Serve a local chain: anvil with MockUSDC and the escrow deployed and wallets funded,
    /// described on one JSON line (a TEST AND DEMO HARNESS).
    #[cfg(feature = "harness")]
    LocalChain(edgent::harness::local_chain_cli::LocalChainArgs),
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
    #[cfg(feature = "harness")]
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
        /// The requester's own Ollama: the agent calls the requester's Ollama API, which
        /// tries this Ollama first and offloads to the mesh when it fails
        /// (`scripts/demo-gemma.sh` gives it too little memory for the model).
        #[arg(long, value_name = "URL")]
        agent_ollama: Option<String>,
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

#[derive(clap::Args)]
struct InitArgs {
    /// The `.env` to write.
    #[arg(long, default_value = ".env")]
    env_file: std::path::PathBuf,
    /// EDGENT_DATA_DIR; the key file goes there.
    #[arg(long, default_value = "./data")]
    data_dir: std::path::PathBuf,
    /// Where the key file goes (default: DATA_DIR/wallet.key); becomes WALLET_KEY_PATH.
    #[arg(long)]
    key_path: Option<std::path::PathBuf>,
    /// EDGENT_ROLE.
    #[arg(long, default_value = "both", value_parser = ["requester", "provider", "both"])]
    role: String,
    /// EDGENT_ENS_NAME, e.g. jetson-orin.edgent.eth.
    #[arg(long)]
    ens_name: Option<String>,
    /// EDGENT_PAYMENTS.
    #[arg(long, default_value = "auto", value_parser = ["auto", "on", "off"])]
    payments: String,
    /// Import this hex private key instead of making a new one (better: the environment
    /// variable, which stays out of the shell history).
    #[arg(long, env = "EDGENT_IMPORT_KEY", hide_env_values = true)]
    import_key: Option<String>,
    /// Any other setting for the `.env`, as KEY=VALUE (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Overwrite an existing `.env` and key file.
    #[arg(long)]
    force: bool,
    /// When the key file exists already, use its wallet and leave the file alone (an
    /// installer re-run after `.env` was removed); `.env` is still never overwritten.
    #[arg(long, conflicts_with_all = ["force", "import_key"])]
    keep_key: bool,
}

fn run_init(args: InitArgs) -> anyhow::Result<ExitCode> {
    use edgent::config::{PaymentsMode, Role};
    let role = match args.role.as_str() {
        "requester" => Role::Requester,
        "provider" => Role::Provider,
        _ => Role::Both,
    };
    let mut set = Vec::new();
    for kv in &args.set {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| edgent::init::InitError::BadSet(kv.clone()))?;
        set.push((k.trim().to_string(), v.to_string()));
    }
    let opts = edgent::init::InitOptions {
        env_file: args.env_file,
        data_dir: args.data_dir,
        key_path: args.key_path,
        role,
        ens_name: args.ens_name,
        payments: PaymentsMode::parse(&args.payments)?,
        import_key: args.import_key.map(edgent::chain::Secret::new),
        set,
        force: args.force,
        keep_key: args.keep_key,
    };
    let out = edgent::init::init(&opts)?;
    println!(
        "wallet {} {:#x}",
        if out.kept {
            "kept:"
        } else if out.imported {
            "imported:"
        } else {
            "created:"
        },
        out.address
    );
    println!("key file: {} (mode 0600)", out.key_path.display());
    println!("API token: {} (mode 0600)", out.token_path.display());
    println!("settings: {}", out.env_file.display());
    if opts.payments != PaymentsMode::Off {
        println!(
            "next: fund the wallet with USDC (and ETH for gas), set ESCROW_ADDRESS to this \
             repository's escrow (`edgent escrow deploy`), then `edgent run`"
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_wallet() -> anyhow::Result<ExitCode> {
    let settings = chain_settings()?;
    let signer = settings
        .wallet_signer()
        .context("no wallet configured: run `edgent init`, or set WALLET_KEY_PATH")?;
    let wallet = signer.address();
    println!("address: {wallet:#x}");
    println!("chain:   {} ({})", settings.chain_id, settings.rpc_url);
    let provider = edgent::chain::http_provider(&settings.rpc_url, None)?;
    let b = edgent::chain::wallet::balances(&provider, settings.usdc, wallet)
        .await
        .with_context(|| format!("reading balances at CHAIN_RPC_URL {}", settings.rpc_url))?
        .view();
    println!("ETH:     {}", b.eth);
    println!("USDC:    {} (token {:#x})", b.usdc, settings.usdc);
    Ok(ExitCode::SUCCESS)
}

/// Log to stderr, filtered by `RUST_LOG` from the environment or `.env`, else `default`;
/// coloured only when stderr is a terminal and `NO_COLOR` is unset or empty (a log written
/// to a file or read by journald carries no escape sequences).
fn init_tracing(default: &str) {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = std::io::stderr().is_terminal() && !no_color;
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
        .with_ansi(ansi)
        .init();
}

/// The daemon's API (`url`, else the configured `EDGENT_HTTP_ADDR`) and its token (the
/// configured `EDGENT_API_TOKEN` or `EDGENT_API_TOKEN_PATH`, which `edgent init` writes).
fn api_target(url: Option<String>) -> anyhow::Result<(String, Option<String>)> {
    let cfg = Sources::from_process()
        .map_err(anyhow::Error::from)
        .and_then(|s| Ok(Config::from_sources(&s)?));
    let token = |c: &Config| c.front.token.as_ref().map(|t| t.expose().to_string());
    match (url, cfg) {
        (Some(u), Ok(c)) => Ok((u, token(&c))),
        // An explicit URL does not need the settings; the token then comes from nowhere.
        (Some(u), Err(_)) => Ok((u, None)),
        (None, Ok(c)) => Ok((format!("http://{}", c.node.http_addr), token(&c))),
        (None, Err(e)) => Err(e),
    }
}

/// A token cancelled on Ctrl-C or SIGTERM, for a command that runs until then.
#[cfg(feature = "harness")]
fn until_signal() -> CancellationToken {
    let cancel = CancellationToken::new();
    tokio::spawn(edgent::shutdown::cancel_on_signal(cancel.clone()));
    cancel
}

/// The client of the daemon's API, with its token ([`api_target`]).
fn api_client(url: Option<String>) -> anyhow::Result<ApiClient> {
    let (url, token) = api_target(url)?;
    Ok(ApiClient::http(&url, token))
}

/// Chain settings from the environment and `.env` (same precedence as the daemon's).
fn chain_settings() -> anyhow::Result<edgent::chain::ChainSettings> {
    let sources = Sources::from_process()?;
    Ok(edgent::chain::ChainSettings::from_lookup(|k| {
        sources.get(k)
    })?)
}

/// Print the API's answer to GET `path`: as `render` shows it, or as JSON. A failure prints
/// its code and words and ends with its exit code.
async fn view(
    api: &ApiClient,
    path: &str,
    json: bool,
    render: fn(&Value) -> String,
) -> anyhow::Result<ExitCode> {
    match api.get_json(path).await {
        Ok(v) if json => println!("{}", serde_json::to_string_pretty(&v)?),
        Ok(v) => println!("{}", render(&v)),
        Err(e) => {
            eprintln!("edgent: {}: {}", e.code, e.detail);
            return Ok(cli::Exit::of_code(&e.code).into());
        }
    }
    Ok(ExitCode::SUCCESS)
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
    match cli.cmd {
        Cmd::Run(args) => run_daemon(args).await,
        Cmd::Init(args) => run_init(args),
        Cmd::Wallet => run_wallet().await,
        Cmd::Delegate {
            model,
            max_price,
            timeout_ms,
            wait,
            stream,
            json,
            messages,
            chat,
            url,
            prompt,
        } => {
            let messages = match messages {
                Some(path) => {
                    let text = if path.as_os_str() == "-" {
                        std::io::read_to_string(std::io::stdin())
                    } else {
                        std::fs::read_to_string(&path)
                    }
                    .with_context(|| format!("--messages {}", path.display()))?;
                    match cli::delegate::read_messages(&text) {
                        Ok(m) => Some(m),
                        Err(e) => {
                            eprintln!("edgent: --messages {}: expected a JSON array of {{role, content}}: {e}", path.display());
                            return Ok(cli::Exit::Usage.into());
                        }
                    }
                }
                None => None,
            };
            let req = DelegateRequest {
                model,
                prompt: prompt.unwrap_or_default(),
                messages,
                max_price,
                timeout_ms,
                wait,
                ..DelegateRequest::default()
            };
            let api = api_client(url)?;
            let out = cli::delegate::Output { stream, json };
            let exit = if chat {
                cli::delegate::chat(&api, req, std::io::stdin().lock(), out).await
            } else {
                cli::delegate::once(&api, &req, out).await
            };
            Ok(exit.into())
        }
        Cmd::Status { url, json } => {
            let api = api_client(url)?;
            view(&api, "/status", json, cli::view::status).await
        }
        Cmd::Jobs { url, limit, json } => {
            let api = api_client(url)?;
            view(&api, &format!("/jobs?limit={limit}"), json, cli::view::jobs).await
        }
        Cmd::Dashboard { url } => {
            let (url, token) = api_target(url)?;
            match token {
                Some(t) => println!("{url}/?token={t}"),
                None => println!("{url}/"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Mcp { url, token } => {
            let token = match token {
                Some(t) => Some(t),
                None => api_target(Some(url.clone()))?.1,
            };
            edgent::mcp::serve_stdio(ApiClient::http(&url, token)).await?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "harness")]
        Cmd::MeshSim(args) => {
            edgent::harness::mesh_sim::run_mesh_sim_cli(args, until_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "harness")]
        Cmd::LocalChain(args) => {
            let cancel = until_signal();
            edgent::harness::local_chain_cli::run_local_chain_cli(args, cancel).await?;
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
        #[cfg(feature = "harness")]
        Cmd::Demo {
            once,
            http_addr,
            model,
            prompt,
            unpaid,
            agent_ollama,
        } => {
            let ok = edgent::demo::run(edgent::demo::DemoOptions {
                once,
                http_addr,
                prompt,
                model,
                unpaid,
                agent_ollama,
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
    #[cfg(feature = "harness")]
    let demo = matches!(cli.cmd, Cmd::Demo { .. });
    #[cfg(not(feature = "harness"))]
    let demo = false;
    init_tracing(if demo { "warn" } else { "info" });
    match real_main(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("edgent: {e:#}");
            // A configuration that cannot work exits with EX_CONFIG, which the systemd
            // unit does not restart on (a restart would fail the same way).
            if edgent::daemon::is_config_error(&e) {
                ExitCode::from(edgent::config::EX_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
