//! The front door pins what it asks the mesh for: when the local Ollama holds the model but
//! cannot run it (out of memory), the agent wants that very model, so the delegation is
//! pinned to the digest of the local model's weights ([`crate::inference::weights`]), and
//! no provider serving another model under the same name is chosen.

/// The weights' digest (wire form) of `model` in the local Ollama at `base`; `None` when it
/// does not have one, or cannot be asked (logged).
pub async fn local_digest(http: &reqwest::Client, base: &str, model: &str) -> Option<String> {
    crate::inference::weights::weights_digest(http, base, model)
        .await
        .map_err(|e| tracing::debug!(%model, error = %e, "the local Ollama gave no digest to pin"))
        .ok()
        .flatten()
}
