//! The front door pins what it asks the mesh for: when the local Ollama holds the model but
//! cannot run it (out of memory), the agent wants that very model, so the delegation is
//! pinned to the digest of the local model's weights ([`crate::inference::weights`]), and
//! no provider serving another model under the same name is chosen.

//!
//! The digest is kept per model and manifest ([`WeightsCache`]): Ollama's `/api/show`
//! takes 140 ms for Gemma 3 270M here, `/api/tags` 10 ms. A local stream that begins
//! learns its model's digest ahead of need ([`learn`]), so a rescue of that stream
//! ([`super::rescue`]) finds it kept.

use std::sync::Arc;

use crate::inference::weights::{manifest_digest, weights_digest, WeightsCache};

/// The weights' digest (wire form) of `model` in the local Ollama at `base`, kept in
/// `weights` per manifest; `None` when it does not have one, or cannot be asked (logged).
pub async fn local_digest(
    http: &reqwest::Client,
    base: &str,
    weights: &WeightsCache,
    model: &str,
) -> Option<String> {
    match manifest_digest(http, base, model).await {
        Some(manifest) => weights.get(http, base, model, &manifest).await,
        None => weights_digest(http, base, model)
            .await
            .map_err(
                |e| tracing::debug!(%model, error = %e, "the local Ollama gave no digest to pin"),
            )
            .ok()
            .flatten(),
    }
}

/// Learn `model`'s digest in the background unless it is kept already (once per model).
pub fn learn(http: reqwest::Client, base: String, weights: Arc<WeightsCache>, model: String) {
    if weights.knows(&model) {
        return;
    }
    tokio::spawn(async move {
        let _ = local_digest(&http, &base, &weights, &model).await;
    });
}
