//! Every setting of the daemon, read from `.env` < the environment < command-line flags,
//! and validated once at start with an error that names the setting.
//!
//! `.env.example` at the repository root lists and explains each one (a test checks that
//! every key read here is there).
//!
//! # Layout
//!
//! [`Config`] is a composition of each part's settings, each read by its own
//! `from_lookup` through a [`Lookup`]:
//!
//! - [`node`]: the HTTP address, data directory, role, ENS name and announce interval.
//! - [`axl`]: the AXL node the daemon spawns or attaches to.
//! - [`inference`]: the backend a provider runs jobs on, and the local Ollama.
//! - [`provider`]: a provider's models, price and job slots.
//! - [`delegation`]: a requester's discovery window and default deadline and price.
//! - [`paid`]: whether jobs are paid, who settles, and the payment timers.
//! - [`front`]: the front door and the guard of every route.
//! - [`mesh`]: reliable delivery, the per-peer limits, and the allow and deny lists.
//! - [`sources`] and [`value`]: where values come from, and the shared parsers.

pub mod axl;
pub mod delegation;
pub mod front;
pub mod inference;
pub mod mesh;
pub mod node;
pub mod paid;
pub mod provider;
pub mod sources;
pub mod value;

pub use axl::AxlSettings;
pub use delegation::DelegationSettings;
pub use front::{check_bind, FrontSettings, OffloadMode, UnsafeBind, API_TOKEN_FILE};
pub use inference::{BackendKind, InferenceSettings};
pub use node::{NodeSettings, Role};
pub use paid::{PaidSettings, Payments, PaymentsMode, SettlerKind};
pub use provider::ProviderSettings;
pub use sources::Sources;
pub use value::{format_usdc, parse_usdc, ConfigError, Lookup, EX_CONFIG};

use crate::mesh::access::Access;
use crate::mesh::settings::DeliverySettings;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The node itself: HTTP address, data directory, role, ENS name, announcements.
    pub node: NodeSettings,
    /// `EDGENT_PAYMENTS` as set: auto (default), on or off.
    pub payments_mode: PaymentsMode,
    /// Whether jobs are paid, as the settings say: on with the chain settings, or off (and
    /// why, under `auto`). Never changed after validation: what the daemon found usable is
    /// [`crate::paid::PaymentsStatus`].
    pub payments: Payments,
    /// Who settles, and the timers and budgets of open payments.
    pub paid: PaidSettings,
    /// The AXL node.
    pub axl: AxlSettings,
    /// The inference backend and the local Ollama.
    pub inference: InferenceSettings,
    /// A provider's models, price and job slots.
    pub provider: ProviderSettings,
    /// A requester's discovery and defaults.
    pub delegation: DelegationSettings,
    /// The front door and the guard: `EDGENT_OFFLOAD`, `EDGENT_OLLAMA_ADDR`,
    /// `EDGENT_API_TOKEN`, `EDGENT_ORIGINS`.
    pub front: FrontSettings,
    /// Reliable delivery, heartbeats, the provider's queue and per-peer limits.
    pub delivery: DeliverySettings,
    /// `EDGENT_ALLOW` / `EDGENT_DENY`: node ids or ENS names that may / may never be chosen.
    pub access: Access,
    /// Where the ENS names of peers are checked.
    pub names: mesh::NameSettings,
}

impl Config {
    /// Read and validate every setting.
    pub fn from_sources(s: &Sources) -> Result<Config, ConfigError> {
        Self::from_lookup(&|k| s.get(k))
    }

    /// Read and validate every setting through `get`.
    pub fn from_lookup(get: Lookup) -> Result<Config, ConfigError> {
        let node = NodeSettings::from_lookup(get)?;
        let (payments_mode, payments) = Payments::from_lookup(get)?;
        let paid = PaidSettings::from_lookup(get)?;
        let provider = ProviderSettings::from_lookup(get)?;
        let axl = AxlSettings::from_lookup(get, &node.data_dir)?;
        let inference = InferenceSettings::from_lookup(get)?;
        let delegation = DelegationSettings::from_lookup(get)?;
        let front = FrontSettings::from_lookup(get)?;
        let binds = [
            Some(("EDGENT_HTTP_ADDR", node.http_addr)),
            front.ollama_addr.map(|a| ("EDGENT_OLLAMA_ADDR", a)),
        ];
        for (key, addr) in binds.into_iter().flatten() {
            check_bind(key, addr, front.token.as_ref().map(|t| t.expose()))
                .map_err(|e| value::invalid(key, &addr.to_string(), e.to_string()))?;
        }
        Ok(Config {
            node,
            payments_mode,
            payments,
            paid,
            axl,
            inference,
            provider,
            delegation,
            front,
            delivery: mesh::delivery_from_lookup(get)?,
            access: mesh::access_from_lookup(get)?,
            names: mesh::names_from_lookup(get)?,
        })
    }
}

#[cfg(test)]
mod tests;
