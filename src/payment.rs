//! The seams where money enters delegation. With `EDGENT_PAYMENTS=off` (a trusted fleet)
//! both sides use [`Unpaid`]; the paid flow implements the same traits, so the router and
//! the delegation flows do not change shape when payments are switched on.

use async_trait::async_trait;

use crate::axl::PeerKey;
use crate::protocol::{
    JobId, PaymentConfirmed, PaymentRequest, ResourceAd, StakeRef, Task, TaskErrorCode,
};

/// A payment step that did not work.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PaymentError(pub String);

/// What a requester does about money.
#[async_trait]
pub trait RequesterPayments: Send + Sync + 'static {
    /// Lock payment for `job_id` with the chosen provider before the task is sent;
    /// `None` when jobs are not paid.
    async fn stake(
        &self,
        job_id: &JobId,
        ad: &ResourceAd,
    ) -> Result<Option<StakeRef>, PaymentError>;
    /// A provider asks to be paid for a job.
    async fn on_payment_request(&self, from: &PeerKey, req: PaymentRequest);
}

/// What a provider does about money.
#[async_trait]
pub trait ProviderPayments: Send + Sync + 'static {
    /// The wallet advertised in resource ads.
    fn wallet(&self) -> Option<String>;
    /// Check the task is paid for before any work; an error code refuses it.
    async fn check_stake(&self, task: &Task) -> Result<(), (TaskErrorCode, String)>;
    /// The result was delivered: prove it and ask for payment.
    async fn after_delivery(&self, requester: &PeerKey, task: &Task, output: &str);
    /// The requester says it paid.
    async fn on_payment_confirmed(&self, from: &PeerKey, msg: PaymentConfirmed);
}

/// Payments switched off: nothing is staked, checked, proved or paid.
#[derive(Debug, Default, Clone)]
pub struct Unpaid;

#[async_trait]
impl RequesterPayments for Unpaid {
    async fn stake(&self, _: &JobId, _: &ResourceAd) -> Result<Option<StakeRef>, PaymentError> {
        Ok(None)
    }
    async fn on_payment_request(&self, from: &PeerKey, req: PaymentRequest) {
        tracing::warn!(from = %from.short(), job = %req.job_id, "payment_request ignored: payments are off");
    }
}

#[async_trait]
impl ProviderPayments for Unpaid {
    fn wallet(&self) -> Option<String> {
        None
    }
    async fn check_stake(&self, _: &Task) -> Result<(), (TaskErrorCode, String)> {
        Ok(())
    }
    async fn after_delivery(&self, _: &PeerKey, _: &Task, _: &str) {}
    async fn on_payment_confirmed(&self, from: &PeerKey, msg: PaymentConfirmed) {
        tracing::warn!(from = %from.short(), job = %msg.job_id, "payment_confirmed ignored: payments are off");
    }
}
