//! One job as stored and as `/jobs` shows it.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{JobState, PaymentRecord, Side};
use crate::axl::PeerKey;
use crate::protocol::{ChatMessage, JobId, Usage};

/// How long each phase took, milliseconds.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Finding a provider.
    pub discover_ms: Option<u64>,
    /// Inference on the provider.
    pub inference_ms: Option<u64>,
    /// Locking the payment in the escrow (approve when needed, then stake).
    pub stake_ms: Option<u64>,
    /// Provider: proving. Requester: from the result to the proof's arrival.
    pub prove_ms: Option<u64>,
    /// Checking the commitments and the Groth16 proof.
    pub verify_ms: Option<u64>,
    /// From the verified proof to the confirmed release.
    pub settle_ms: Option<u64>,
    /// Requester and local jobs: from the request to the first token that reached the
    /// agent (a streamed answer's first delta; an answer sent whole arrives all at once).
    pub first_token_ms: Option<u64>,
    /// End to end.
    pub total_ms: Option<u64>,
}

/// One job, as stored and as `/jobs` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job id (the escrow's bytes32).
    pub job_id: JobId,
    /// Our side of it.
    pub side: Side,
    /// Where it is.
    pub state: JobState,
    /// Model requested.
    pub model: String,
    /// The prompt.
    pub prompt: String,
    /// The output, once there is one.
    pub output: Option<String>,
    /// The other node (provider for a requester job, requester for a provider job).
    pub peer: Option<PeerKey>,
    /// The other node's ENS name.
    pub peer_ens: Option<String>,
    /// The other node's wallet.
    pub peer_wallet: Option<String>,
    /// Agreed price, USDC base units.
    pub price_units: Option<u64>,
    /// Machine-readable failure cause.
    pub error_code: Option<super::JobErrorCode>,
    /// Human-readable failure detail.
    pub error: Option<String>,
    /// Created, unix ms.
    pub created_ms: u64,
    /// Last change, unix ms.
    pub updated_ms: u64,
    /// Deadline, unix ms.
    pub deadline_ms: u64,
    /// Phase timings.
    pub timings: Timings,
    /// Usage reported by the provider.
    pub usage: Option<Usage>,
    /// The money side of a paid job; `None` when payments are off.
    #[serde(default)]
    pub payment: Option<PaymentRecord>,
    /// Requester: the paid delegation failed over from this attempt to the job with this
    /// id (its own stake); a result that comes here afterwards is not paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<JobId>,
    /// Requester: the providers tried so far for the delegation, this one last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<super::Attempt>,
    /// The provider's signed receipt of what it ran ([`crate::protocol::receipt`]): the
    /// provider's own (sent again with a resent result), or the one the requester received,
    /// kept as evidence whether it checked or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<crate::protocol::Receipt>,
    /// Requester: why the receipt was refused, when it was (the provider is not paid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_refused: Option<String>,
    /// Requester: what this attempt asked of its provider, the receipt's measure (a late
    /// result's too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked: Option<super::Asked>,
    /// Requester: the spot checks of this job's results, one per provider checked (a
    /// caught provider's first, then the next provider's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spot_checks: Vec<super::SpotCheck>,
    /// Requester: this job is a paid run of a spot check of the job with this id
    /// ([`crate::requester`]'s check runs), not a delegation of the agent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_of: Option<JobId>,
}

impl JobRecord {
    /// A new job in its side's initial state.
    pub fn new(job_id: JobId, side: Side, model: &str, prompt: &str, deadline_ms: u64) -> Self {
        let now = now_ms();
        JobRecord {
            job_id,
            side,
            state: JobState::initial(side),
            model: model.to_string(),
            prompt: prompt.to_string(),
            output: None,
            peer: None,
            peer_ens: None,
            peer_wallet: None,
            price_units: None,
            error_code: None,
            error: None,
            created_ms: now,
            updated_ms: now,
            deadline_ms,
            timings: Timings::default(),
            usage: None,
            payment: None,
            moved_to: None,
            attempts: Vec::new(),
            receipt: None,
            receipt_refused: None,
            asked: None,
            spot_checks: Vec::new(),
            check_of: None,
        }
    }

    /// Whether the state machine allows `self.state -> to` for this record. Beyond
    /// [`JobState::can_move_to`], a paid requester job whose stake is still open may
    /// complete late (after a restart, a timeout or a cancel) when its result arrives: the provider
    /// did the work within the stake's life, and the proof decides whether it is paid.
    pub fn can_move_to(&self, to: JobState) -> bool {
        if self.state.can_move_to(self.side, to) {
            return true;
        }
        self.side == Side::Requester
            && matches!(
                self.state,
                JobState::Failed | JobState::TimedOut | JobState::Cancelled
            )
            && to == JobState::Completed
            && self.output.is_none()
            && self.payment.as_ref().is_some_and(|p| p.status.is_open())
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Most bytes of another node's prompt a provider's job record keeps (threat model line 30).
pub const STORED_PROMPT_BYTES: usize = 1024;

/// What a provider records of another node's prompt: the prompt when it is at most
/// [`STORED_PROMPT_BYTES`], else its start, its length and its keccak256, so a 16 MiB
/// prompt is not kept whole.
pub fn stored_prompt(prompt: String) -> String {
    use tiny_keccak::Hasher;
    if prompt.len() <= STORED_PROMPT_BYTES {
        return prompt;
    }
    let mut cut = STORED_PROMPT_BYTES;
    while !prompt.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut h = tiny_keccak::Keccak::v256();
    h.update(prompt.as_bytes());
    let mut digest = [0u8; 32];
    h.finalize(&mut digest);
    format!(
        "{}… [{} bytes, keccak256 0x{}]",
        &prompt[..cut],
        prompt.len(),
        hex::encode(digest)
    )
}

/// Most characters of a chat's rendering that a job records as its prompt.
pub const CHAT_PROMPT_CHARS: usize = 2000;

/// What a job records as its prompt: the prompt itself, or for a chat its messages as
/// `role: content` lines, the latest kept when they run over [`CHAT_PROMPT_CHARS`] (the
/// earlier part is cut, marked with `…`).
pub fn prompt_of(prompt: &str, messages: Option<&[ChatMessage]>) -> String {
    let msgs = match messages {
        Some(m) if !m.is_empty() && prompt.is_empty() => m,
        _ => return prompt.to_string(),
    };
    let lines: Vec<String> = msgs
        .iter()
        .map(|m| format!("{}: {}", m.role, m.content))
        .collect();
    let all = lines.join("\n");
    let n = all.chars().count();
    if n <= CHAT_PROMPT_CHARS {
        return all;
    }
    let tail: String = all.chars().skip(n - (CHAT_PROMPT_CHARS - 1)).collect();
    format!("…{tail}")
}
