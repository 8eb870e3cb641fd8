//! Why a delegation failed ([`DelegateError`], [`Unserved`]), the one table of error codes
//! ([`ErrorCode`]) and what a job record stores ([`JobErrorCode`]), and the one JSON error
//! body ([`error_body`]).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::jobs::{ErrorCode, JobError, JobErrorCode};
use crate::protocol::TaskErrorCode;

/// The one JSON error body of the API, the `/delegate` stream's last line and MCP's tool
/// errors: `fields` (more about the error, e.g. `no_provider`'s counts), then `error` (the
/// code) and `detail` (in words, its URLs cut: [`crate::redact`]).
pub fn error_body(
    code: &str,
    detail: &str,
    fields: Option<Map<String, Value>>,
) -> Map<String, Value> {
    let mut body = fields.unwrap_or_default();
    body.insert("error".into(), Value::from(code));
    body.insert("detail".into(), Value::from(crate::redact::urls(detail)));
    body
}

/// The most of a backend's refusal message (from the mesh) that reaches the agent.
pub const REJECTION_MAX_CHARS: usize = 2_000;

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
    #[error("provider failed: {}: {message}", code.as_str())]
    ProviderFailed {
        /// The provider's error code.
        code: TaskErrorCode,
        /// Its message.
        message: String,
    },
    /// The provider's backend refused the request itself, with this 4xx status (a 400
    /// from the provider's Ollama is a 400 to the agent): another provider would refuse
    /// it too, so none is tried.
    #[error("the provider's backend refused the request (HTTP {status}): {message}")]
    Rejected {
        /// The backend's HTTP status, 400-499.
        status: u16,
        /// The backend's message, cut to [`REJECTION_MAX_CHARS`].
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
    /// The result's signed receipt is missing or does not match the job: not accepted,
    /// not paid (502).
    #[error("receipt refused: {0}")]
    ReceiptInvalid(String),
    /// A spot check caught the provider serving another model than it claims: not
    /// accepted, not paid (502).
    #[error("provider caught: {0}")]
    Caught(String),
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
    /// The delegation would spend USDC and the caller did not present the API token (401).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The agent's spend budget cannot cover what this delegation may pay (402).
    #[error("{detail}")]
    BudgetExhausted {
        /// In words: spent, budget, period.
        detail: String,
        /// When enough spending ages out of the period, seconds (`Retry-After`).
        retry_after_secs: Option<u64>,
    },
}

impl DelegateError {
    /// Its code in the API's table.
    pub fn code(&self) -> ErrorCode {
        match self {
            DelegateError::BadInput(_) | DelegateError::Rejected { .. } => ErrorCode::BadRequest,
            DelegateError::NoProvider(_) => ErrorCode::NoProvider,
            DelegateError::ProviderFailed { .. } => ErrorCode::ProviderFailed,
            DelegateError::Deadline(_) => ErrorCode::Deadline,
            DelegateError::Payment(_) => ErrorCode::PaymentFailed,
            DelegateError::ProofInvalid(_) => ErrorCode::ProofInvalid,
            DelegateError::ReceiptInvalid(_) => ErrorCode::ReceiptInvalid,
            DelegateError::Caught(_) => ErrorCode::ProviderCaught,
            DelegateError::Mesh(_) => ErrorCode::MeshUnavailable,
            DelegateError::Internal(_) => ErrorCode::Internal,
            DelegateError::Cancelled(_) => ErrorCode::Cancelled,
            DelegateError::Unauthorized(_) => ErrorCode::Unauthorized,
            DelegateError::BudgetExhausted { .. } => ErrorCode::BudgetExhausted,
        }
    }

    /// The HTTP status the agent gets: a backend's refusal keeps its own 4xx, every other
    /// error its code's ([`ErrorCode::http_status`]).
    pub fn http_status(&self) -> u16 {
        match self {
            DelegateError::Rejected { status, .. } => *status,
            other => other.code().http_status(),
        }
    }

    /// The error for a provider's `task_error`: a `bad_request` that carries its backend's
    /// 4xx status is [`DelegateError::Rejected`] (message cut to
    /// [`REJECTION_MAX_CHARS`]: it came from the mesh), anything else
    /// [`DelegateError::ProviderFailed`]. The status is the provider's word: 401, 403 and
    /// 407, which would tell the agent that its own credentials failed, become 400
    /// (docs/threat-model.md, line 41).
    pub fn from_task_error(code: TaskErrorCode, status: Option<u16>, message: String) -> Self {
        match status {
            Some(status @ 400..=499) if code == TaskErrorCode::BadRequest => {
                DelegateError::Rejected {
                    status: if matches!(status, 401 | 403 | 407) {
                        400
                    } else {
                        status
                    },
                    message: message.chars().take(REJECTION_MAX_CHARS).collect(),
                }
            }
            _ => DelegateError::ProviderFailed { code, message },
        }
    }

    /// Seconds after which asking again may succeed (`Retry-After`), when known.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            DelegateError::NoProvider(u) => u.retry_after_secs,
            DelegateError::BudgetExhausted {
                retry_after_secs, ..
            } => *retry_after_secs,
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
    pub fn job_error_code(&self) -> JobErrorCode {
        match self {
            DelegateError::ProviderFailed { code, .. } => JobErrorCode::Provider(*code),
            DelegateError::Rejected { .. } => JobErrorCode::Provider(TaskErrorCode::BadRequest),
            other => JobErrorCode::Api(other.code()),
        }
    }

    /// The JSON error body: `{error, detail}` and [`DelegateError::fields`].
    pub fn body(&self) -> Map<String, Value> {
        error_body(self.code().as_str(), &self.to_string(), self.fields())
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
/// `asked - failed - answered`: nodes that do not serve the model say nothing.
#[serde_with::skip_serializing_none]
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
    pub retry_after_secs: Option<u64>,
    /// Anything more to say (a paid job's stake).
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
            assert_eq!(e.job_error_code().as_str(), code);
        }
        let busy = DelegateError::ProviderFailed {
            code: TaskErrorCode::Busy,
            message: "full".into(),
        };
        assert_eq!(busy.code().as_str(), "provider_failed");
        assert_eq!(busy.job_error_code().as_str(), "busy");
    }

    #[test]
    fn a_backends_refusal_keeps_its_status_and_a_cut_message() {
        let long = "x".repeat(REJECTION_MAX_CHARS + 50);
        let e = DelegateError::from_task_error(TaskErrorCode::BadRequest, Some(422), long);
        assert_eq!(e.http_status(), 422);
        assert_eq!(e.code().as_str(), "bad_request");
        assert_eq!(e.job_error_code().as_str(), "bad_request");
        match &e {
            DelegateError::Rejected { message, .. } => {
                assert_eq!(message.len(), REJECTION_MAX_CHARS)
            }
            other => panic!("{other:?}"),
        }
        // A status that would say the agent's own credentials failed is not taken from the
        // mesh: it is a plain 400.
        for status in [401, 403, 407] {
            let e =
                DelegateError::from_task_error(TaskErrorCode::BadRequest, Some(status), "m".into());
            assert_eq!(e.http_status(), 400, "{status}");
        }
        // A status out of 4xx, or on another code, is not taken from the mesh.
        for (code, status) in [
            (TaskErrorCode::BadRequest, Some(500)),
            (TaskErrorCode::BadRequest, None),
            (TaskErrorCode::InferenceFailed, Some(400)),
        ] {
            let e = DelegateError::from_task_error(code, status, "m".into());
            assert_eq!(e.http_status(), 502, "{code:?} {status:?}");
        }
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

    #[test]
    fn one_error_body() {
        let e = DelegateError::Deadline("too slow".into());
        assert_eq!(
            Value::Object(e.body()),
            serde_json::json!({"error": "deadline", "detail": "too slow"})
        );
        let mut u = Unserved::default();
        u.unfit.insert("busy".into(), 1);
        let b = DelegateError::from(u).body();
        assert_eq!(b["error"], "no_provider");
        assert_eq!(b["unfit"]["busy"], 1);
    }
}
