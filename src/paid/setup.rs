//! Deciding at start whether this daemon's jobs are paid, and starting the paid flow: the
//! chain, the escrow (version 4) and, for a provider, its arbiter checked before anything is
//! spawned, then the provider and requester
//! sides, the prover's warm-up and the payment watcher. Under `EDGENT_PAYMENTS=auto` a
//! setup that failed for a passing reason is tried again in the background, and the
//! [`PaymentSwitch`] turns to the paid flow once it works.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{
    Chain, PaidProvider, PaidRequester, PaymentSwitch, PaymentsSetupError, PaymentsStatus,
};
use super::{ProviderPayments, RequesterPayments, Unpaid};
use crate::backoff::Backoff;
use crate::chain::ChainSettings;
use crate::config::{Config, PaymentsMode};
use crate::ctx::NodeCtx;

/// What [`decide`] found: the checked paid setup, or the configuration to retry it with, and
/// what `/status` shows meanwhile.
pub struct Decision {
    setup: Option<PaidSetup>,
    retry: Option<Config>,
    /// Whether jobs are paid, as `/status` shows it.
    pub status: Arc<PaymentsStatus>,
}

/// Decide whether this run is paid, before anything is spawned. `EDGENT_PAYMENTS=on` with a
/// setup that cannot pay is an error (a [`PaymentsSetupError`]); under `auto` the daemon
/// runs unpaid and the status says why (and the paid setup is retried in the background
/// when the cause may pass).
pub async fn decide(config: &Config) -> Result<Decision, PaymentsSetupError> {
    let Some(settings) = config.payments.chain() else {
        let reason = config.payments.off_reason().map(str::to_string);
        if let Some(reason) = &reason {
            tracing::warn!(%reason, "EDGENT_PAYMENTS=auto: payments are OFF, jobs run unpaid");
        }
        let status = PaymentsStatus::inactive(config.payments_mode, reason);
        return Ok(Decision::unpaid(status, None));
    };
    match prepare_payments(config, settings).await {
        Ok(setup) => Ok(Decision {
            status: Arc::new(PaymentsStatus::active(
                config.payments_mode,
                setup.chain.clone(),
            )),
            setup: Some(setup),
            retry: None,
        }),
        Err(e) if config.payments_mode == PaymentsMode::Auto => {
            let retry = e.is_transient().then(|| config.clone());
            tracing::warn!(reason = %e, retrying = retry.is_some(), "EDGENT_PAYMENTS=auto: the paid setup cannot be used; payments are OFF, jobs run unpaid");
            let status = PaymentsStatus::inactive(config.payments_mode, Some(e.to_string()));
            if retry.is_some() {
                status.set_unpaid(e.to_string(), true);
            }
            Ok(Decision::unpaid(status, retry))
        }
        Err(e) => Err(e),
    }
}

impl Decision {
    fn unpaid(status: PaymentsStatus, retry: Option<Config>) -> Decision {
        Decision {
            setup: None,
            retry,
            status: Arc::new(status),
        }
    }

    /// Start the payments decided: the paid flow at once, or unpaid (retrying the paid
    /// setup in the background under `auto`). Returns the switch the requester, provider
    /// and router read, and the task to wait for at shutdown.
    pub fn start(
        self,
        ctx: &Arc<NodeCtx>,
        cancel: &CancellationToken,
    ) -> (Arc<PaymentSwitch>, Option<JoinHandle<()>>) {
        if let Some(setup) = self.setup {
            let paid = start_payments(ctx, setup, cancel);
            let switch = Arc::new(PaymentSwitch::new(paid.requester, paid.provider));
            (switch, Some(paid.watcher))
        } else if let Some(wanted) = self.retry {
            let switch = Arc::new(PaymentSwitch::unpaid());
            let task = tokio::spawn(retry_payments(
                ctx.clone(),
                wanted,
                switch.clone(),
                self.status,
                cancel.clone(),
            ));
            (switch, Some(task))
        } else {
            (Arc::new(PaymentSwitch::unpaid()), None)
        }
    }
}

/// The paid flow's parts, connected.
struct Payments {
    requester: Arc<dyn RequesterPayments>,
    provider: Arc<dyn ProviderPayments>,
    watcher: JoinHandle<()>,
}

/// What the paid flow needs from outside the node, checked before anything starts: the
/// escrow (this repository's version 4, see [`crate::chain::escrow_code`]) with this node's
/// wallet, whose arbiter a provider trusts. A requester needs no operator credential: it
/// releases its own stakes.
struct PaidSetup {
    chain: Arc<Chain>,
}

/// Check and connect the paid flow's outside parts.
async fn prepare_payments(
    config: &Config,
    settings: &ChainSettings,
) -> Result<PaidSetup, PaymentsSetupError> {
    if !cfg!(feature = "prover") && config.node.role.provides() {
        return Err(PaymentsSetupError::NoProver);
    }
    let chain = Arc::new(Chain::connect(settings).await?);
    if config.node.role.provides() {
        chain.check_for_provider(config.paid.payment_grace.as_secs())?;
    }
    Ok(PaidSetup { chain })
}

/// The first retry of a paid setup that failed for a passing reason, under `auto`.
const PAYMENTS_RETRY_FIRST: Duration = Duration::from_secs(1);

/// The longest wait between retries of the paid setup.
const PAYMENTS_RETRY_MAX: Duration = Duration::from_secs(30);

/// Under `auto`, after a paid setup failed for a passing reason: try it again with
/// backoff (1 s doubling to 30 s) until it works, then switch `switch` to the paid flow
/// and mark `status` active; a cause that will not pass ends the retries. Runs the payment
/// watcher once paid, so it ends with the daemon.
async fn retry_payments(
    ctx: Arc<NodeCtx>,
    wanted: Config,
    switch: Arc<PaymentSwitch>,
    status: Arc<PaymentsStatus>,
    cancel: CancellationToken,
) {
    let Some(settings) = wanted.payments.chain() else {
        return;
    };
    let mut backoff = Backoff::new(PAYMENTS_RETRY_FIRST, PAYMENTS_RETRY_MAX);
    let mut delay = backoff.next().unwrap_or(PAYMENTS_RETRY_MAX);
    let mut attempt: u32 = 0;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        attempt += 1;
        match prepare_payments(&wanted, settings).await {
            Ok(setup) => {
                let chain = setup.chain.clone();
                let paid = start_payments(&ctx, setup, &cancel);
                switch.switch_to(paid.requester, paid.provider);
                status.activate(chain);
                tracing::info!(
                    attempt,
                    "EDGENT_PAYMENTS=auto: the paid setup works now; payments are ON"
                );
                if let Err(e) = paid.watcher.await {
                    tracing::error!(error = %e, "the payment watcher stopped");
                }
                return;
            }
            Err(e) if e.is_transient() => {
                delay = backoff.next().unwrap_or(PAYMENTS_RETRY_MAX);
                tracing::warn!(reason = %e, attempt, retry_in_s = delay.as_secs(), "EDGENT_PAYMENTS=auto: the paid setup still fails; jobs run unpaid");
                status.set_unpaid(e.to_string(), true);
            }
            Err(e) => {
                tracing::warn!(reason = %e, attempt, "EDGENT_PAYMENTS=auto: the paid setup cannot work as configured; jobs run unpaid (no more retries)");
                status.set_unpaid(e.to_string(), false);
                return;
            }
        }
    }
}

/// Start the paid flow on its checked setup: the provider and requester sides, the prover's
/// warm-up, and the payment watcher, which also resumes what a previous run left open.
fn start_payments(ctx: &Arc<NodeCtx>, setup: PaidSetup, cancel: &CancellationToken) -> Payments {
    let config = &ctx.config;
    let chain = setup.chain;
    let provider = PaidProvider::new(ctx.clone(), chain.clone());
    #[cfg(feature = "prover")]
    if config.node.role.provides() {
        // Build the prover's tables, and the parts of a proof that depend on this node's key
        // alone, now rather than in the first paid job.
        let key = ctx.endpoint.me().0;
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            match crate::zk::warm_up_for_key(&key) {
                Ok(()) => tracing::debug!(
                    ms = started.elapsed().as_millis() as u64,
                    "prover warmed up"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "the prover does not work: paid jobs will not be proved")
                }
            }
        });
    }
    let requester = config
        .node
        .role
        .requests()
        .then(|| PaidRequester::new(ctx.clone(), chain.clone()));
    tracing::info!(wallet = %chain.wallet, escrow = %chain.escrow_hex(), chain_id = chain.settings.chain_id,
        arbiter = %chain.arbiter, dispute_window_s = chain.dispute_window, "payments on");
    if config.provider.tamper_output() {
        tracing::warn!(
            "EDGENT_TEST_TAMPER_OUTPUT is set: this provider sends altered outputs (TEST ONLY)"
        );
    }
    let jobs = ctx.jobs.clone();
    let sides = (config.node.role.requests(), config.node.role.provides());
    let watch = super::watch::run(
        ctx.jobs.clone(),
        chain.clone(),
        requester.clone(),
        sides.1.then(|| provider.clone()),
        config.paid.payment_tick,
        config.paid.payment_tick * 10,
        cancel.clone(),
    );
    let watcher = tokio::spawn(async move {
        // First the stakes the job table lost, so the watcher ends them too.
        if let Err(e) = super::reconcile::reconcile(&jobs, &chain, sides.0, sides.1).await {
            tracing::warn!(error = %e, "cannot reconcile open stakes from the escrow's events now");
        }
        watch.await
    });
    let req: Arc<dyn RequesterPayments> = match requester {
        Some(r) => r,
        None => Arc::new(Unpaid),
    };
    Payments {
        requester: req,
        provider,
        watcher,
    }
}
