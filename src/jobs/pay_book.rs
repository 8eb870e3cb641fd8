//! One side's view of the payments in the store: the only way the money code writes a
//! payment, so a step never forgets its side or the state machine.

use std::sync::Arc;

use super::{JobError, JobRecord, JobStore, PayStatus, PaymentRecord, Side};
use crate::protocol::JobId;

/// The payments of one side of the store ([`Side::Requester`] or [`Side::Provider`]).
#[derive(Clone)]
pub struct PayBook {
    store: Arc<JobStore>,
    side: Side,
}

impl PayBook {
    /// The payments of `side` in `store`.
    pub fn new(store: Arc<JobStore>, side: Side) -> Self {
        PayBook { store, side }
    }

    /// Change the details of one job's payment, never its status (that is
    /// [`PayBook::advance`]). A failure is logged: the watcher redoes the step from the
    /// chain's state.
    pub fn edit(&self, job: &JobId, edit: impl FnOnce(&mut JobRecord, &mut PaymentRecord)) {
        let res = self.store.update(job, self.side, |r| {
            if let Some(mut p) = r.payment.take() {
                let status = p.status;
                edit(r, &mut p);
                p.status = status;
                r.payment = Some(p);
            }
        });
        if let Err(e) = res {
            tracing::error!(%job, error = %e, "cannot record the payment state");
        }
    }

    /// Move one job's payment to `to` through the payment state machine
    /// ([`JobStore::advance`]), applying `edit` in the same write. Returns whether it moved;
    /// a refused move is logged by the store, and a store failure here, since the watcher
    /// redoes the step from the chain's state.
    pub fn advance(
        &self,
        job: &JobId,
        to: PayStatus,
        edit: impl FnOnce(&mut JobRecord, &mut PaymentRecord),
    ) -> bool {
        match self.store.advance(job, self.side, to, edit) {
            Ok(_) => true,
            Err(JobError::BadPayTransition { .. } | JobError::NoPayment(_)) => false,
            Err(e) => {
                tracing::error!(%job, to = to.as_str(), error = %e, "cannot record the payment state");
                false
            }
        }
    }
}
