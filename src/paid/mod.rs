//! The paid flow (issue 5): stake, prove, x402 `payment_request` over AXL, verify, settle,
//! and every stake ending safely, even across crashes.
//!
//! - [`requester`]: [`PaidRequester`] stakes before the task, keeps the output until the
//!   proof arrives, verifies it, and settles through the configured [`Settler`].
//! - [`provider`]: [`PaidProvider`] checks the stake before any work, proves the output after
//!   delivering it, and asks to be paid.
//! - [`watch`]: the timers both sides drive from the persisted job table: refund, reject,
//!   submit, claim, and resuming whatever a restart interrupted.
//!
//! The chain is the source of truth: before any money step the stake is read back with
//! `getStake`, so a retried or resumed step never pays twice or pays after a refund.

pub mod provider;
pub mod requester;
pub mod watch;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use alloy::primitives::{Address, B256};
use anyhow::Context;

use crate::chain::{
    ChainSettings, DirectSettler, EscrowClient, KeeperHubSettler, Settler, StakeAuthorization,
    StakeStatus,
};
use crate::config::{Config, SettlerKind};
use crate::jobs::{JobRecord, JobStore, PayStatus, PaymentRecord, Side};
use crate::protocol::{self, JobId};

pub use provider::PaidProvider;
pub use requester::PaidRequester;

/// The escrow's `CLAIM_DELAY`: a provider may claim this long after submitting.
pub const CLAIM_DELAY_SECS: u64 = 3600;

/// The chain as this node uses it: the escrow client signing with its wallet.
pub struct Chain {
    /// Escrow client signing with `WALLET_PRIVATE_KEY`.
    pub escrow: EscrowClient,
    /// The settings it was made from.
    pub settings: ChainSettings,
    /// This node's wallet.
    pub wallet: Address,
}

impl Chain {
    /// Connect with the node's wallet; fails when the RPC, chain id or escrow is wrong.
    pub async fn connect(settings: &ChainSettings) -> anyhow::Result<Chain> {
        let signer = settings
            .wallet_signer()
            .context("WALLET_PRIVATE_KEY / WALLET_KEY_PATH")?;
        let wallet = signer.address();
        let escrow = EscrowClient::connect(settings, Some(signer))
            .await
            .with_context(|| {
                format!(
                    "escrow {} on chain {} at CHAIN_RPC_URL {}",
                    settings.escrow, settings.chain_id, settings.rpc_url
                )
            })?;
        Ok(Chain {
            escrow,
            settings: settings.clone(),
            wallet,
        })
    }

    /// The escrow's address as `0x` + 40 lower-case hex.
    pub fn escrow_hex(&self) -> String {
        format!("{:#x}", self.escrow.escrow_address())
    }
}

/// The settler `SETTLER` asks for.
pub async fn connect_settler(config: &Config) -> anyhow::Result<Arc<dyn Settler>> {
    let Some(settings) = &config.chain else {
        anyhow::bail!("payments are off: no settler");
    };
    Ok(match config.settler {
        SettlerKind::Auto => crate::chain::connect_settler(settings)
            .await
            .context("SETTLER (auto)")?,
        SettlerKind::KeeperHub => Arc::new(
            KeeperHubSettler::connect(settings)
                .await
                .context("SETTLER=keeperhub (KEEPERHUB_API_URL, KEEPERHUB_API_KEY)")?,
        ),
        SettlerKind::Direct => Arc::new(
            DirectSettler::connect(settings)
                .await
                .context("SETTLER=direct (OPERATOR_PRIVATE_KEY)")?,
        ),
    })
}

/// The escrow's `bytes32` for a job.
pub fn job_b256(job: &JobId) -> B256 {
    B256::from(job.0)
}

/// Parse a `0x` + 64 hex string (a commitment) into a `bytes32`.
pub fn parse_b256(s: &str) -> Option<B256> {
    s.parse().ok()
}

/// The wire form of a signed stake authorization (for a task's `StakeRef`).
pub fn authorization_to_wire(auth: &StakeAuthorization) -> protocol::StakeAuthorization {
    protocol::StakeAuthorization {
        from: format!("{:#x}", auth.requester),
        stake_deadline: auth.deadline,
        valid_after: auth.valid_after,
        valid_before: auth.valid_before,
        nonce: format!("{:#x}", auth.nonce()),
        signature: format!("0x{}", alloy::hex::encode(auth.signature_bytes())),
    }
}

/// Why a task's stake authorization is refused before anything is sent to the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizationRefused {
    /// `from` is not an address.
    #[error("authorization.from {0:?} is not an address")]
    BadFrom(String),
    /// The amount is not a decimal number of base units.
    #[error("stake amount {0:?} is not a number of base units")]
    BadAmount(String),
    /// The signature is not 65 bytes of hex with v 27/28.
    #[error("the authorization's signature is malformed")]
    BadSignature,
    /// The nonce sent is not the escrow's `stakeNonce` of these terms.
    #[error("the authorization's nonce does not bind this job, provider, amount and deadline")]
    NonceMismatch,
    /// The signature does not recover to `from` for these terms.
    #[error("the authorization is not signed by {0:#x} for these terms")]
    WrongSigner(Address),
}

/// The stake a task's authorization asks this provider (`provider`) to submit, checked
/// offline: the nonce is recomputed from the terms, and, with the token's `domain`, the
/// signature must recover to `from` (so a forged authorization costs no RPC call).
pub fn authorization_from_wire(
    job: &JobId,
    provider: Address,
    amount: &str,
    wire: &protocol::StakeAuthorization,
    escrow: Address,
    domain: Option<&alloy::dyn_abi::Eip712Domain>,
) -> Result<StakeAuthorization, AuthorizationRefused> {
    let requester: Address = wire
        .from
        .parse()
        .map_err(|_| AuthorizationRefused::BadFrom(wire.from.clone()))?;
    let amount: alloy::primitives::U256 = amount
        .parse()
        .map_err(|_| AuthorizationRefused::BadAmount(amount.to_string()))?;
    let bytes = alloy::hex::decode(wire.signature.trim_start_matches("0x"))
        .map_err(|_| AuthorizationRefused::BadSignature)?;
    let signature = alloy::primitives::Signature::from_raw(&bytes)
        .map_err(|_| AuthorizationRefused::BadSignature)?;
    let auth = StakeAuthorization {
        job_id: job_b256(job),
        requester,
        provider,
        amount,
        deadline: wire.stake_deadline,
        valid_after: wire.valid_after,
        valid_before: wire.valid_before,
        signature,
    };
    if parse_b256(&wire.nonce) != Some(auth.nonce()) {
        return Err(AuthorizationRefused::NonceMismatch);
    }
    if let Some(domain) = domain {
        if auth.signer(escrow, domain) != Some(requester) {
            return Err(AuthorizationRefused::WrongSigner(requester));
        }
    }
    Ok(auth)
}

/// The payment status a final on-chain stake status means.
pub fn final_status(s: StakeStatus) -> Option<PayStatus> {
    match s {
        StakeStatus::Released => Some(PayStatus::Released),
        StakeStatus::Claimed => Some(PayStatus::Claimed),
        StakeStatus::Rejected => Some(PayStatus::Rejected),
        // The provider's decline refunds the requester, as a refund after the deadline does.
        StakeStatus::Refunded | StakeStatus::Declined => Some(PayStatus::Refunded),
        _ => None,
    }
}

/// Change the payment of one job (of `side`) in the store; a failure is logged, since the
/// watcher redoes the step from the chain's state.
pub fn update_pay(
    jobs: &JobStore,
    job: &JobId,
    side: Side,
    edit: impl FnOnce(&mut JobRecord, &mut PaymentRecord),
) {
    let res = jobs.update(job, side, |r| {
        if let Some(mut p) = r.payment.take() {
            edit(r, &mut p);
            r.payment = Some(p);
        }
    });
    if let Err(e) = res {
        tracing::error!(%job, error = %e, "cannot record the payment state");
    }
}

/// Jobs with a money step under way, so the watcher and a message handler never act on
/// the same job at once.
#[derive(Default)]
pub struct Busy(Mutex<HashSet<JobId>>);

/// Holds a job in [`Busy`] until dropped.
pub struct BusyGuard {
    set: Arc<Busy>,
    job: JobId,
}

impl Busy {
    /// Take the job, or `None` when another step holds it.
    pub fn try_take(self: &Arc<Self>, job: JobId) -> Option<BusyGuard> {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        s.insert(job).then(|| BusyGuard {
            set: self.clone(),
            job,
        })
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.set
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.job);
    }
}
