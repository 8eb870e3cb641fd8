//! Chain settings: RPC endpoints, contract addresses, keys and KeeperHub, read from the
//! environment names the README documents. Secrets live in [`Secret`], whose `Debug` and
//! `Display` print `***`, so a settings dump in a log never leaks a key.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use alloy::primitives::{address, Address};
use alloy::signers::local::PrivateKeySigner;

/// The escrow deployed by the original project on Base Sepolia. It only works with this
/// repository's ABI; `edgent escrow deploy` stands up a fresh one.
pub const DEFAULT_ESCROW: Address = address!("0x8633049775ef7952DD6C169865D426D7818Fd505");
/// Circle's USDC on Base Sepolia.
pub const DEFAULT_USDC: Address = address!("0x036CbD53842c5426634e7929541eC2318f3dCF7e");
/// Base Sepolia.
pub const DEFAULT_CHAIN_ID: u64 = 84532;
/// Public Base Sepolia RPC endpoint.
pub const DEFAULT_RPC_URL: &str = "https://sepolia.base.org";
/// KeeperHub's hosted API.
pub const DEFAULT_KEEPERHUB_URL: &str = "https://app.keeperhub.com";
/// KeeperHub's name for Base Sepolia.
pub const DEFAULT_KEEPERHUB_NETWORK: &str = "base-sepolia";
/// Block explorer used for transaction links.
pub const DEFAULT_EXPLORER_URL: &str = "https://sepolia.basescan.org";
/// Public Ethereum Sepolia RPC endpoint for ENS lookups.
pub const DEFAULT_ENS_RPC_URL: &str = "https://ethereum-sepolia-rpc.publicnode.com";

/// How a requester stakes (`STAKE_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StakeMode {
    /// `authorization` (default): the requester signs an EIP-3009 authorization and the
    /// provider submits it as the stake before any work: one transaction, paid by the
    /// provider; the requester needs USDC and no ETH.
    #[default]
    Authorization,
    /// `approve`: the requester sends `approve` (once) and `stake` itself and pays the gas.
    Approve,
    /// `permit`: the requester signs an EIP-2612 `permit` for the amount and sends
    /// `stakeWithPermit` itself: one transaction, no `approve`; it pays the gas. Stakes of
    /// one wallet go one after another (each permit takes the token's next nonce).
    Permit,
}

impl FromStr for StakeMode {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "authorization" | "eip3009" => Ok(Self::Authorization),
            "approve" => Ok(Self::Approve),
            "permit" | "eip2612" => Ok(Self::Permit),
            _ => Err(()),
        }
    }
}

/// A secret string (a private key or an API key). `Debug`/`Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Parses the secret as a hex private key (with or without `0x`).
    pub fn to_signer(&self) -> Result<PrivateKeySigner, InvalidKey> {
        PrivateKeySigner::from_str(self.0.trim()).map_err(|_| InvalidKey)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A private key that does not parse (the key itself is never part of the message).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("not a valid secp256k1 private key (expected 32 bytes of hex)")]
pub struct InvalidKey;

/// Everything the chain side needs. Defaults are Base Sepolia with the original escrow.
/// `Debug` shows the keys as `***` and the URLs without their paths (where RPC providers
/// put the account's key).
#[derive(Clone)]
pub struct ChainSettings {
    /// JSON-RPC endpoint of the escrow's chain (`CHAIN_RPC_URL`).
    pub rpc_url: String,
    /// Chain id of that chain (`CHAIN_ID`, default 84532 = Base Sepolia).
    pub chain_id: u64,
    /// EdgentEscrow address (`ESCROW_ADDRESS`).
    pub escrow: Address,
    /// USDC token address (`USDC_ADDRESS`); the escrow's own `usdc()` is authoritative.
    pub usdc: Address,
    /// This node's wallet key (`WALLET_PRIVATE_KEY`, or the file at `WALLET_KEY_PATH`).
    pub wallet_key: Option<Secret>,
    /// Operator key for the direct settler (`OPERATOR_PRIVATE_KEY`, or the file at
    /// `OPERATOR_PRIVATE_KEY_PATH`).
    pub operator_key: Option<Secret>,
    /// KeeperHub API base URL (`KEEPERHUB_API_URL`).
    pub keeperhub_url: String,
    /// KeeperHub API key, `kh_...` (`KEEPERHUB_API_KEY`, or the file at
    /// `KEEPERHUB_API_KEY_PATH`).
    pub keeperhub_api_key: Option<Secret>,
    /// KeeperHub network name (`KEEPERHUB_NETWORK`, default `base-sepolia`).
    pub keeperhub_network: String,
    /// Explorer base URL for transaction links (`EXPLORER_URL`).
    pub explorer_url: String,
    /// Ethereum RPC endpoint for ENS (`ENS_RPC_URL`).
    pub ens_rpc_url: String,
    /// ENS registry address (`ENS_REGISTRY_ADDRESS`, default the canonical registry).
    pub ens_registry: Address,
    /// How long to wait for a transaction receipt (`CHAIN_TX_TIMEOUT_SECS`, default 60).
    pub tx_timeout: Duration,
    /// KeeperHub status poll interval (`KEEPERHUB_POLL_SECS`, default 3).
    pub keeperhub_poll: Duration,
    /// KeeperHub overall timeout per execution (`KEEPERHUB_TIMEOUT_SECS`, default 120).
    pub keeperhub_timeout: Duration,
    /// How this node stakes as a requester (`STAKE_MODE`, default `authorization`).
    pub stake_mode: StakeMode,
    /// The arbiters a provider trusts to decide disputes on escrow version 4
    /// (`TRUSTED_ARBITERS`, comma-separated addresses, default none); checked with
    /// [`super::FairEscrow::check_arbiter`]. Version 3 has no arbiter and ignores it.
    pub trusted_arbiters: Vec<Address>,
}

impl fmt::Debug for ChainSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = crate::redact::urls;
        f.debug_struct("ChainSettings")
            .field("rpc_url", &url(&self.rpc_url))
            .field("chain_id", &self.chain_id)
            .field("escrow", &self.escrow)
            .field("usdc", &self.usdc)
            .field("wallet_key", &self.wallet_key)
            .field("operator_key", &self.operator_key)
            .field("keeperhub_url", &url(&self.keeperhub_url))
            .field("keeperhub_api_key", &self.keeperhub_api_key)
            .field("keeperhub_network", &self.keeperhub_network)
            .field("explorer_url", &self.explorer_url)
            .field("ens_rpc_url", &url(&self.ens_rpc_url))
            .field("ens_registry", &self.ens_registry)
            .field("tx_timeout", &self.tx_timeout)
            .field("keeperhub_poll", &self.keeperhub_poll)
            .field("keeperhub_timeout", &self.keeperhub_timeout)
            .field("stake_mode", &self.stake_mode)
            .finish()
    }
}

impl Default for ChainSettings {
    fn default() -> Self {
        Self::base_sepolia()
    }
}

impl ChainSettings {
    /// Base Sepolia with the original escrow, KeeperHub's hosted API, ENS on Sepolia.
    pub fn base_sepolia() -> Self {
        Self {
            rpc_url: DEFAULT_RPC_URL.to_string(),
            chain_id: DEFAULT_CHAIN_ID,
            escrow: DEFAULT_ESCROW,
            usdc: DEFAULT_USDC,
            wallet_key: None,
            operator_key: None,
            keeperhub_url: DEFAULT_KEEPERHUB_URL.to_string(),
            keeperhub_api_key: None,
            keeperhub_network: DEFAULT_KEEPERHUB_NETWORK.to_string(),
            explorer_url: DEFAULT_EXPLORER_URL.to_string(),
            ens_rpc_url: DEFAULT_ENS_RPC_URL.to_string(),
            ens_registry: alloy_ens::ENS_ADDRESS,
            tx_timeout: Duration::from_secs(60),
            keeperhub_poll: Duration::from_secs(3),
            keeperhub_timeout: Duration::from_secs(120),
            stake_mode: StakeMode::default(),
            trusted_arbiters: Vec::new(),
        }
    }

    /// Reads the settings through `get` (the daemon's merged .env/environment lookup),
    /// starting from [`ChainSettings::base_sepolia`]. Empty values count as unset.
    /// Keys are checked to parse here, so a bad key fails at start, not at first payment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ChainConfigError> {
        let get = |name: &str| {
            get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let mut s = Self::base_sepolia();
        if let Some(v) = get("CHAIN_RPC_URL") {
            s.rpc_url = url_value("CHAIN_RPC_URL", v)?;
        }
        if let Some(v) = get("CHAIN_ID") {
            s.chain_id = parse_value("CHAIN_ID", &v, "a decimal chain id")?;
        }
        if let Some(v) = get("ESCROW_ADDRESS") {
            s.escrow = parse_value("ESCROW_ADDRESS", &v, "a 0x-prefixed 20-byte address")?;
        }
        if let Some(v) = get("USDC_ADDRESS") {
            s.usdc = parse_value("USDC_ADDRESS", &v, "a 0x-prefixed 20-byte address")?;
        }
        if let Some(v) = get("ENS_REGISTRY_ADDRESS") {
            s.ens_registry =
                parse_value("ENS_REGISTRY_ADDRESS", &v, "a 0x-prefixed 20-byte address")?;
        }
        if let Some(k) = secret_setting(&get, "WALLET_PRIVATE_KEY", "WALLET_KEY_PATH")? {
            s.wallet_key = Some(key_value(k.1, k.0)?);
        }
        if let Some(k) = secret_setting(&get, "OPERATOR_PRIVATE_KEY", "OPERATOR_PRIVATE_KEY_PATH")?
        {
            s.operator_key = Some(key_value(k.1, k.0)?);
        }
        if let Some(v) = get("KEEPERHUB_API_URL") {
            s.keeperhub_url = url_value("KEEPERHUB_API_URL", v)?;
        }
        s.keeperhub_api_key =
            secret_setting(&get, "KEEPERHUB_API_KEY", "KEEPERHUB_API_KEY_PATH")?.map(|k| k.0);
        if let Some(v) = get("KEEPERHUB_NETWORK") {
            s.keeperhub_network = v;
        }
        if let Some(v) = get("EXPLORER_URL") {
            s.explorer_url = url_value("EXPLORER_URL", v)?;
        }
        // `off` turns the daemon's checks of peers' names off (`config::mesh`); the `edgent
        // ens` commands then keep the default endpoint.
        if let Some(v) = get("ENS_RPC_URL").filter(|v| !v.trim().eq_ignore_ascii_case("off")) {
            s.ens_rpc_url = url_value("ENS_RPC_URL", v)?;
        }
        if let Some(v) = get("CHAIN_TX_TIMEOUT_SECS") {
            s.tx_timeout = secs_value("CHAIN_TX_TIMEOUT_SECS", &v)?;
        }
        if let Some(v) = get("KEEPERHUB_POLL_SECS") {
            s.keeperhub_poll = secs_value("KEEPERHUB_POLL_SECS", &v)?;
        }
        if let Some(v) = get("KEEPERHUB_TIMEOUT_SECS") {
            s.keeperhub_timeout = secs_value("KEEPERHUB_TIMEOUT_SECS", &v)?;
        }
        if let Some(v) = get("STAKE_MODE") {
            s.stake_mode = parse_value("STAKE_MODE", &v, "authorization, approve or permit")?;
        }
        if let Some(v) = get("TRUSTED_ARBITERS") {
            s.trusted_arbiters = v
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(|a| {
                    parse_value(
                        "TRUSTED_ARBITERS",
                        a,
                        "comma-separated 0x-prefixed 20-byte addresses",
                    )
                })
                .collect::<Result<_, _>>()?;
        }
        Ok(s)
    }

    /// The explorer link for a transaction.
    pub fn tx_url(&self, tx_hash: alloy::primitives::TxHash) -> String {
        format!("{}/tx/{tx_hash}", self.explorer_url.trim_end_matches('/'))
    }

    /// The signer for this node's wallet, if a key is configured.
    pub fn wallet_signer(&self) -> Result<PrivateKeySigner, ChainConfigError> {
        signer_from(
            self.wallet_key.as_ref(),
            "WALLET_PRIVATE_KEY or WALLET_KEY_PATH",
        )
    }

    /// The operator signer for the direct settler, if a key is configured.
    pub fn operator_signer(&self) -> Result<PrivateKeySigner, ChainConfigError> {
        signer_from(self.operator_key.as_ref(), "OPERATOR_PRIVATE_KEY")
    }
}

/// A secret given inline (`var`) or as a file (`path_var`, its text trimmed: the systemd
/// unit's credentials), with the name it came from; both set is an error.
fn secret_setting(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    path_var: &'static str,
) -> Result<Option<(Secret, &'static str)>, ChainConfigError> {
    match (get(var), get(path_var)) {
        (Some(_), Some(_)) => Err(ChainConfigError::Conflict {
            a: var,
            b: path_var,
        }),
        (Some(k), None) => Ok(Some((Secret::new(k), var))),
        (None, Some(path)) => {
            let text =
                std::fs::read_to_string(&path).map_err(|source| ChainConfigError::KeyFile {
                    var: path_var,
                    path: path.clone(),
                    source,
                })?;
            Ok(Some((Secret::new(text.trim()), path_var)))
        }
        (None, None) => Ok(None),
    }
}

fn signer_from(
    key: Option<&Secret>,
    var: &'static str,
) -> Result<PrivateKeySigner, ChainConfigError> {
    let key = key.ok_or(ChainConfigError::Missing(var))?;
    key.to_signer()
        .map_err(|_| ChainConfigError::InvalidKey { var })
}

fn parse_value<T: FromStr>(
    var: &'static str,
    value: &str,
    expected: &'static str,
) -> Result<T, ChainConfigError> {
    value.parse().map_err(|_| ChainConfigError::Invalid {
        var,
        value: value.to_string(),
        expected,
    })
}

fn secs_value(var: &'static str, value: &str) -> Result<Duration, ChainConfigError> {
    let secs: f64 = parse_value(var, value, "a positive number of seconds")?;
    if !(secs.is_finite() && secs > 0.0) {
        return Err(ChainConfigError::Invalid {
            var,
            value: value.to_string(),
            expected: "a positive number of seconds",
        });
    }
    Ok(Duration::from_secs_f64(secs))
}

fn url_value(var: &'static str, value: String) -> Result<String, ChainConfigError> {
    if value.starts_with("http://") || value.starts_with("https://") {
        Ok(value.trim_end_matches('/').to_string())
    } else {
        Err(ChainConfigError::Invalid {
            var,
            value,
            expected: "an http:// or https:// URL",
        })
    }
}

fn key_value(var: &'static str, key: Secret) -> Result<Secret, ChainConfigError> {
    key.to_signer()
        .map_err(|_| ChainConfigError::InvalidKey { var })?;
    Ok(key)
}

/// A chain setting that is missing or malformed; every variant names the variable.
#[derive(Debug, thiserror::Error)]
pub enum ChainConfigError {
    /// A value does not parse.
    #[error("{var}={value:?} is not {expected}")]
    Invalid {
        /// The environment variable.
        var: &'static str,
        /// The value found.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A key does not parse (the key is not repeated in the message).
    #[error("{var} is not a valid private key (expected 32 bytes of hex)")]
    InvalidKey {
        /// The environment variable.
        var: &'static str,
    },
    /// A required setting is not set.
    #[error("{0} is not set")]
    Missing(&'static str),
    /// Two settings that exclude each other are both set.
    #[error("set only one of {a} and {b}")]
    Conflict {
        /// One variable.
        a: &'static str,
        /// The other.
        b: &'static str,
    },
    /// A key file (`WALLET_KEY_PATH`, `OPERATOR_PRIVATE_KEY_PATH`, `KEEPERHUB_API_KEY_PATH`) cannot
    /// be read.
    #[error("{var}={path:?} cannot be read: {source}")]
    KeyFile {
        /// The environment variable.
        var: &'static str,
        /// The path given.
        path: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_are_base_sepolia() {
        let s = ChainSettings::from_lookup(lookup(&[])).unwrap();
        assert_eq!(s.chain_id, 84532);
        assert_eq!(s.escrow, DEFAULT_ESCROW);
        assert_eq!(s.explorer_url, "https://sepolia.basescan.org");
        assert!(s.wallet_key.is_none());
    }

    #[test]
    fn reads_values_and_hides_secrets() {
        let s = ChainSettings::from_lookup(lookup(&[
            ("CHAIN_RPC_URL", "http://127.0.0.1:8545/"),
            ("CHAIN_ID", "31337"),
            ("WALLET_PRIVATE_KEY", KEY),
            ("KEEPERHUB_API_KEY", "kh_secret"),
            ("KEEPERHUB_POLL_SECS", "0.05"),
        ]))
        .unwrap();
        assert_eq!(s.rpc_url, "http://127.0.0.1:8545");
        assert_eq!(s.chain_id, 31337);
        assert_eq!(s.keeperhub_poll, Duration::from_millis(50));
        let dump = format!("{s:?}");
        assert!(!dump.contains("ac0974bec"), "{dump}");
        assert!(!dump.contains("kh_secret"), "{dump}");
        assert_eq!(
            s.wallet_signer().unwrap().address(),
            address!("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266")
        );
    }

    #[test]
    fn ens_rpc_url_off_keeps_the_default_endpoint() {
        let s = ChainSettings::from_lookup(lookup(&[("ENS_RPC_URL", "off")])).unwrap();
        assert_eq!(s.ens_rpc_url, DEFAULT_ENS_RPC_URL);
        let e = ChainSettings::from_lookup(lookup(&[("ENS_RPC_URL", "offline")])).unwrap_err();
        assert!(e.to_string().contains("ENS_RPC_URL"), "{e}");
    }

    #[test]
    fn errors_name_the_variable() {
        let e = ChainSettings::from_lookup(lookup(&[("ESCROW_ADDRESS", "0x12")])).unwrap_err();
        assert!(e.to_string().contains("ESCROW_ADDRESS"), "{e}");
        let e =
            ChainSettings::from_lookup(lookup(&[("OPERATOR_PRIVATE_KEY", "nothex")])).unwrap_err();
        assert!(e.to_string().contains("OPERATOR_PRIVATE_KEY"), "{e}");
        assert!(!e.to_string().contains("nothex"), "{e}");
        let e = ChainSettings::from_lookup(lookup(&[("CHAIN_ID", "base")])).unwrap_err();
        assert!(e.to_string().contains("CHAIN_ID"), "{e}");
    }

    #[test]
    fn trusted_arbiters_are_a_list_of_addresses() {
        let s = ChainSettings::from_lookup(lookup(&[])).unwrap();
        assert!(s.trusted_arbiters.is_empty());
        let a = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
        let b = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
        let s = ChainSettings::from_lookup(lookup(&[("TRUSTED_ARBITERS", &format!(" {a}, {b},"))]))
            .unwrap();
        assert_eq!(
            s.trusted_arbiters,
            vec![a.parse::<Address>().unwrap(), b.parse::<Address>().unwrap()]
        );
        let e = ChainSettings::from_lookup(lookup(&[("TRUSTED_ARBITERS", &format!("{a},0x12"))]))
            .unwrap_err();
        assert!(e.to_string().contains("TRUSTED_ARBITERS"), "{e}");
    }

    #[test]
    fn key_path_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, format!("{KEY}\n")).unwrap();
        let s = ChainSettings::from_lookup(lookup(&[("WALLET_KEY_PATH", path.to_str().unwrap())]))
            .unwrap();
        assert_eq!(s.wallet_key.unwrap().expose(), KEY);
        let e = ChainSettings::from_lookup(lookup(&[("WALLET_KEY_PATH", "/nonexistent/key")]))
            .unwrap_err();
        assert!(e.to_string().contains("WALLET_KEY_PATH"), "{e}");
    }
}
