//! The one shutdown signal every task obeys: SIGINT or SIGTERM cancels a token; the
//! receive loop, the router, the HTTP server and the AXL supervisor all watch it, and the
//! daemon then kills the AXL child and closes the job store before exiting.

use tokio_util::sync::CancellationToken;

/// Wait for SIGINT (Ctrl-C) or SIGTERM, then cancel `token`.
pub async fn cancel_on_signal(token: CancellationToken) {
    wait_for_signal().await;
    tracing::info!("shutdown requested");
    token.cancel();
}

/// Resolve when the process receives SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the daemon");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
