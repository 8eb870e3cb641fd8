//! Payments that can be switched on while the daemon runs. Under `EDGENT_PAYMENTS=auto`,
//! a paid setup that failed for a passing reason (the RPC endpoint down at start) is tried
//! again in the background ([`super::setup`]); the requester, provider and router hold one
//! [`PaymentSwitch`] from the start and read the side in use from it for each job, which is
//! the paid flow once that setup succeeds.

use std::sync::Arc;

use parking_lot::RwLock;

use super::seams::{ProviderPayments, RequesterPayments, Unpaid};

/// Both payment seams in use now: a handle that callers read, unpaid until
/// [`PaymentSwitch::switch_to`] is called.
pub struct PaymentSwitch {
    requester: RwLock<Arc<dyn RequesterPayments>>,
    provider: RwLock<Arc<dyn ProviderPayments>>,
}

impl Default for PaymentSwitch {
    fn default() -> Self {
        Self::new(Arc::new(Unpaid), Arc::new(Unpaid))
    }
}

impl PaymentSwitch {
    /// Start with these sides.
    pub fn new(requester: Arc<dyn RequesterPayments>, provider: Arc<dyn ProviderPayments>) -> Self {
        PaymentSwitch {
            requester: RwLock::new(requester),
            provider: RwLock::new(provider),
        }
    }

    /// Start unpaid.
    pub fn unpaid() -> Self {
        Self::default()
    }

    /// From now on, callers read these (a job already past a payment step keeps the side
    /// it started with).
    pub fn switch_to(
        &self,
        requester: Arc<dyn RequesterPayments>,
        provider: Arc<dyn ProviderPayments>,
    ) {
        *self.requester.write() = requester;
        *self.provider.write() = provider;
    }

    /// The requester's side in use now.
    pub fn requester(&self) -> Arc<dyn RequesterPayments> {
        self.requester.read().clone()
    }

    /// The provider's side in use now.
    pub fn provider(&self) -> Arc<dyn ProviderPayments> {
        self.provider.read().clone()
    }
}
