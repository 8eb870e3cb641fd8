//! Payments that can be switched on while the daemon runs. Under `EDGENT_PAYMENTS=auto`,
//! a paid setup that failed for a passing reason (the RPC endpoint down at start) is tried
//! again in the background; the requester, provider and router hold a [`SwitchablePayments`]
//! from the start, and it begins delegating to the paid flow once that setup succeeds.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::axl::PeerKey;
use crate::jobs::PaymentRecord;
use crate::payment::{
    PayProgress, PaymentError, ProviderPayments, RequesterPayments, StakeCheck, StakeRefusal,
    Unpaid,
};
use crate::protocol::{
    JobId, PaymentConfirmed, PaymentRequest, ResourceAd, StakeRef, Task, TaskResult,
};
use crate::request::AttemptStake;

/// Both payment seams, unpaid until [`SwitchablePayments::switch_to`] is called.
pub struct SwitchablePayments {
    requester: RwLock<Arc<dyn RequesterPayments>>,
    provider: RwLock<Arc<dyn ProviderPayments>>,
}

impl Default for SwitchablePayments {
    fn default() -> Self {
        SwitchablePayments {
            requester: RwLock::new(Arc::new(Unpaid)),
            provider: RwLock::new(Arc::new(Unpaid)),
        }
    }
}

impl SwitchablePayments {
    /// Start unpaid.
    pub fn unpaid() -> Self {
        Self::default()
    }

    /// From now on, new calls go to these (a job already past a payment step keeps the
    /// side it started with).
    pub fn switch_to(
        &self,
        requester: Arc<dyn RequesterPayments>,
        provider: Arc<dyn ProviderPayments>,
    ) {
        *self.requester.write().unwrap_or_else(|e| e.into_inner()) = requester;
        *self.provider.write().unwrap_or_else(|e| e.into_inner()) = provider;
    }

    fn req(&self) -> Arc<dyn RequesterPayments> {
        self.requester
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn prov(&self) -> Arc<dyn ProviderPayments> {
        self.provider
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait]
impl RequesterPayments for SwitchablePayments {
    fn paid(&self) -> bool {
        self.req().paid()
    }
    async fn stake(
        &self,
        job_id: &JobId,
        ad: &ResourceAd,
        deadline_ms: u64,
    ) -> Result<Option<StakeRef>, PaymentError> {
        self.req().stake(job_id, ad, deadline_ms).await
    }
    async fn on_result(&self, job_id: &JobId) -> Option<watch::Receiver<PayProgress>> {
        self.req().on_result(job_id).await
    }
    async fn on_late_result(&self, from: &PeerKey, result: TaskResult) -> bool {
        self.req().on_late_result(from, result).await
    }
    async fn on_payment_request(&self, from: &PeerKey, req: PaymentRequest) {
        self.req().on_payment_request(from, req).await
    }
    fn disputes(&self, provider: &PeerKey) -> u32 {
        self.req().disputes(provider)
    }
    async fn attempt_failed(&self, job_id: &JobId) -> Option<AttemptStake> {
        self.req().attempt_failed(job_id).await
    }
    fn own_stake_wait(&self) -> Option<std::time::Duration> {
        self.req().own_stake_wait()
    }
}

#[async_trait]
impl ProviderPayments for SwitchablePayments {
    fn wallet(&self) -> Option<String> {
        self.prov().wallet()
    }
    async fn check_stake(&self, from: &PeerKey, task: &Task) -> Result<StakeCheck, StakeRefusal> {
        self.prov().check_stake(from, task).await
    }
    async fn take_stake(
        &self,
        from: &PeerKey,
        task: &Task,
        check: StakeCheck,
    ) -> Result<Option<PaymentRecord>, StakeRefusal> {
        self.prov().take_stake(from, task, check).await
    }
    async fn after_delivery(&self, requester: &PeerKey, task: &Task, output: &str) {
        self.prov().after_delivery(requester, task, output).await
    }
    async fn decline(&self, task: &Task, reason: &str) {
        self.prov().decline(task, reason).await
    }
    async fn on_payment_confirmed(&self, from: &PeerKey, msg: PaymentConfirmed) {
        self.prov().on_payment_confirmed(from, msg).await
    }
}
