//! ENS: name -> address, address -> name (reverse record, checked forward), and the text
//! records a node publishes about itself: `axl.pubkey`, `wallet`, `models`, `version`.
//!
//! Lookups go through the ENS registry (`ENS_REGISTRY_ADDRESS`, default the canonical
//! one on every network) to the name's resolver, so the same code runs against Sepolia
//! and against the test ENS deployed on anvil. Wildcard (ENSIP-10) and CCIP-read names
//! are not followed.

use std::time::Duration;

use alloy::primitives::{Address, TxHash};
use alloy::providers::DynProvider;
use alloy::signers::local::PrivateKeySigner;
use alloy_ens::{namehash, reverse_address, EnsRegistry, EnsResolver};

use super::bindings::PublicResolver;
use super::rpc::{http_provider, send_and_confirm};
use super::settings::ChainSettings;

/// Text record: the node's AXL public key (64 hex).
pub const KEY_AXL_PUBKEY: &str = "axl.pubkey";
/// Text record: the node's payout wallet address.
pub const KEY_WALLET: &str = "wallet";
/// Text record: comma-separated model names the node serves.
pub const KEY_MODELS: &str = "models";
/// Text record: the edgent version the node runs.
pub const KEY_VERSION: &str = "version";

/// What a node says about itself in ENS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeRecords {
    /// `axl.pubkey`.
    pub axl_pubkey: Option<String>,
    /// `wallet`.
    pub wallet: Option<Address>,
    /// `models`, split on commas.
    pub models: Vec<String>,
    /// `version`.
    pub version: Option<String>,
}

/// An ENS lookup or write failed.
#[derive(Debug, thiserror::Error)]
pub enum EnsError {
    /// The RPC URL does not parse.
    #[error("invalid ENS RPC URL {0:?}")]
    BadUrl(String),
    /// The name is not a plausible normalised ENS name.
    #[error("{0:?} is not a valid ENS name (lower-case labels separated by dots)")]
    InvalidName(String),
    /// The RPC endpoint failed.
    #[error("ENS RPC error: {0}")]
    Rpc(String),
    /// The name has no resolver.
    #[error("ENS name {0} has no resolver")]
    NoResolver(String),
    /// The name's resolver has no address for it.
    #[error("ENS name {0} has no address record")]
    NoAddress(String),
    /// A text record holds a malformed value.
    #[error("ENS record {key}={value:?} on {name} is malformed")]
    BadRecord {
        /// The name.
        name: String,
        /// The record key.
        key: &'static str,
        /// What it holds.
        value: String,
    },
    /// A write needs a key and none is configured.
    #[error("writing ENS records needs the name owner's key (WALLET_PRIVATE_KEY)")]
    NoSigner,
    /// The signer does not own the name.
    #[error("{signer} does not own {name} (owner: {owner})")]
    NotOwner {
        /// The name.
        name: String,
        /// Its owner in the registry.
        owner: Address,
        /// The configured signer.
        signer: Address,
    },
    /// A record write failed.
    #[error("writing ENS record failed: {0}")]
    Write(String),
}

/// An address the registry or a resolver must have set: a failed call is
/// [`EnsError::Rpc`], the zero address (not set) is `missing`.
fn set(
    answer: Result<Address, alloy::contract::Error>,
    missing: EnsError,
) -> Result<Address, EnsError> {
    match answer.map_err(|e| EnsError::Rpc(e.to_string()))? {
        a if a == Address::ZERO => Err(missing),
        a => Ok(a),
    }
}

/// Reads (and, with the owner's key, writes) ENS records.
#[derive(Debug, Clone)]
pub struct EnsClient {
    provider: DynProvider,
    registry: Address,
    signer: Option<Address>,
    tx_timeout: Duration,
}

impl EnsClient {
    /// Connects to `rpc_url` with the registry at `registry`; `signer` only for writes.
    pub fn new(
        rpc_url: &str,
        registry: Address,
        signer: Option<PrivateKeySigner>,
    ) -> Result<Self, EnsError> {
        let signer_addr = signer.as_ref().map(|s| s.address());
        let provider =
            http_provider(rpc_url, signer).map_err(|_| EnsError::BadUrl(rpc_url.to_string()))?;
        Ok(Self {
            provider,
            registry,
            signer: signer_addr,
            tx_timeout: Duration::from_secs(120),
        })
    }

    /// Uses `ENS_RPC_URL` and `ENS_REGISTRY_ADDRESS` from `settings`.
    pub fn from_settings(
        settings: &ChainSettings,
        signer: Option<PrivateKeySigner>,
    ) -> Result<Self, EnsError> {
        let mut c = Self::new(&settings.ens_rpc_url, settings.ens_registry, signer)?;
        c.tx_timeout = settings.tx_timeout;
        Ok(c)
    }

    fn check_name(name: &str) -> Result<(), EnsError> {
        let ok = !name.is_empty()
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.chars()
                        .all(|c| !c.is_ascii_uppercase() && !c.is_whitespace() && c != '/')
            });
        if ok {
            Ok(())
        } else {
            Err(EnsError::InvalidName(name.to_string()))
        }
    }

    async fn resolver_for(&self, name: &str) -> Result<Address, EnsError> {
        let registry = EnsRegistry::new(self.registry, &self.provider);
        let resolver = registry.resolver(namehash(name)).call().await;
        set(resolver, EnsError::NoResolver(name.to_string()))
    }

    /// Resolves `name` to its address record.
    pub async fn resolve(&self, name: &str) -> Result<Address, EnsError> {
        Self::check_name(name)?;
        let resolver = self.resolver_for(name).await?;
        let resolver = EnsResolver::new(resolver, &self.provider);
        let addr = resolver.addr(namehash(name)).call().await;
        set(addr, EnsError::NoAddress(name.to_string()))
    }

    /// The primary name of `addr`, if its reverse record names a name that resolves back
    /// to `addr` (an unverified reverse record is ignored with a log line).
    pub async fn lookup_address(&self, addr: Address) -> Result<Option<String>, EnsError> {
        let reverse = reverse_address(&addr);
        let resolver = match self.resolver_for(&reverse).await {
            Ok(r) => r,
            Err(EnsError::NoResolver(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let name = EnsResolver::new(resolver, &self.provider)
            .name(namehash(&reverse))
            .call()
            .await
            .map_err(|e| EnsError::Rpc(e.to_string()))?;
        if name.is_empty() {
            return Ok(None);
        }
        match self.resolve(&name).await {
            Ok(forward) if forward == addr => Ok(Some(name)),
            Ok(forward) => {
                tracing::warn!(%addr, %name, %forward, "ENS reverse record does not resolve back; ignoring it");
                Ok(None)
            }
            Err(EnsError::NoResolver(_) | EnsError::NoAddress(_) | EnsError::InvalidName(_)) => {
                tracing::warn!(%addr, %name, "ENS reverse record names an unresolvable name; ignoring it");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads the text record `key` of `name` (`None` when unset).
    pub async fn text(&self, name: &str, key: &str) -> Result<Option<String>, EnsError> {
        Self::check_name(name)?;
        let resolver = self.resolver_for(name).await?;
        let value = EnsResolver::new(resolver, &self.provider)
            .text(namehash(name), key.to_string())
            .call()
            .await
            .map_err(|e| EnsError::Rpc(e.to_string()))?;
        Ok(Some(value).filter(|v| !v.is_empty()))
    }

    /// Reads the four node records of `name`.
    pub async fn node_records(&self, name: &str) -> Result<NodeRecords, EnsError> {
        let wallet = match self.text(name, KEY_WALLET).await? {
            Some(v) => Some(v.trim().parse().map_err(|_| EnsError::BadRecord {
                name: name.to_string(),
                key: KEY_WALLET,
                value: v.clone(),
            })?),
            None => None,
        };
        let axl_pubkey = self.text(name, KEY_AXL_PUBKEY).await?;
        if let Some(k) = &axl_pubkey {
            if k.len() != 64 || !k.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(EnsError::BadRecord {
                    name: name.to_string(),
                    key: KEY_AXL_PUBKEY,
                    value: k.clone(),
                });
            }
        }
        let models = self
            .text(name, KEY_MODELS)
            .await?
            .map(|m| {
                m.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        Ok(NodeRecords {
            axl_pubkey,
            wallet,
            models,
            version: self.text(name, KEY_VERSION).await?,
        })
    }

    /// Writes the set fields of `records` as text records of `name`, signed by the
    /// name's owner. Returns one transaction per record written.
    pub async fn publish_records(
        &self,
        name: &str,
        records: &NodeRecords,
    ) -> Result<Vec<TxHash>, EnsError> {
        Self::check_name(name)?;
        let signer = self.signer.ok_or(EnsError::NoSigner)?;
        let node = namehash(name);
        let owner = EnsRegistry::new(self.registry, &self.provider)
            .owner(node)
            .call()
            .await
            .map_err(|e| EnsError::Rpc(e.to_string()))?;
        if owner != signer {
            return Err(EnsError::NotOwner {
                name: name.to_string(),
                owner,
                signer,
            });
        }
        let resolver = PublicResolver::new(self.resolver_for(name).await?, &self.provider);
        let mut entries: Vec<(&str, String)> = Vec::new();
        if let Some(k) = &records.axl_pubkey {
            entries.push((KEY_AXL_PUBKEY, k.clone()));
        }
        if let Some(w) = records.wallet {
            entries.push((KEY_WALLET, w.to_checksum(None)));
        }
        if !records.models.is_empty() {
            entries.push((KEY_MODELS, records.models.join(",")));
        }
        if let Some(v) = &records.version {
            entries.push((KEY_VERSION, v.clone()));
        }
        let mut txs = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let tx = send_and_confirm(
                &self.provider,
                resolver.setText(node, key.to_string(), value),
                self.tx_timeout,
            )
            .await
            .map_err(|e| EnsError::Write(format!("{key}: {e}")))?;
            tracing::info!(%name, key, %tx, "published ENS record");
            txs.push(tx);
        }
        Ok(txs)
    }
}
