//! The messages of discovery (`resource_request`, `resource_ad`, `announce`), of a task
//! (`task`, `task_chunk`, `task_cancel`, `task_result`, `task_error`) and of delivery
//! (`ack`, `heartbeat`), and [`Message`], every message of the protocol tagged by `type`.
//! The payment messages are in [`super::x402`].

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use serde_json::{Map, Value};

use super::{JobId, PaymentConfirmed, PaymentRequest};
use crate::axl::PeerKey;

/// requester -> every node: who can run this model?
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceRequest {
    /// Correlates the ads with this request.
    pub request_id: Uuid,
    /// The requester's full AXL public key (must map to the sender's address).
    pub node_id: PeerKey,
    /// Model wanted, e.g. `tinyllama`.
    pub model: String,
    /// Free memory the provider should have, in MiB.
    #[serde(default)]
    pub min_memory_mb: u64,
    /// Highest acceptable price, in USDC base units (6 decimals).
    pub max_price: Option<u64>,
    /// The requester's ENS name.
    pub sender_ens: Option<String>,
    /// Relay hops, from the time nodes relayed requests (at most
    /// [`super::MAX_RELAY_HOPS`]). This build sends 0 and relays nothing: a relayed copy
    /// keeps `node_id`, which is not its sender's, so every receiver dropped it as spoofed.
    #[serde(default, skip_serializing_if = "is_zero_u8")]
    pub hops: u8,
}

fn is_zero_u8(v: &u8) -> bool {
    *v == 0
}

/// One model a provider serves, as its backend reports it.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelOffer {
    /// The model's name, e.g. `tinyllama:latest`.
    pub name: String,
    /// Its size on disk in bytes (Ollama's `/api/tags`), when known.
    pub size_bytes: Option<u64>,
    /// Whether it is loaded in memory now (Ollama's `/api/ps`).
    #[serde(default)]
    pub loaded: bool,
    /// What the model is: the sha256 of its weights (the GGUF file; 64 lowercase hex
    /// digits; see [`super::digest`]), when known. A request pinned to a digest is never
    /// given to a provider whose digest differs or is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Its family, e.g. `gemma3` (`details.family`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// Its parameter count as Ollama writes it, e.g. `268.10M` (`details.parameter_size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_size: Option<String>,
    /// Its quantization, e.g. `Q4_K_M` (`details.quantization_level`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
}

/// any node -> the nodes it knows: who I am, whom I know, and (a provider) what I serve.
///
/// Sent at a modest interval to direct peers (the id exchange that lets spokes learn of
/// each other through a hub) and, by providers, to every node they know, and whenever
/// what a provider offers changes.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announce {
    /// The sender's full AXL public key (must map to the sender's address).
    pub node_id: PeerKey,
    /// The sender's ENS name.
    pub ens: Option<String>,
    /// Other nodes the sender heard from recently (at most [`MAX_ANNOUNCE_KNOWN`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub known: Vec<PeerKey>,
    /// What the sender serves, when it is a provider with models (its `request_id` is nil
    /// and its `node_id` the sender's).
    pub ad: Option<ResourceAd>,
    /// How long the receiver may keep the ad, ms (the receiver caps it).
    #[serde(default)]
    pub ttl_ms: u64,
}

/// provider -> requester: I can, on these terms.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceAd {
    /// The request this answers.
    pub request_id: Uuid,
    /// The provider's full AXL public key (must map to the sender's address).
    pub node_id: PeerKey,
    /// The provider's ENS name.
    pub ens: Option<String>,
    /// Where the provider is paid (`0x` + 40 hex), when payments are on.
    pub wallet: Option<String>,
    /// Models it serves.
    pub models: Vec<String>,
    /// Free memory, MiB.
    pub free_memory_mb: u64,
    /// Price per job, USDC base units.
    pub price: u64,
    /// Running jobs divided by capacity, 0.0 ..= 1.0.
    pub load: f64,
    /// The provider's edgent version.
    pub version: String,
    /// Each served model with its size and whether it is loaded (same names as `models`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_info: Vec<ModelOffer>,
    /// Job slots in all (`PROVIDER_MAX_JOBS`).
    pub slots: Option<u32>,
    /// Jobs waiting in the provider's queue.
    pub queue: Option<u32>,
}

/// The escrow stake that pays for a task.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StakeRef {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Escrow contract address.
    pub escrow: String,
    /// Staked amount, USDC base units, as a decimal string.
    pub amount: String,
    /// The stake transaction hash; empty when the stake travels as an `authorization`
    /// for the provider to submit.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tx: String,
    /// The requester's signed EIP-3009 authorization: the provider submits it as
    /// `stakeWithAuthorization` before any work (the requester needs no ETH). Absent when
    /// the requester staked itself (`tx`).
    pub authorization: Option<StakeAuthorization>,
    /// A stake the requester sent itself (`tx`) bound to the sender: without it a provider
    /// takes no `tx` stake (docs/threat-model.md, rule 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<StakeBinding>,
}

/// The requester wallet's EIP-191 signature over
/// `crate::chain::stake_binding_digest(chain id, escrow, job, provider key, node)`: the
/// stake on chain (its `requester`) belongs to the node `node`, which sent this task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StakeBinding {
    /// The requester's full AXL key: the task's sender.
    pub node: PeerKey,
    /// The 65-byte signature `r || s || v`, `0x` + 130 hex.
    pub signature: String,
}

impl StakeBinding {
    /// The wallet that signed this binding of `job`'s stake on `escrow` (chain `chain_id`)
    /// for the provider with AXL key `provider`; `None` for a malformed signature.
    pub fn signer(
        &self,
        chain_id: u64,
        escrow: alloy::primitives::Address,
        job: &JobId,
        provider: &PeerKey,
    ) -> Option<alloy::primitives::Address> {
        let job = alloy::primitives::B256::from(job.0);
        let digest =
            crate::chain::stake_binding_digest(chain_id, escrow, job, &provider.0, &self.node.0);
        crate::chain::stake_binding_signer(digest, &self.signature)
    }
}

/// A requester's EIP-3009 `ReceiveWithAuthorization` to the escrow for one stake. The
/// provider is the task's recipient (its wallet, and the commitment to its AXL key), the
/// amount is the `StakeRef`'s, the job is the task's; the signed nonce is the escrow's
/// `stakeNonce(jobId, from, provider, keyCommitment, amount, stake_deadline)`, so none of
/// those terms can be changed by whoever submits it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StakeAuthorization {
    /// The requester's wallet (EIP-3009 `from`), `0x` + 40 hex.
    pub from: String,
    /// The stake's deadline, unix seconds (refundable after it).
    pub stake_deadline: u64,
    /// EIP-3009 `validAfter`, unix seconds.
    pub valid_after: u64,
    /// EIP-3009 `validBefore`, unix seconds.
    pub valid_before: u64,
    /// The signed nonce, `0x` + 64 hex (the provider recomputes and compares it).
    pub nonce: String,
    /// The 65-byte signature `r || s || v` (v 27 or 28), `0x` + 130 hex.
    pub signature: String,
}

/// requester -> provider: run this.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// The job (the escrow's `bytes32`).
    pub job_id: JobId,
    /// Model to run.
    pub model: String,
    /// The prompt.
    pub prompt: String,
    /// Backend options (Ollama's `options` object), passed through.
    pub options: Option<Map<String, Value>>,
    /// The stake paying for it; absent when payments are off.
    pub stake: Option<StakeRef>,
    /// Unix time in milliseconds after which the requester no longer waits.
    pub deadline_ms: u64,
    /// The requester's ENS name.
    pub sender_ens: Option<String>,
    /// A chat instead of a prompt: the conversation, run through the backend's chat API.
    pub messages: Option<Vec<ChatMessage>>,
    /// Whether the requester wants the output as it is generated, in `task_chunk`s.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    /// The digest the model must have (64 lowercase hex digits), when the request is
    /// pinned: a provider whose model has another digest refuses the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_digest: Option<String>,
}

/// One message of a chat. The fields after `content` are Ollama's (`/api/chat`), absent
/// when empty, so a plain `{role, content}` chat is the same on the wire (and in its
/// receipt's prompt hash) as before they existed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Its text.
    pub content: String,
    /// Images for a model that sees, base64 (at most [`MAX_IMAGES`] per task, checked
    /// with the task).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// The tool calls an assistant message made, in Ollama's shape
    /// (`{"function": {"name", "arguments"}}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<Value>,
    /// A `tool` message: the tool whose answer it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
    /// A `tool` message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

/// Most images in one task, all its messages together.
pub const MAX_IMAGES: usize = 16;

/// Most tool calls in one chat message or in one result.
pub const MAX_TOOL_CALLS: usize = 64;

/// provider -> requester: more of a streamed task's output, in order of `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskChunk {
    /// The job.
    pub job_id: JobId,
    /// 0, 1, 2, ... per job: the requester reorders and de-duplicates by it.
    pub seq: u64,
    /// The text generated since the previous chunk.
    pub delta: String,
}

/// requester -> provider: the agent went away; stop the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskCancel {
    /// The job.
    pub job_id: JobId,
}

/// What the inference cost.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: Option<u64>,
    /// Tokens generated.
    pub completion_tokens: Option<u64>,
    /// Wall time of the inference on the provider, milliseconds.
    #[serde(default)]
    pub inference_ms: u64,
    /// Which backend produced it (e.g. `ollama`, `demo`).
    pub backend: Option<String>,
}

/// provider -> requester: the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// The job.
    pub job_id: JobId,
    /// The model's output.
    pub output: String,
    /// The tool calls the model made (Ollama's shape, at most [`MAX_TOOL_CALLS`]); the
    /// receipt binds them (`tool_calls_hash`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<Value>,
    /// Usage and timings.
    #[serde(default)]
    pub usage: Usage,
    /// What the provider ran, signed with its AXL key ([`super::receipt`]); a result
    /// without one is not accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<super::Receipt>,
}

/// Whether a result's output is empty (nothing but white space): such a result is refused,
/// not paid, and counts as the provider's failure (docs/threat-model.md, line 10).
pub fn is_empty_output(output: &str) -> bool {
    output.trim().is_empty()
}

/// Whether a result says nothing: no text and no tool call (an answer that only calls a
/// tool has no text, as Ollama gives it).
pub fn is_empty_result(r: &TaskResult) -> bool {
    is_empty_output(&r.output) && r.tool_calls.is_empty()
}

/// Why a provider did not deliver.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum TaskErrorCode {
    /// No stake found for the job.
    StakeMissing,
    /// The stake is smaller than the price or not for this provider.
    StakeInsufficient,
    /// Too little time left before the deadline.
    DeadlineTooClose,
    /// The provider does not serve the model.
    ModelUnavailable,
    /// The provider is at capacity.
    Busy,
    /// The backend failed.
    InferenceFailed,
    /// The task itself was malformed.
    BadRequest,
    /// The requester cancelled the job (its agent went away).
    Cancelled,
    /// The provider does not serve this requester: denied, or not on its allow list (an
    /// ENS name counts only once checked).
    NotAllowed,
}

impl TaskErrorCode {
    /// The snake_case name, as on the wire.
    pub fn as_str(&self) -> &'static str {
        self.into()
    }
}

/// provider -> requester: could not do it.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskError {
    /// The job.
    pub job_id: JobId,
    /// Machine-readable cause.
    pub code: TaskErrorCode,
    /// Human-readable detail.
    pub message: String,
    /// With `busy`: when to ask again, milliseconds (the provider's queue is full).
    pub retry_after_ms: Option<u64>,
    /// With `bad_request` from the provider's backend: the HTTP status it answered
    /// (400-499), which the requester's agent gets as it is.
    #[serde(default)]
    pub status: Option<u16>,
}

/// either side -> the sender of a reliable message: it arrived (see [`super::Envelope`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// The `msg_id` of the message acknowledged.
    pub acked: Uuid,
}

/// Where a provider's job stands, as a heartbeat tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BeatState {
    /// Waiting for a job slot.
    Queued,
    /// Running on the backend.
    Running,
}

/// provider -> requester, every `HEARTBEAT_MS` while a job is queued or running: alive.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The job.
    pub job_id: JobId,
    /// Queued or running.
    pub state: BeatState,
    /// While queued: jobs ahead of this one (0 = next to run).
    pub queue_position: Option<u32>,
}

/// Every message of the protocol, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(tag = "type", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Message {
    /// See [`ResourceRequest`].
    ResourceRequest(ResourceRequest),
    /// See [`ResourceAd`].
    ResourceAd(ResourceAd),
    /// See [`Task`].
    Task(Task),
    /// See [`TaskResult`].
    TaskResult(TaskResult),
    /// See [`TaskError`].
    TaskError(TaskError),
    /// See [`PaymentRequest`] (boxed: it carries a proof).
    PaymentRequest(Box<PaymentRequest>),
    /// See [`PaymentConfirmed`].
    PaymentConfirmed(PaymentConfirmed),
    /// See [`TaskChunk`].
    TaskChunk(TaskChunk),
    /// See [`TaskCancel`].
    TaskCancel(TaskCancel),
    /// See [`Ack`].
    Ack(Ack),
    /// See [`Heartbeat`].
    Heartbeat(Heartbeat),
    /// See [`Announce`].
    Announce(Announce),
    /// See [`super::Evidence`] (boxed: it carries a prompt and receipts).
    Evidence(Box<super::Evidence>),
}

/// The `type` names this build knows.
pub const MESSAGE_TYPES: [&str; 13] = [
    "resource_request",
    "resource_ad",
    "task",
    "task_chunk",
    "task_cancel",
    "task_result",
    "task_error",
    "payment_request",
    "payment_confirmed",
    "ack",
    "heartbeat",
    "announce",
    "evidence",
];

/// The `type`s delivered reliably: they carry a `msg_id`, are acknowledged with an
/// [`Ack`], sent again until acknowledged, and de-duplicated on receipt.
pub const RELIABLE_TYPES: [&str; 5] = [
    "task",
    "task_result",
    "task_error",
    "payment_request",
    "payment_confirmed",
];
