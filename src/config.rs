//! Every setting of the daemon, read from `.env` < the environment < command-line flags,
//! and validated once at start with an error that names the setting.
//!
//! `.env.example` at the repository root lists and explains each one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A setting that could not be used, named.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value did not parse or is out of range.
    #[error("{key}: {problem} (got {value:?})")]
    Invalid {
        /// The setting's name, e.g. `EDGENT_HTTP_ADDR`.
        key: &'static str,
        /// What was given.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A chain setting (payments on) is missing or invalid.
    #[error("{0} (or set EDGENT_PAYMENTS=off for unpaid delegation, or auto to run unpaid when the paid setup is incomplete)")]
    Chain(#[from] crate::chain::ChainConfigError),
    /// The `.env` file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    EnvFile {
        /// Its path.
        path: PathBuf,
        /// Why.
        source: dotenvy::Error,
    },
}

/// The exit status of `edgent run` when its configuration cannot work (BSD `EX_CONFIG`).
/// The systemd unit does not restart on it: a restart would fail the same way.
pub const EX_CONFIG: u8 = 78;

/// `EDGENT_PAYMENTS`: whether jobs are paid through the escrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentsMode {
    /// Paid when the wallet, escrow and settler are usable; otherwise the daemon runs
    /// unpaid and says why (log, `/status`, dashboard). The default.
    Auto,
    /// Always paid: a setup that cannot pay stops the daemon with [`EX_CONFIG`].
    On,
    /// Never paid (a trusted fleet).
    Off,
}

impl PaymentsMode {
    /// Lower-case name, as in `.env`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PaymentsMode::Auto => "auto",
            PaymentsMode::On => "on",
            PaymentsMode::Off => "off",
        }
    }

    /// Parse `auto`, or a boolean (`on`/`off`, `true`/`false`...).
    pub fn parse(v: &str) -> Result<PaymentsMode, ConfigError> {
        if v.trim().eq_ignore_ascii_case("auto") {
            return Ok(PaymentsMode::Auto);
        }
        match parse_bool("EDGENT_PAYMENTS", v) {
            Ok(true) => Ok(PaymentsMode::On),
            Ok(false) => Ok(PaymentsMode::Off),
            Err(_) => Err(invalid("EDGENT_PAYMENTS", v, "expected auto, on or off")),
        }
    }
}

/// Which side(s) of delegation this node plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Only delegates its own jobs.
    Requester,
    /// Only serves others' jobs.
    Provider,
    /// Both.
    Both,
}

impl Role {
    /// Whether it serves jobs.
    pub fn provides(&self) -> bool {
        matches!(self, Role::Provider | Role::Both)
    }
    /// Whether it delegates jobs.
    pub fn requests(&self) -> bool {
        matches!(self, Role::Requester | Role::Both)
    }
    /// Lower-case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Requester => "requester",
            Role::Provider => "provider",
            Role::Both => "both",
        }
    }
}

/// Which inference backend a provider uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Ollama's HTTP API at `OLLAMA_URL`.
    Ollama,
    /// The built-in demo backend (not a language model; for demos and tests).
    Demo,
    /// An OpenAI-compatible API at `OPENAI_BASE_URL` (llama-server, vLLM, LM Studio).
    OpenAi,
}

/// Who settles a verified job on chain (`SETTLER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettlerKind {
    /// KeeperHub when `KEEPERHUB_API_KEY` is set, else direct with `OPERATOR_PRIVATE_KEY`.
    Auto,
    /// KeeperHub's Direct Execution API (production: its managed wallet is the operator).
    KeeperHub,
    /// This daemon signs `release`/`reject` with `OPERATOR_PRIVATE_KEY` (local chains).
    Direct,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `EDGENT_HTTP_ADDR`: where the HTTP API listens.
    pub http_addr: SocketAddr,
    /// `EDGENT_DATA_DIR`: job database, AXL key and config.
    pub data_dir: PathBuf,
    /// `EDGENT_ROLE`.
    pub role: Role,
    /// `EDGENT_ENS_NAME`: this node's ENS name, shown to peers.
    pub ens_name: Option<String>,
    /// `EDGENT_PAYMENTS` as set: auto (default), on or off.
    pub payments_mode: PaymentsMode,
    /// Whether jobs are paid through the escrow: on, or auto with a wallet. The daemon
    /// turns it off at start when `auto` finds the escrow or settler unusable.
    pub payments: bool,
    /// Why payments are off although `EDGENT_PAYMENTS=auto` (e.g. no wallet).
    pub payments_off_reason: Option<String>,
    /// The chain, escrow, wallet and settler settings; `Some` exactly when payments are on.
    pub chain: Option<crate::chain::ChainSettings>,
    /// `SETTLER`: keeperhub, direct, or auto (default).
    pub settler: SettlerKind,
    /// `PAYMENT_GRACE_SECS`: how long a provider waits for `payment_confirmed` after
    /// delivering before it submits the output hash on chain (default 60).
    pub payment_grace: Duration,
    /// `STAKE_MARGIN_SECS`: how long a stake stays locked after the agent's deadline, for
    /// settlement or the provider's submit (default 600).
    pub stake_margin: Duration,
    /// `PAYMENT_TICK_MS`: how often open payments are checked against their timers
    /// (default 2000).
    pub payment_tick: Duration,
    /// `PEER_UNSTAKED_BURST`: a paid provider's budget, per peer, of tasks whose stake does
    /// not check out; a spent budget refuses that peer's tasks without any RPC call (default
    /// 8). A task whose stake checks out costs nothing.
    pub unstaked_burst: u32,
    /// `PEER_UNSTAKED_PER_MIN`: how fast that budget refills, a minute (default 12).
    pub unstaked_per_min: u32,
    /// `EDGENT_TEST_TAMPER_OUTPUT`: TEST ONLY. The provider proves its real output but
    /// sends an altered one, to test that requesters refuse to pay. Never set in production.
    pub test_tamper_output: bool,
    /// `AXL_BIN`: the AXL node binary.
    pub axl_bin: PathBuf,
    /// `AXL_SPAWN`: spawn and supervise AXL (true) or attach to a running node (false).
    pub axl_spawn: bool,
    /// `AXL_API_URL`: AXL's local HTTP API.
    pub axl_api_url: String,
    /// `AXL_PEERS`: peers to dial, e.g. `tls://1.2.3.4:9001`.
    pub axl_peers: Vec<String>,
    /// `AXL_LISTEN`: addresses to listen on for peers (the hub), e.g. `tls://0.0.0.0:9001`.
    pub axl_listen: Vec<String>,
    /// `AXL_KEY_PATH`: AXL's ed25519 private key (PEM), created if absent.
    pub axl_key_path: PathBuf,
    /// `AXL_TCP_PORT`: AXL's port inside its userspace network stack.
    pub axl_tcp_port: u16,
    /// `INFERENCE_BACKEND`: `ollama`, `openai` or `demo`.
    pub backend: BackendKind,
    /// `OPENAI_BASE_URL`: the OpenAI-compatible API of `INFERENCE_BACKEND=openai`
    /// (default `http://127.0.0.1:8080/v1`, llama-server's).
    pub openai_base_url: String,
    /// `OPENAI_API_KEY`: its Bearer key, when it needs one.
    pub openai_api_key: Option<String>,
    /// `OLLAMA_URL`.
    pub ollama_url: String,
    /// `PROVIDER_MODELS`: models to serve; empty means every model the backend lists.
    pub provider_models: Vec<String>,
    /// `PRICE_USDC`: price per job, in USDC base units (6 decimals).
    pub price_units: u64,
    /// `PROVIDER_MAX_JOBS`: jobs run at once before answering `busy`.
    pub provider_max_jobs: usize,
    /// `DISCOVERY_WINDOW_MS`: the longest wait for resource ads.
    pub discovery_window: Duration,
    /// `DISCOVERY_SETTLE_MS`: after the first ad, how long to wait for better ones.
    pub discovery_settle: Duration,
    /// `DELEGATE_TIMEOUT_MS`: default deadline of a delegation.
    pub default_timeout: Duration,
    /// `MAX_PRICE_USDC`: default highest price the agent pays (base units).
    pub default_max_price_units: u64,
    /// The front door and the guard: `EDGENT_OFFLOAD`, `EDGENT_OLLAMA_ADDR`,
    /// `EDGENT_API_TOKEN`, `EDGENT_ORIGINS`.
    pub front: crate::front::settings::FrontSettings,
    /// Reliable delivery, heartbeats, the provider's queue and per-peer limits.
    pub delivery: crate::mesh::DeliverySettings,
    /// `EDGENT_ALLOW` / `EDGENT_DENY`: node ids or ENS names that may / may never be chosen.
    pub access: crate::mesh::access::Access,
    /// `ANNOUNCE_INTERVAL_SECS`: how often a node announces itself (and a provider its ad);
    /// zero turns announcements off (discovery by broadcast only). Default 20.
    pub announce_interval: Duration,
}

/// Where the settings come from, lowest precedence first.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// Values from the `.env` file.
    pub dotenv: HashMap<String, String>,
    /// The process environment.
    pub env: HashMap<String, String>,
    /// Command-line flags (`--set KEY=VALUE` and named flags).
    pub flags: HashMap<String, String>,
}

impl Sources {
    /// The process environment plus `.env` in the current directory (or the file named
    /// by `EDGENT_ENV_FILE`), when it exists.
    pub fn from_process() -> Result<Sources, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let path = env
            .get("EDGENT_ENV_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".env"));
        let dotenv = read_dotenv(&path)?;
        Ok(Sources {
            dotenv,
            env,
            flags: HashMap::new(),
        })
    }

    /// The value of a setting: flags, then environment, then `.env`. Empty means unset.
    pub fn get(&self, key: &str) -> Option<String> {
        [&self.flags, &self.env, &self.dotenv]
            .into_iter()
            .find_map(|m| m.get(key).filter(|v| !v.trim().is_empty()).cloned())
    }
}

fn read_dotenv(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    if !path.exists() {
        return Ok(HashMap::new());
    }
    let iter = dotenvy::from_path_iter(path).map_err(|source| ConfigError::EnvFile {
        path: path.to_owned(),
        source,
    })?;
    let mut out = HashMap::new();
    for item in iter {
        let (k, v) = item.map_err(|source| ConfigError::EnvFile {
            path: path.to_owned(),
            source,
        })?;
        out.insert(k, v);
    }
    Ok(out)
}

fn invalid(key: &'static str, value: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.chars().take(200).collect(),
        problem: problem.into(),
    }
}

fn parse_bool(key: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(invalid(key, v, "expected on/off (true/false)")),
    }
}

/// A whole number setting within `min..=max` (in `unit`), or `default` when unset.
fn ranged(
    value: Option<String>,
    key: &'static str,
    default: u64,
    (min, max): (u64, u64),
    unit: &str,
) -> Result<u64, ConfigError> {
    let v = match value {
        Some(v) => parse_num::<u64>(key, &v)?,
        None => default,
    };
    if v < min || v > max {
        return Err(invalid(
            key,
            &v.to_string(),
            format!("must be between {min} and {max} {unit}"),
        ));
    }
    Ok(v)
}

fn parse_num<T: std::str::FromStr>(key: &'static str, v: &str) -> Result<T, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| invalid(key, v, "expected a non-negative integer"))
}

fn parse_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Parse a USDC amount like `0.01` into base units (6 decimals).
pub fn parse_usdc(v: &str) -> Result<u64, String> {
    let t = v.trim();
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err("empty amount".into());
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a decimal USDC amount such as 0.01".into());
    }
    if frac.len() > 6 {
        return Err("USDC has 6 decimals".into());
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| "amount too large".to_string())?
    };
    let frac_units: u64 = format!("{frac:0<6}")
        .parse()
        .map_err(|_| "bad fraction".to_string())?;
    whole
        .checked_mul(1_000_000)
        .and_then(|w| w.checked_add(frac_units))
        .ok_or_else(|| "amount too large".into())
}

/// Render base units as a USDC amount, e.g. `10000` -> `0.01`.
pub fn format_usdc(units: u64) -> String {
    let whole = units / 1_000_000;
    let frac = units % 1_000_000;
    if frac == 0 {
        return format!("{whole}");
    }
    let f = format!("{frac:06}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

fn check_url(key: &'static str, v: &str) -> Result<String, ConfigError> {
    let t = v.trim().trim_end_matches('/');
    let rest = t
        .strip_prefix("http://")
        .or_else(|| t.strip_prefix("https://"))
        .ok_or_else(|| invalid(key, v, "expected an http:// or https:// URL"))?;
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return Err(invalid(key, v, "expected a URL with a host"));
    }
    Ok(t.to_string())
}

impl Config {
    /// Read and validate every setting.
    pub fn from_sources(s: &Sources) -> Result<Config, ConfigError> {
        let get = |k: &str| s.get(k);

        let http_addr = match get("EDGENT_HTTP_ADDR") {
            Some(v) => v.trim().parse().map_err(|_| {
                invalid(
                    "EDGENT_HTTP_ADDR",
                    &v,
                    "expected host:port, e.g. 127.0.0.1:8080",
                )
            })?,
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };
        let data_dir = PathBuf::from(get("EDGENT_DATA_DIR").unwrap_or_else(|| "./data".into()));
        let role = match get("EDGENT_ROLE").as_deref().map(str::trim) {
            None | Some("both") => Role::Both,
            Some("requester") => Role::Requester,
            Some("provider") => Role::Provider,
            Some(other) => {
                return Err(invalid(
                    "EDGENT_ROLE",
                    other,
                    "expected requester, provider or both",
                ))
            }
        };
        let ens_name = get("EDGENT_ENS_NAME").map(|v| v.trim().to_string());
        if let Some(n) = &ens_name {
            if n.len() > crate::protocol::MAX_ENS_LEN
                || !n.contains('.')
                || n.contains(char::is_whitespace)
            {
                return Err(invalid(
                    "EDGENT_ENS_NAME",
                    n,
                    "expected an ENS name such as dell-g15.edgent.eth",
                ));
            }
        }
        let payments_mode = match get("EDGENT_PAYMENTS") {
            Some(v) => PaymentsMode::parse(&v)?,
            None => PaymentsMode::Auto,
        };
        let mut payments_off_reason = None;
        let chain = match payments_mode {
            PaymentsMode::Off => None,
            // A malformed value is an error even under auto: someone typed it.
            mode => {
                let c = crate::chain::ChainSettings::from_lookup(|k| s.get(k))?;
                match (&c.wallet_key, mode) {
                    (Some(_), _) => Some(c),
                    (None, PaymentsMode::On) => {
                        return Err(crate::chain::ChainConfigError::Missing(
                            "WALLET_PRIVATE_KEY (or WALLET_KEY_PATH; `edgent init` makes one): paid delegation needs a wallet",
                        )
                        .into());
                    }
                    (None, _) => {
                        payments_off_reason = Some(
                            "no wallet: WALLET_PRIVATE_KEY and WALLET_KEY_PATH are unset (`edgent init` makes one)".to_string(),
                        );
                        None
                    }
                }
            }
        };
        let payments = chain.is_some();
        let settler = match get("SETTLER").as_deref().map(str::trim) {
            None | Some("") | Some("auto") => SettlerKind::Auto,
            Some("keeperhub") => SettlerKind::KeeperHub,
            Some("direct") => SettlerKind::Direct,
            Some(other) => {
                return Err(invalid(
                    "SETTLER",
                    other,
                    "expected keeperhub, direct or auto",
                ))
            }
        };
        let secs = |key: &'static str, default: u64, min: u64, max: u64| {
            ranged(get(key), key, default, (min, max), "seconds").map(Duration::from_secs)
        };
        let payment_grace = secs("PAYMENT_GRACE_SECS", 60, 1, 86_400)?;
        let stake_margin = secs("STAKE_MARGIN_SECS", 600, 10, 7 * 86_400)?;
        let unstaked_burst = ranged(
            get("PEER_UNSTAKED_BURST"),
            "PEER_UNSTAKED_BURST",
            8,
            (1, 100_000),
            "",
        )? as u32;
        let unstaked_per_min = ranged(
            get("PEER_UNSTAKED_PER_MIN"),
            "PEER_UNSTAKED_PER_MIN",
            12,
            (1, 1_000_000),
            "",
        )? as u32;
        if stake_margin <= payment_grace + Duration::from_secs(5) {
            return Err(invalid(
                "STAKE_MARGIN_SECS",
                &stake_margin.as_secs().to_string(),
                "must exceed PAYMENT_GRACE_SECS by more than 5 s, so a provider can submit before the stake's deadline",
            ));
        }
        let test_tamper_output = match get("EDGENT_TEST_TAMPER_OUTPUT") {
            Some(v) => parse_bool("EDGENT_TEST_TAMPER_OUTPUT", &v)?,
            None => false,
        };
        let axl_bin = PathBuf::from(get("AXL_BIN").unwrap_or_else(|| "./axl-bin/node".into()));
        let axl_spawn = match get("AXL_SPAWN") {
            Some(v) => parse_bool("AXL_SPAWN", &v)?,
            None => true,
        };
        let axl_api_url = check_url(
            "AXL_API_URL",
            &get("AXL_API_URL").unwrap_or_else(|| "http://127.0.0.1:9002".into()),
        )?;
        let axl_peers = parse_list(&get("AXL_PEERS").unwrap_or_default());
        let axl_listen = parse_list(&get("AXL_LISTEN").unwrap_or_default());
        for (key, list) in [("AXL_PEERS", &axl_peers), ("AXL_LISTEN", &axl_listen)] {
            for uri in list {
                let ok = ["tls://", "tcp://", "quic://", "ws://", "wss://", "unix://"]
                    .iter()
                    .any(|p| uri.starts_with(p));
                if !ok {
                    return Err(invalid(
                        if key == "AXL_PEERS" {
                            "AXL_PEERS"
                        } else {
                            "AXL_LISTEN"
                        },
                        uri,
                        "expected a Yggdrasil URI such as tls://1.2.3.4:9001",
                    ));
                }
            }
        }
        let axl_key_path = get("AXL_KEY_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("axl-private.pem"));
        let axl_tcp_port = match get("AXL_TCP_PORT") {
            Some(v) => parse_num("AXL_TCP_PORT", &v)?,
            None => 7000,
        };
        let backend = match get("INFERENCE_BACKEND").as_deref().map(str::trim) {
            None | Some("ollama") => BackendKind::Ollama,
            Some("demo") => BackendKind::Demo,
            Some("openai") => BackendKind::OpenAi,
            Some(other) => {
                return Err(invalid(
                    "INFERENCE_BACKEND",
                    other,
                    "expected ollama, openai or demo",
                ))
            }
        };
        let openai_base_url = check_url(
            "OPENAI_BASE_URL",
            &get("OPENAI_BASE_URL").unwrap_or_else(|| "http://127.0.0.1:8080/v1".into()),
        )?;
        let openai_api_key = get("OPENAI_API_KEY").map(|k| k.trim().to_string());
        let ollama_url = check_url(
            "OLLAMA_URL",
            &get("OLLAMA_URL").unwrap_or_else(|| "http://127.0.0.1:11434".into()),
        )?;
        let provider_models = parse_list(&get("PROVIDER_MODELS").unwrap_or_default());
        let price_units = match get("PRICE_USDC") {
            Some(v) => parse_usdc(&v).map_err(|p| invalid("PRICE_USDC", &v, p))?,
            None => 10_000,
        };
        let default_max_price_units = match get("MAX_PRICE_USDC") {
            Some(v) => parse_usdc(&v).map_err(|p| invalid("MAX_PRICE_USDC", &v, p))?,
            None => 1_000_000,
        };
        let provider_max_jobs: usize = match get("PROVIDER_MAX_JOBS") {
            Some(v) => parse_num("PROVIDER_MAX_JOBS", &v)?,
            None => 2,
        };
        if provider_max_jobs == 0 {
            return Err(invalid("PROVIDER_MAX_JOBS", "0", "must be at least 1"));
        }
        let ms = |key: &'static str, default: u64, min: u64, max: u64| {
            ranged(get(key), key, default, (min, max), "ms").map(Duration::from_millis)
        };
        let discovery_window = ms("DISCOVERY_WINDOW_MS", 2_000, 10, 60_000)?;
        let discovery_settle = ms("DISCOVERY_SETTLE_MS", 150, 0, 60_000)?;
        let default_timeout = ms("DELEGATE_TIMEOUT_MS", 120_000, 100, 3_600_000)?;
        let payment_tick = ms("PAYMENT_TICK_MS", 2_000, 10, 600_000)?;
        let front = crate::front::settings::FrontSettings::from_sources(get).map_err(|e| {
            ConfigError::Invalid {
                key: e.key,
                value: e.value,
                problem: e.problem,
            }
        })?;
        let binds = [
            Some(("EDGENT_HTTP_ADDR", http_addr)),
            front.ollama_addr.map(|a| ("EDGENT_OLLAMA_ADDR", a)),
        ];
        for (key, addr) in binds.into_iter().flatten() {
            crate::guard::check_bind(key, addr, front.token.as_deref())
                .map_err(|e| invalid(key, &addr.to_string(), e.to_string()))?;
        }
        let num = |key: &'static str, default: u64, min: u64, max: u64| {
            ranged(get(key), key, default, (min, max), "")
        };
        let delivery = crate::mesh::DeliverySettings {
            heartbeat: ms("HEARTBEAT_MS", 2_000, 50, 60_000)?,
            heartbeat_misses: num("HEARTBEAT_MISSES", 2, 1, 100)? as u32,
            send_timeout: ms("MESH_SEND_TIMEOUT_MS", 5_000, 50, 600_000)?,
            ack_timeout: ms("ACK_TIMEOUT_MS", 500, 10, 60_000)?,
            reliable_window: ms("RELIABLE_WINDOW_MS", 120_000, 100, 3_600_000)?,
            provider_max_queue: num("PROVIDER_MAX_QUEUE", 32, 0, 100_000)? as usize,
            peer_msg_rate: num("PEER_MSG_RATE", 500, 1, 1_000_000)? as u32,
            peer_msg_burst: num("PEER_MSG_BURST", 1_000, 1, 1_000_000)? as u32,
            peer_task_rate: num("PEER_TASK_RATE", 64, 1, 1_000_000)? as u32,
            peer_task_burst: num("PEER_TASK_BURST", 256, 1, 1_000_000)? as u32,
        };
        let list = |key: &'static str| {
            let v = get(key).unwrap_or_default();
            crate::mesh::access::AccessList::parse(&v).map_err(|p| invalid(key, &v, p))
        };
        let access = crate::mesh::access::Access {
            allow: list("EDGENT_ALLOW")?,
            deny: list("EDGENT_DENY")?,
        };
        let announce_interval = match get("ANNOUNCE_INTERVAL_SECS") {
            Some(v) if v.trim() == "0" => Duration::ZERO,
            v => ranged(v, "ANNOUNCE_INTERVAL_SECS", 20, (5, 3_600), "seconds")
                .map(Duration::from_secs)?,
        };

        Ok(Config {
            http_addr,
            data_dir,
            role,
            ens_name,
            payments_mode,
            payments,
            payments_off_reason,
            chain,
            settler,
            payment_grace,
            stake_margin,
            payment_tick,
            unstaked_burst,
            unstaked_per_min,
            test_tamper_output,
            axl_bin,
            axl_spawn,
            axl_api_url,
            axl_peers,
            axl_listen,
            axl_key_path,
            axl_tcp_port,
            backend,
            openai_base_url,
            openai_api_key,
            ollama_url,
            provider_models,
            price_units,
            provider_max_jobs,
            discovery_window,
            discovery_settle,
            default_timeout,
            default_max_price_units,
            front,
            delivery,
            access,
            announce_interval,
        })
    }

    /// The port of `AXL_API_URL` (AXL's `api_port`).
    pub fn axl_api_port(&self) -> u16 {
        self.axl_api_url
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .unwrap_or(9002)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(dotenv: &[(&str, &str)], env: &[(&str, &str)], flags: &[(&str, &str)]) -> Sources {
        let m = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        Sources {
            dotenv: m(dotenv),
            env: m(env),
            flags: m(flags),
        }
    }

    #[test]
    fn defaults_are_sensible() {
        let c = Config::from_sources(&src(&[], &[("EDGENT_PAYMENTS", "off")], &[])).unwrap();
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.role, Role::Both);
        assert!(!c.payments);
        assert!(c.chain.is_none());
        assert!(c.axl_spawn);
        assert_eq!(c.axl_api_url, "http://127.0.0.1:9002");
        assert_eq!(c.axl_api_port(), 9002);
        assert_eq!(c.ollama_url, "http://127.0.0.1:11434");
        assert_eq!(c.price_units, 10_000);
        assert_eq!(c.axl_key_path, PathBuf::from("./data/axl-private.pem"));
    }

    #[test]
    fn flags_beat_env_beat_dotenv() {
        let s = src(
            &[
                ("EDGENT_ROLE", "provider"),
                ("PRICE_USDC", "1"),
                ("EDGENT_ENS_NAME", "a.edgent.eth"),
            ],
            &[
                ("EDGENT_ROLE", "requester"),
                ("PRICE_USDC", "2"),
                ("EDGENT_PAYMENTS", "off"),
            ],
            &[("EDGENT_ROLE", "both")],
        );
        let c = Config::from_sources(&s).unwrap();
        assert_eq!(c.role, Role::Both);
        assert_eq!(c.price_units, 2_000_000);
        assert_eq!(c.ens_name.as_deref(), Some("a.edgent.eth"));
    }

    #[test]
    fn errors_name_the_setting() {
        for (k, v) in [
            ("EDGENT_HTTP_ADDR", "nope"),
            ("EDGENT_ROLE", "king"),
            ("EDGENT_PAYMENTS", "maybe"),
            ("AXL_SPAWN", "2"),
            ("AXL_API_URL", "ftp://x"),
            ("AXL_PEERS", "1.2.3.4:9001"),
            ("PRICE_USDC", "0.0000001"),
            ("PROVIDER_MAX_JOBS", "0"),
            ("DISCOVERY_WINDOW_MS", "-5"),
            ("INFERENCE_BACKEND", "gpt"),
        ] {
            let e = Config::from_sources(&src(&[("EDGENT_PAYMENTS", "off")], &[(k, v)], &[]))
                .unwrap_err();
            assert!(e.to_string().starts_with(k), "{k}: {e}");
        }
    }

    #[test]
    fn payments_are_auto_by_default_and_on_needs_a_wallet() {
        // auto without a wallet: unpaid, with the reason.
        let c = Config::from_sources(&Sources::default()).unwrap();
        assert_eq!(c.payments_mode, PaymentsMode::Auto);
        assert!(!c.payments && c.chain.is_none());
        let reason = c.payments_off_reason.unwrap();
        assert!(reason.contains("WALLET_PRIVATE_KEY"), "{reason}");
        // on without a wallet: refused, naming the setting.
        let e = Config::from_sources(&src(&[], &[("EDGENT_PAYMENTS", "on")], &[])).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("WALLET_PRIVATE_KEY"), "{text}");
        assert!(text.contains("EDGENT_PAYMENTS=off"), "{text}");
        // A malformed chain value is an error under auto too.
        let e = Config::from_sources(&src(&[], &[("ESCROW_ADDRESS", "0x12")], &[])).unwrap_err();
        assert!(e.to_string().contains("ESCROW_ADDRESS"), "{e}");
        assert_eq!(PaymentsMode::parse("true").unwrap(), PaymentsMode::On);
        assert_eq!(PaymentsMode::parse("AUTO").unwrap(), PaymentsMode::Auto);
        assert!(PaymentsMode::parse("maybe").is_err());

        let key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
        let c = Config::from_sources(&src(
            &[],
            &[
                ("WALLET_PRIVATE_KEY", key),
                ("SETTLER", "direct"),
                ("PAYMENT_GRACE_SECS", "2"),
                ("STAKE_MARGIN_SECS", "30"),
            ],
            &[],
        ))
        .unwrap();
        assert!(c.payments && c.payments_off_reason.is_none());
        let chain = c.chain.unwrap();
        assert_eq!(chain.chain_id, crate::chain::settings::DEFAULT_CHAIN_ID);
        assert!(chain.wallet_key.is_some());
        assert_eq!(c.settler, SettlerKind::Direct);
        assert_eq!(c.payment_grace, Duration::from_secs(2));
        assert_eq!(c.stake_margin, Duration::from_secs(30));
        assert!(!c.test_tamper_output);

        for (k, v) in [
            ("SETTLER", "bank"),
            ("STAKE_MARGIN_SECS", "3"),
            ("PAYMENT_GRACE_SECS", "0"),
        ] {
            let e = Config::from_sources(&src(&[], &[("WALLET_PRIVATE_KEY", key), (k, v)], &[]))
                .unwrap_err();
            assert!(e.to_string().starts_with(k), "{k}: {e}");
        }
    }

    #[test]
    fn usdc_amounts() {
        assert_eq!(parse_usdc("0.01"), Ok(10_000));
        assert_eq!(parse_usdc("1"), Ok(1_000_000));
        assert_eq!(parse_usdc(".5"), Ok(500_000));
        assert_eq!(parse_usdc("12.345678"), Ok(12_345_678));
        assert!(parse_usdc("1.2345678").is_err());
        assert!(parse_usdc("-1").is_err());
        assert!(parse_usdc("abc").is_err());
        assert_eq!(format_usdc(10_000), "0.01");
        assert_eq!(format_usdc(2_000_000), "2");
    }

    #[test]
    fn env_example_is_a_valid_configuration() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".env.example");
        let dotenv = read_dotenv(&p).unwrap();
        assert_eq!(
            dotenv.get("EDGENT_PAYMENTS").map(String::as_str),
            Some("auto")
        );
        // The example leaves the wallet empty: the daemon runs unpaid and says why.
        let c = Config::from_sources(&Sources {
            dotenv: dotenv.clone(),
            ..Default::default()
        })
        .unwrap();
        assert!(!c.payments);
        let reason = c.payments_off_reason.unwrap();
        assert!(reason.contains("WALLET_PRIVATE_KEY"), "{reason}");
        let key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
        let c = Config::from_sources(&Sources {
            dotenv,
            env: [("WALLET_PRIVATE_KEY".to_string(), key.to_string())].into(),
            ..Default::default()
        })
        .unwrap();
        assert!(c.payments && !c.test_tamper_output);
        assert_eq!(c.payment_grace, Duration::from_secs(60));
    }

    #[test]
    fn dotenv_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".env");
        std::fs::write(&p, "# comment\nEDGENT_ROLE=provider\nAXL_PEERS=\"tls://1.2.3.4:9001, tls://5.6.7.8:9001\"\n").unwrap();
        let s = Sources {
            dotenv: read_dotenv(&p).unwrap(),
            env: [("EDGENT_PAYMENTS".to_string(), "off".to_string())].into(),
            ..Default::default()
        };
        let c = Config::from_sources(&s).unwrap();
        assert_eq!(c.role, Role::Provider);
        assert_eq!(c.axl_peers.len(), 2);
    }
}
