//! One request type for every way an agent asks for a delegation: `POST /delegate`, and the
//! Ollama-, OpenAI- and MCP-shaped front doors that translate into it.
//!
//! It holds what an agent sends ([`DelegateRequest`]) and how it is checked
//! ([`DelegateRequest::validate`] -> [`ValidRequest`]), what it gets back
//! ([`DelegateResponse`]), why a delegation failed ([`DelegateError`]), and the one table of
//! error codes ([`ErrorCode`]) that the HTTP API answers and the job record stores.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::axl::PeerKey;
use crate::config::Config;
use crate::jobs::{JobError, Timings};
use crate::protocol::{ChatMessage, JobId, Usage};

/// Shortest and longest `timeout_ms` an agent may ask for.
pub const TIMEOUT_RANGE_MS: std::ops::RangeInclusive<u64> = 100..=3_600_000;

/// What an agent asks for at `POST /delegate`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelegateRequest {
    /// Model to run, e.g. `tinyllama`.
    pub model: String,
    /// The prompt.
    pub prompt: String,
    /// Backend options, passed through to the provider's backend.
    #[serde(default)]
    pub options: Option<Map<String, Value>>,
    /// Highest price the agent pays, in USDC (e.g. `0.05`), number or string.
    #[serde(default)]
    pub max_price: Option<Value>,
    /// How long the agent waits, milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Free memory the provider must have, MiB.
    #[serde(default)]
    pub min_memory_mb: Option<u64>,
    /// Paid jobs: answer once the proof checks (`verified`, default; settlement goes on in
    /// the background) or once the release is confirmed on chain (`settled`).
    #[serde(default)]
    pub wait: Option<String>,
    /// A chat instead of a prompt (the Ollama and OpenAI chat routes): the conversation.
    #[serde(default)]
    pub messages: Option<Vec<ChatMessage>>,
    /// `POST /delegate` only: answer NDJSON, one `{"delta": "..."}` line per piece of output
    /// as the provider generates it, then the whole answer (or `{error, detail}`) as the
    /// last line.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Streamed delegations (the front door): where the output goes as it is generated.
    #[serde(skip)]
    pub sink: Option<StreamSink>,
}

/// When a paid delegation answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// Once the proof checks; settlement goes on in the background.
    Verified,
    /// Once the release is confirmed on chain.
    Settled,
}

/// A [`DelegateRequest`] whose fields were checked and given their defaults.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    /// Model name, trimmed.
    pub model: String,
    /// The prompt (not empty).
    pub prompt: String,
    /// Backend options.
    pub options: Option<Map<String, Value>>,
    /// Highest price, USDC base units.
    pub max_price: u64,
    /// How long the agent waits.
    pub timeout: Duration,
    /// Free memory the provider must have, MiB.
    pub min_memory_mb: u64,
    /// When a paid delegation answers.
    pub wait: WaitFor,
    /// The conversation, for a chat.
    pub messages: Option<Vec<ChatMessage>>,
    /// Where a streamed delegation's output goes.
    pub sink: Option<StreamSink>,
}

impl DelegateRequest {
    /// Check every field and fill in the node's defaults.
    pub fn validate(&self, config: &Config) -> Result<ValidRequest, DelegateError> {
        let model = self.model.trim().to_string();
        crate::protocol::check_model(&model)
            .map_err(|e| DelegateError::BadInput(format!("model: {e}")))?;
        let chat = self.messages.as_ref().is_some_and(|m| !m.is_empty());
        if self.prompt.is_empty() && !chat {
            return Err(DelegateError::BadInput("prompt must not be empty".into()));
        }
        let timeout = match self.timeout_ms {
            Some(ms) if !TIMEOUT_RANGE_MS.contains(&ms) => {
                return Err(DelegateError::BadInput(format!(
                    "timeout_ms must be between {} and {}",
                    TIMEOUT_RANGE_MS.start(),
                    TIMEOUT_RANGE_MS.end()
                )))
            }
            Some(ms) => Duration::from_millis(ms),
            None => config.delegation.default_timeout,
        };
        let max_price = match &self.max_price {
            Some(v) => parse_max_price(v)?,
            None => config.delegation.default_max_price_units,
        };
        let wait = match self.wait.as_deref().map(str::trim) {
            None | Some("") | Some("verified") => WaitFor::Verified,
            Some("settled") => WaitFor::Settled,
            Some(other) => {
                return Err(DelegateError::BadInput(format!(
                    "wait must be verified or settled, got {:?}",
                    other.chars().take(40).collect::<String>()
                )))
            }
        };
        Ok(ValidRequest {
            model,
            prompt: self.prompt.clone(),
            options: self.options.clone(),
            max_price,
            timeout,
            min_memory_mb: self.min_memory_mb.unwrap_or(0),
            wait,
            messages: self.messages.clone().filter(|m| !m.is_empty()),
            sink: self.sink.clone(),
        })
    }
}

/// Parse an agent's `max_price` (USDC, number or string) into base units.
pub fn parse_max_price(v: &Value) -> Result<u64, DelegateError> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => {
            return Err(DelegateError::BadInput(
                "max_price must be a USDC amount such as 0.05".into(),
            ))
        }
    };
    crate::config::parse_usdc(&s).map_err(|e| DelegateError::BadInput(format!("max_price: {e}")))
}

/// The money of a paid job, as `/delegate` answers it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PaymentSummary {
    /// Where the money is (`verified`, `released`, `disputed`, ...).
    pub status: String,
    /// Staked amount, USDC base units.
    pub amount_units: u64,
    /// The stake transaction.
    pub stake_tx: Option<String>,
    /// The settling transaction (the release), once there is one.
    pub tx_hash: Option<String>,
    /// Explorer link for `tx_hash`.
    pub explorer_url: Option<String>,
}

/// The provider that served a job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProviderInfo {
    /// Its full AXL key.
    pub node_id: PeerKey,
    /// Its ENS name.
    pub ens: Option<String>,
    /// Its wallet.
    pub wallet: Option<String>,
}

/// What a streamed delegation tells whoever asked for the stream.
#[derive(Debug, Clone)]
pub enum StreamEvent {
    /// The task went to this provider (first, once per provider tried).
    Started {
        /// The job.
        job_id: JobId,
        /// Who runs it.
        provider: ProviderInfo,
    },
    /// More output, in order.
    Delta(String),
}

/// Where a streamed delegation sends its [`StreamEvent`]s (see [`crate::stream`]).
#[derive(Debug, Clone)]
pub struct StreamSink {
    /// The events.
    pub events: tokio::sync::mpsc::UnboundedSender<StreamEvent>,
}

/// The answer to `POST /delegate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DelegateResponse {
    /// The job id.
    pub job_id: JobId,
    /// Who ran it.
    pub provider: ProviderInfo,
    /// The model's output.
    pub output: String,
    /// What it cost in tokens and time on the provider.
    pub usage: Usage,
    /// Phase timings, milliseconds.
    pub timings: Timings,
    /// Paid jobs: whether the provider's proof checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof_verified: Option<bool>,
    /// Paid jobs: the money.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentSummary>,
    /// Every provider tried, in order; the last one answered.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
}

/// One provider tried for a delegation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attempt {
    /// Its full AXL key.
    pub provider: PeerKey,
    /// How it ended: `completed`, `busy`, `model_unavailable`, `inference_failed`,
    /// `refused`, `dead`, `unreachable`, `deadline`.
    pub outcome: String,
    /// How long it took, milliseconds.
    pub ms: u64,
    /// The job id this attempt ran under. Unpaid attempts share the delegation's; a paid
    /// attempt has its own (the escrow's job id names one provider), so each has a record
    /// in `/jobs` with its payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<JobId>,
    /// Paid attempts that failed: what became of their stake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stake: Option<AttemptStake>,
}

/// What became of the stake of a paid attempt that failed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttemptStake {
    /// `refunded`: the provider declined and its `decline` transaction (`tx_hash`) refunded
    /// the requester; `pending_refund`: the stake is on chain and the payment watcher
    /// refunds it once the chain passes `refund_after`; `not_staked`: the provider never
    /// submitted the authorization (nothing is locked; it lapses at `refund_after`, and
    /// should it land before, it is refunded after); otherwise the payment status.
    pub status: String,
    /// The transaction that returned the money, when it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<String>,
    /// The stake's deadline, unix seconds of chain time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_after: Option<u64>,
}

/// The error codes of the API, one table: the `error` field of an HTTP error body, the
/// `error_code` of a failed job, and the code of an MCP tool error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request itself is wrong (400).
    BadRequest,
    /// The request is not authorised: missing or wrong API token (401).
    Unauthorized,
    /// A request from a foreign `Host` or `Origin` (403).
    Forbidden,
    /// No such endpoint or model (404).
    NotFound,
    /// The stake could not be made (402).
    PaymentFailed,
    /// No provider answered, or none fits (503).
    NoProvider,
    /// The local AXL node is not answering (503).
    MeshUnavailable,
    /// The provider failed the job (502).
    ProviderFailed,
    /// The result came without a proof that checks (502).
    ProofInvalid,
    /// The deadline passed (504).
    Deadline,
    /// The agent went away and the job was cancelled (499, as nginx logs a client that
    /// closed its request: nobody is left to read it).
    Cancelled,
    /// Something broke here (500).
    Internal,
}

impl ErrorCode {
    /// The snake_case name, as in the API and the job record.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::PaymentFailed => "payment_failed",
            ErrorCode::NoProvider => "no_provider",
            ErrorCode::MeshUnavailable => "mesh_unavailable",
            ErrorCode::ProviderFailed => "provider_failed",
            ErrorCode::ProofInvalid => "proof_invalid",
            ErrorCode::Deadline => "deadline",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status it is answered with.
    pub fn http_status(&self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::PaymentFailed => 402,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Cancelled => 499,
            ErrorCode::Internal => 500,
            ErrorCode::ProviderFailed | ErrorCode::ProofInvalid => 502,
            ErrorCode::NoProvider | ErrorCode::MeshUnavailable => 503,
            ErrorCode::Deadline => 504,
        }
    }
}

/// Why a delegation failed, by what the agent can do about it.
#[derive(Debug, thiserror::Error)]
pub enum DelegateError {
    /// The request itself is wrong (400).
    #[error("{0}")]
    BadInput(String),
    /// No provider served the job (503): what the mesh said, counted ([`Unserved`]);
    /// `Retry-After` when every provider tried was busy.
    #[error("{0}")]
    NoProvider(Box<Unserved>),
    /// The provider failed the job (502).
    #[error("provider failed: {code}: {message}")]
    ProviderFailed {
        /// The provider's error code.
        code: String,
        /// Its message.
        message: String,
    },
    /// The deadline passed (504).
    #[error("{0}")]
    Deadline(String),
    /// The stake could not be made (402).
    #[error("payment: {0}")]
    Payment(String),
    /// The result came without a proof that checks: nothing is paid (502).
    #[error("{0}")]
    ProofInvalid(String),
    /// The local AXL node is not answering (503).
    #[error("mesh unavailable: {0}")]
    Mesh(String),
    /// Something broke here (500).
    #[error("internal error: {0}")]
    Internal(String),
    /// The agent went away: the job was cancelled (`task_cancel`), and no other provider
    /// is tried for it.
    #[error("cancelled: {0}")]
    Cancelled(String),
}

impl DelegateError {
    /// Its code in the API's table.
    pub fn code(&self) -> ErrorCode {
        match self {
            DelegateError::BadInput(_) => ErrorCode::BadRequest,
            DelegateError::NoProvider(_) => ErrorCode::NoProvider,
            DelegateError::ProviderFailed { .. } => ErrorCode::ProviderFailed,
            DelegateError::Deadline(_) => ErrorCode::Deadline,
            DelegateError::Payment(_) => ErrorCode::PaymentFailed,
            DelegateError::ProofInvalid(_) => ErrorCode::ProofInvalid,
            DelegateError::Mesh(_) => ErrorCode::MeshUnavailable,
            DelegateError::Internal(_) => ErrorCode::Internal,
            DelegateError::Cancelled(_) => ErrorCode::Cancelled,
        }
    }

    /// Seconds after which asking again may succeed (`Retry-After`), when known.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            DelegateError::NoProvider(u) => u.retry_after_secs,
            _ => None,
        }
    }

    /// Fields the JSON error carries besides `error` and `detail`: for `no_provider`,
    /// the counts of [`Unserved`] (`asked`, `failed`, `answered`, `unfit`, ...).
    pub fn fields(&self) -> Option<Map<String, Value>> {
        match self {
            DelegateError::NoProvider(u) => match serde_json::to_value(u) {
                Ok(Value::Object(m)) => Some(m),
                _ => None,
            },
            _ => None,
        }
    }

    /// The `error_code` a failed job records: the provider's own code when it refused or
    /// failed the job (`busy`, `inference_failed`, ...), else [`DelegateError::code`].
    pub fn job_error_code(&self) -> String {
        match self {
            DelegateError::ProviderFailed { code, .. } => code.clone(),
            other => other.code().as_str().to_string(),
        }
    }
}

/// Why no provider served a delegation, counted node by node: the one `no_provider` 503.
///
/// `asked` counts the nodes this delegation sent its `resource_request` to, or its task
/// when it chose from the ad cache; `failed` those whose send failed or did not complete
/// in time (AXL blocks on a node that is gone); `answered` the providers that answered
/// (an ad for the request, or their announced ad, a `task_error`, heartbeats). `unfit`
/// says why those that answered did not serve, reason by reason: `busy` (slots and queue
/// full), `model_unavailable` (it does not serve the model), `price`, `memory`,
/// `no_wallet` (a paid job), `denied` (`EDGENT_DENY`/`EDGENT_ALLOW`), `dead` (its
/// heartbeats stopped), `inference_failed`, `refused`. Nodes that stayed silent are
/// `asked - failed - answered`: relays and nodes that do not serve the model say nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Unserved {
    /// The model asked for.
    pub model: String,
    /// Nodes asked.
    pub asked: usize,
    /// Of those, sends that failed or timed out.
    pub failed: usize,
    /// Providers that answered.
    pub answered: usize,
    /// Why those that answered did not serve: reason -> how many.
    pub unfit: std::collections::BTreeMap<String, usize>,
    /// When every provider tried was busy: when to ask again, seconds (`Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// Anything more to say (a paid job's stake).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl std::fmt::Display for Unserved {
    /// One text for every case: `no provider served tinyllama: asked 11 nodes, 2 failed
    /// (send error or timeout), 3 answered (busy 2, model_unavailable 1)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no provider served {}: asked {} node{}, {} failed (send error or timeout), {} answered",
            self.model,
            self.asked,
            if self.asked == 1 { "" } else { "s" },
            self.failed,
            self.answered
        )?;
        if !self.unfit.is_empty() {
            let why: Vec<String> = self.unfit.iter().map(|(k, n)| format!("{k} {n}")).collect();
            write!(f, " ({})", why.join(", "))?;
        }
        if let Some(note) = &self.note {
            write!(f, "; {note}")?;
        }
        Ok(())
    }
}

impl From<Unserved> for DelegateError {
    fn from(u: Unserved) -> Self {
        DelegateError::NoProvider(Box::new(u))
    }
}

impl From<JobError> for DelegateError {
    fn from(e: JobError) -> Self {
        DelegateError::Internal(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_price_parses_numbers_and_strings() {
        assert_eq!(parse_max_price(&serde_json::json!(0.05)).unwrap(), 50_000);
        assert_eq!(parse_max_price(&serde_json::json!("1")).unwrap(), 1_000_000);
        assert!(parse_max_price(&serde_json::json!(true)).is_err());
        assert!(parse_max_price(&serde_json::json!(-1)).is_err());
    }

    #[test]
    fn every_error_has_one_code_and_status() {
        let cases = [
            (DelegateError::BadInput("x".into()), "bad_request", 400),
            (Unserved::default().into(), "no_provider", 503),
            (DelegateError::Deadline("x".into()), "deadline", 504),
            (DelegateError::Payment("x".into()), "payment_failed", 402),
            (
                DelegateError::ProofInvalid("x".into()),
                "proof_invalid",
                502,
            ),
            (DelegateError::Mesh("x".into()), "mesh_unavailable", 503),
            (DelegateError::Internal("x".into()), "internal", 500),
            (DelegateError::Cancelled("x".into()), "cancelled", 499),
        ];
        for (e, code, status) in cases {
            assert_eq!(e.code().as_str(), code);
            assert_eq!(e.code().http_status(), status);
            assert_eq!(e.job_error_code(), code);
        }
        let busy = DelegateError::ProviderFailed {
            code: "busy".into(),
            message: "full".into(),
        };
        assert_eq!(busy.code().as_str(), "provider_failed");
        assert_eq!(busy.job_error_code(), "busy");
    }

    #[test]
    fn no_provider_has_one_text_and_its_counts_as_fields() {
        let mut u = Unserved {
            model: "tinyllama".into(),
            asked: 11,
            failed: 2,
            answered: 3,
            ..Unserved::default()
        };
        u.unfit.insert("busy".into(), 2);
        u.unfit.insert("model_unavailable".into(), 1);
        u.retry_after_secs = Some(2);
        let e = DelegateError::from(u);
        assert_eq!(
            e.to_string(),
            "no provider served tinyllama: asked 11 nodes, 2 failed (send error or timeout), 3 answered (busy 2, model_unavailable 1)"
        );
        assert_eq!(e.retry_after_secs(), Some(2));
        let f = e.fields().unwrap();
        assert_eq!(f["asked"], 11);
        assert_eq!(f["failed"], 2);
        assert_eq!(f["answered"], 3);
        assert_eq!(f["unfit"]["busy"], 2);
        assert_eq!(DelegateError::Deadline("x".into()).fields(), None);
    }
}
