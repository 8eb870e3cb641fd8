//! What a requester asked of a provider in one attempt, kept with the job record
//! ([`Asked`]): the digest the model must have, the options, the hash of the prompt or
//! chat, and when the task was sent. A result's signed receipt is checked against it
//! whenever the result comes: during the delegation, or late (after a timeout or a
//! restart), so a late result is held to the same receipt as a live one.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::axl::PeerKey;
use crate::protocol::receipt::{prompt_hash, Expected};
use crate::protocol::{ChatMessage, JobId};

/// What a requester asked of a provider in one attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Asked {
    /// The digest the model must have: the pinned one, else the one the provider's ad
    /// claimed for it (empty when it claimed none).
    pub model_digest: String,
    /// The options sent with the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Map<String, Value>>,
    /// keccak256 of the prompt or chat sent ([`prompt_hash`]).
    pub prompt_hash: String,
    /// When the task was sent, unix ms.
    pub sent_ms: u64,
}

impl Asked {
    /// What was asked: `prompt` (or the chat `messages`) with `options`, of a model that
    /// must have `model_digest`, sent at `sent_ms`.
    pub fn new(
        model_digest: &str,
        options: Option<&Map<String, Value>>,
        prompt: &str,
        messages: Option<&[ChatMessage]>,
        sent_ms: u64,
    ) -> Asked {
        Asked {
            model_digest: model_digest.to_string(),
            options: options.cloned(),
            prompt_hash: prompt_hash(prompt, messages),
            sent_ms,
        }
    }

    /// What the receipt of `provider`'s result `output` (with its `tool_calls`) for
    /// `job_id` (of `model`) must say, checked now.
    pub fn expected<'a>(
        &'a self,
        job_id: &'a JobId,
        provider: &'a PeerKey,
        model: &'a str,
        output: &'a str,
        tool_calls: &'a [serde_json::Value],
    ) -> Expected<'a> {
        Expected {
            job_id,
            provider,
            model,
            model_digest: &self.model_digest,
            options: self.options.as_ref(),
            prompt_hash: &self.prompt_hash,
            output,
            tool_calls,
            sent_ms: self.sent_ms,
            now_ms: super::now_ms(),
        }
    }
}
