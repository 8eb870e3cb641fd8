//! Everything that touches a chain: escrow client, settlers, ENS (issue 4).
//!
//! - [`settings`]: `ChainSettings` from the environment (`CHAIN_RPC_URL`, `ESCROW_ADDRESS`...).
//! - [`bindings`]: `sol!` bindings from the committed forge artifacts in `contracts/artifacts/`.
//! - [`escrow`]: [`EscrowClient`]: approve + stake, EIP-3009 stake authorizations (signed
//!   by the requester, submitted by the provider), getStake, submit, decline, claimTimeout,
//!   refund; writes go through one [`rpc`] lane per wallet (local nonces, gas margin).
//! - [`fair_escrow`]: [`FairEscrow`], version 4 of the escrow (the fair exchange: the
//!   requester releases, a dispute window, an arbiter), what the daemon runs on; it wraps
//!   [`escrow`] for the calls both versions share.
//! - [`stake`]: a stake as the escrow stores it, and the requester's signed authorization
//!   to make one.
//! - [`error`]: typed errors; reverts decode into [`EscrowRevert`].
//! - [`settle`]: the [`Settler`] trait and the [`DirectSettler`] (operator key): the
//!   legacy version 3's operator release/reject, no longer used by the daemon.
//! - [`keeperhub`]: the [`KeeperHubSettler`] (KeeperHub Direct Execution API), likewise.
//! - [`ens`]: ENS names, reverse lookup, and node text records.
//! - [`deploy`]: deploying an EdgentEscrow (`edgent escrow deploy`, and the local chain of
//!   the tests and the demo).
//! - [`cli`]: `edgent escrow ...` and `edgent ens ...`.

pub mod bindings;
pub mod cli;
pub mod deploy;
pub mod ens;
pub mod error;
pub mod escrow;
pub mod escrow_code;
pub mod fair_escrow;
pub mod keeperhub;
pub(crate) mod rpc;
pub mod settings;
pub mod settle;
pub mod stake;
pub mod wallet;

pub use error::{ChainError, EscrowError, EscrowRevert};
pub use escrow::{EscrowClient, ESCROW_VERSION};
pub use fair_escrow::{
    DisputedEvent, FairEscrow, StakedEvent, DEFAULT_DISPUTE_WINDOW_SECS, FAIR_ESCROW_VERSION,
};
pub use keeperhub::KeeperHubSettler;
pub use rpc::http_provider;
pub use settings::{ChainConfigError, ChainSettings, Secret, StakeMode};
pub use settle::{DirectSettler, SettleError, Settlement, Settler};
pub use stake::{
    key_commitment, proof_words, stake_binding_digest, stake_binding_signer, stake_nonce,
    FairStake, FairStatus, StakeAuthorization, StakeInfo, StakeStatus,
};

use std::sync::Arc;

/// The settler the settings ask for: KeeperHub when `KEEPERHUB_API_KEY` is set, else the
/// direct settler when `OPERATOR_PRIVATE_KEY` is set, else an error naming both.
pub async fn connect_settler(settings: &ChainSettings) -> Result<Arc<dyn Settler>, ChainError> {
    if settings.keeperhub_api_key.is_some() {
        Ok(Arc::new(KeeperHubSettler::connect(settings).await?))
    } else if settings.operator_key.is_some() {
        Ok(Arc::new(DirectSettler::connect(settings).await?))
    } else {
        Err(ChainConfigError::Missing(
            "KEEPERHUB_API_KEY (or OPERATOR_PRIVATE_KEY for direct settlement)",
        )
        .into())
    }
}
