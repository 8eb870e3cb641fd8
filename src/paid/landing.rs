//! A stake landing while its job runs ([`super::prestart`]): the handle made when the task
//! took its slot ([`Prestart`]), and once started, the watch its output gate waits on
//! ([`Landing`]).

use std::future::Future;
use std::pin::Pin;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::stream::OutputGate;

/// Why a stake never landed, as the requester is told.
pub type NotLanded = String;

pub(super) type LandingFuture = Pin<Box<dyn Future<Output = Result<(), NotLanded>> + Send>>;

/// Where a landing's outcome is told: unset while it lands.
pub(super) type Outcome = watch::Sender<Option<Result<(), NotLanded>>>;

/// A stake still to land, made when the task took its slot; started with
/// [`Prestart::spawn`] once the job is recorded.
pub struct Prestart {
    fut: LandingFuture,
    tx: std::sync::Arc<Outcome>,
}

impl Prestart {
    pub(super) fn new(make: impl FnOnce(std::sync::Arc<Outcome>) -> LandingFuture) -> Self {
        let tx = std::sync::Arc::new(watch::channel(None).0);
        Prestart {
            fut: make(tx.clone()),
            tx,
        }
    }

    /// Start landing the stake in the background. Should it never land, `cancel` fires (the
    /// job's inference stops).
    pub fn spawn(self, cancel: CancellationToken) -> Landing {
        let rx = self.tx.subscribe();
        let tx = self.tx;
        tokio::spawn(async move {
            let r = self.fut.await;
            // A stake seen on chain already stands, whatever the lane says afterwards.
            if tx.borrow().as_ref().is_some_and(Result::is_ok) {
                return;
            }
            if r.is_err() {
                cancel.cancel();
            }
            tx.send_replace(Some(r));
        });
        Landing { rx }
    }
}

/// A stake landing while its job runs.
pub struct Landing {
    rx: watch::Receiver<Option<Result<(), NotLanded>>>,
}

impl Landing {
    /// Waits until the stake is mined and checked (`Ok`), or will never land (why).
    pub async fn landed(&self) -> Result<(), NotLanded> {
        let mut rx = self.rx.clone();
        let r = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            Err(_) => None,
        };
        r.unwrap_or_else(|| Err("the stake's landing stopped".into()))
    }

    /// The job's output gate: open once the stake landed, closed for good if it never does.
    pub fn gate(&self) -> OutputGate {
        let rx = self.rx.clone();
        Box::pin(async move { Landing { rx }.landed().await.is_ok() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prestart(r: Result<(), NotLanded>) -> Prestart {
        Prestart::new(|_| Box::pin(async move { r }))
    }

    #[tokio::test]
    async fn a_landed_stake_opens_the_gate_and_leaves_the_job_running() {
        let cancel = CancellationToken::new();
        let landing = prestart(Ok(())).spawn(cancel.clone());
        assert!(landing.gate().await);
        assert_eq!(landing.landed().await, Ok(()));
        assert!(!cancel.is_cancelled());
    }

    #[tokio::test]
    async fn a_stake_that_never_lands_closes_the_gate_and_cancels_the_job() {
        let cancel = CancellationToken::new();
        let landing = prestart(Err("nonce used".into())).spawn(cancel.clone());
        assert!(!landing.gate().await);
        assert_eq!(landing.landed().await, Err("nonce used".to_string()));
        assert!(cancel.is_cancelled());
    }

    #[tokio::test]
    async fn the_gate_stays_shut_while_the_stake_is_pending() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let p = Prestart::new(|_| {
            Box::pin(async move {
                let _ = rx.await;
                Ok(())
            })
        });
        let landing = p.spawn(CancellationToken::new());
        let mut gate = landing.gate();
        assert!(futures_util::FutureExt::now_or_never(gate.as_mut()).is_none());
        tx.send(()).expect("landing waits");
        assert!(gate.await);
    }
}
