//! What a model in Ollama is: the sha256 of its weights, the GGUF file Ollama keeps as the
//! blob its `/api/show` Modelfile names (`FROM …/blobs/sha256-<hex>`). The same file has
//! the same digest on every machine, whether pulled or imported, and it is the GGUF's own
//! checksum (`sha256sum model.gguf`). Ollama's `/api/tags` `digest` is not: it hashes the
//! manifest, which for an imported model holds the local path of its blob.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::protocol::{parse_digest, MAX_AD_MODELS};

/// Longest `/api/show` answer read (its tensor list grows with the model).
const MAX_SHOW_BYTES: usize = 16 * 1024 * 1024;

/// The weights' digest (wire form) in a Modelfile as `/api/show` writes it: the blob its
/// `FROM` line names; `None` when it names no blob (a remote model).
pub fn from_modelfile(modelfile: &str) -> Option<String> {
    let from = modelfile
        .lines()
        .find_map(|l| l.trim().strip_prefix("FROM "))?;
    let at = from.rfind("sha256-").or_else(|| from.rfind("sha256:"))?;
    let hex = from.get(at + 7..at + 7 + 64)?;
    parse_digest(hex).ok()
}

/// Ask the Ollama at `base` for the weights' digest of `model` (`POST /api/show`).
pub async fn weights_digest(
    http: &reqwest::Client,
    base: &str,
    model: &str,
) -> Result<Option<String>, String> {
    let resp = http
        .post(format!("{}/api/show", base.trim_end_matches('/')))
        .json(&json!({ "model": model }))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("/api/show: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("/api/show: HTTP {}", resp.status()));
    }
    let body = resp.bytes().await.map_err(|e| format!("/api/show: {e}"))?;
    if body.len() > MAX_SHOW_BYTES {
        return Err(format!("/api/show: {} bytes is too large", body.len()));
    }
    let v: Value = serde_json::from_slice(&body).map_err(|e| format!("/api/show: {e}"))?;
    Ok(v["modelfile"].as_str().and_then(from_modelfile))
}

/// The weights' digests already asked for, by model name and manifest digest (a model
/// changed under its name has another manifest): `/api/show` once per model, not per ad.
#[derive(Debug, Default)]
pub struct WeightsCache {
    known: Mutex<HashMap<(String, String), Option<String>>>,
}

impl WeightsCache {
    /// Whether a digest of `model` (under any manifest) was asked for and kept.
    pub fn knows(&self, model: &str) -> bool {
        self.known.lock().keys().any(|(m, _)| m == model)
    }

    /// The weights' digest of `model`, whose manifest digest is `manifest`; asked of the
    /// Ollama at `base` the first time. A failed ask is logged and not kept.
    pub async fn get(
        &self,
        http: &reqwest::Client,
        base: &str,
        model: &str,
        manifest: &str,
    ) -> Option<String> {
        let key = (model.to_string(), manifest.to_string());
        if let Some(d) = self.known.lock().get(&key) {
            return d.clone();
        }
        match weights_digest(http, base, model).await {
            Ok(d) => {
                let mut known = self.known.lock();
                if known.len() >= MAX_AD_MODELS {
                    known.clear();
                }
                known.insert(key, d.clone());
                d
            }
            Err(e) => {
                tracing::debug!(%model, error = %e, "no weights digest for this model now");
                None
            }
        }
    }
}

/// The JSON answer to `req`; `None` when it fails or is not JSON.
pub async fn json_answer(req: reqwest::RequestBuilder) -> Option<Value> {
    req.send().await.ok()?.json().await.ok()
}

/// `model`'s entry in `/api/tags` of the Ollama at `base` (its `size`, its manifest
/// `digest`); `None` when it is not listed or Ollama does not answer within `timeout`.
pub async fn tags_entry(
    http: &reqwest::Client,
    base: &str,
    model: &str,
    timeout: Duration,
) -> Option<Value> {
    let url = format!("{}/api/tags", base.trim_end_matches('/'));
    let mut tags = json_answer(http.get(url).timeout(timeout)).await?;
    let same = |m: &Value, field: &str| {
        m[field]
            .as_str()
            .is_some_and(|n| super::model_matches(model, n))
    };
    let models = tags.get_mut("models")?.as_array_mut()?;
    let at = models
        .iter()
        .position(|m| same(m, "name") || same(m, "model"))?;
    Some(models.swap_remove(at))
}

/// The manifest digest `/api/tags` of the Ollama at `base` gives `model` (cheap beside
/// `/api/show`): what keys [`WeightsCache`]; `None` when it is not listed or Ollama does
/// not answer.
pub async fn manifest_digest(http: &reqwest::Client, base: &str, model: &str) -> Option<String> {
    let entry = tags_entry(http, base, model, Duration::from_secs(10)).await?;
    entry["digest"].as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_from_blob_is_the_weights_digest() {
        let hex = "0f3d2dac8ac2b8ef54f3d05bae4e3205f9068b5fe809cb9341e1b4701bf216d1";
        let mf = format!(
            "# Modelfile generated by \"ollama show\"\n# FROM edgent-huge:latest\n\n\
             FROM /root/.ollama/models/blobs/sha256-{hex}\nTEMPLATE {{{{ .Prompt }}}}\n"
        );
        assert_eq!(from_modelfile(&mf).as_deref(), Some(hex));
        assert_eq!(from_modelfile("FROM gemma3:270m\n"), None);
        assert_eq!(from_modelfile("FROM /blobs/sha256-abc\n"), None);
        assert_eq!(from_modelfile("TEMPLATE x\n"), None);
    }
}
