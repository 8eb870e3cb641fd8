//! The wire protocol: every message between edgent nodes, one JSON object per AXL send.
//!
//! Every message is `{"v":1,"type":"...", ...}`. A body that is too large, not JSON, not
//! an object, of another version, of an unknown type, with missing fields, or with a field
//! out of its allowed shape is refused with a [`DecodeError`] whose [`DropReason`] the
//! router counts.
//!
//! # Mixed versions
//!
//! Nodes of different releases share a mesh, so decoding tolerates what a newer peer may
//! add: unknown fields (at any depth) are ignored with a debug log, a message of a type
//! this build does not know is dropped and counted as `unknown_type` at debug level (not
//! as an attack), and a `msg_id` on any type is acknowledged and de-duplicated (a newer
//! peer may deliver more types reliably). An older peer's reliable message without
//! `msg_id` is handled and not acknowledged. The other way round, a peer that never acks
//! (the previous release decoded strictly and refuses a `msg_id`, an `announce`, an
//! `ack` and a `heartbeat` as unknown) only costs the resends bounded by their deadline:
//! [`crate::ctx::NodeCtx::send_acked`] stops at its `until`, a background resend after
//! `RELIABLE_WINDOW_MS`, and a provider that never acks its task is given up after the
//! heartbeat window and the job moves to the next provider. So the previous release and
//! this one do not work together (upgrade every node), but neither waits out a deadline
//! on the other, and from this release on, additions degrade as above. A new value of an
//! enum field (an error `code`, a heartbeat `state`) is still refused. No message ever carries a
//! top-level `service` or `a2a` key (AXL would hand it to its MCP router or A2A server).

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::axl::PeerKey;
use crate::zk::{PublicSignals, SnarkjsProof};

/// The protocol version this build speaks.
pub const VERSION: u64 = 1;

/// Largest message we send or accept: AXL's default cap (16 MiB).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Longest model name accepted.
pub const MAX_MODEL_LEN: usize = 256;

/// Longest ENS name accepted.
pub const MAX_ENS_LEN: usize = 255;

/// Longest free-text field (error messages, version strings) accepted.
pub const MAX_TEXT_LEN: usize = 4096;

/// Most entries a `payment_required.accepts` may hold.
pub const MAX_ACCEPTS: usize = 4;

/// A job id: 32 bytes, shown as `0x` + 64 hex (the escrow's `bytes32`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub [u8; 32]);

impl JobId {
    /// A fresh job id: a random UUID, left-padded with zeros to 32 bytes.
    pub fn new() -> Self {
        let mut b = [0u8; 32];
        b[16..].copy_from_slice(Uuid::new_v4().as_bytes());
        JobId(b)
    }

    /// Parse `0x` + 64 hex.
    pub fn from_hex(s: &str) -> Result<Self, String> {
        let t = s.strip_prefix("0x").unwrap_or(s);
        let mut b = [0u8; 32];
        if t.len() != 64 || hex::decode_to_slice(t, &mut b).is_err() {
            return Err(format!(
                "job id must be 0x + 64 hex characters, got {:?}",
                s.chars().take(80).collect::<String>()
            ));
        }
        Ok(JobId(b))
    }

    /// `0x` + 64 lower-case hex.
    pub fn to_hex(&self) -> String {
        format!("0x{}", hex::encode(self.0))
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({})", self.to_hex())
    }
}

impl Serialize for JobId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        JobId::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// requester -> every node: who can run this model?
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price: Option<u64>,
    /// The requester's ENS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_ens: Option<String>,
    /// How many more times a node that receives it relays it to the nodes it knows
    /// (0: not relayed; at most [`MAX_RELAY_HOPS`]). Relays are de-duplicated by
    /// `request_id`, and the ad goes straight back to `node_id`.
    #[serde(default, skip_serializing_if = "is_zero_u8")]
    pub hops: u8,
}

fn is_zero_u8(v: &u8) -> bool {
    *v == 0
}

/// The most relay hops a `resource_request` may ask for.
pub const MAX_RELAY_HOPS: u8 = 3;

/// Most models one ad lists.
pub const MAX_AD_MODELS: usize = 1024;

/// Most node ids one announcement carries.
pub const MAX_ANNOUNCE_KNOWN: usize = 64;

/// One model a provider serves, as its backend reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelOffer {
    /// The model's name, e.g. `tinyllama:latest`.
    pub name: String,
    /// Its size on disk in bytes (Ollama's `/api/tags`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Whether it is loaded in memory now (Ollama's `/api/ps`).
    #[serde(default)]
    pub loaded: bool,
}

/// any node -> the nodes it knows: who I am, whom I know, and (a provider) what I serve.
///
/// Sent at a modest interval to direct peers (the id exchange that lets spokes learn of
/// each other through a hub) and, by providers, to every node they know, and whenever
/// what a provider offers changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announce {
    /// The sender's full AXL public key (must map to the sender's address).
    pub node_id: PeerKey,
    /// The sender's ENS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ens: Option<String>,
    /// Other nodes the sender heard from recently (at most [`MAX_ANNOUNCE_KNOWN`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub known: Vec<PeerKey>,
    /// What the sender serves, when it is a provider with models (its `request_id` is nil
    /// and its `node_id` the sender's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad: Option<ResourceAd>,
    /// How long the receiver may keep the ad, ms (the receiver caps it).
    #[serde(default)]
    pub ttl_ms: u64,
}

/// provider -> requester: I can, on these terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceAd {
    /// The request this answers.
    pub request_id: Uuid,
    /// The provider's full AXL public key (must map to the sender's address).
    pub node_id: PeerKey,
    /// The provider's ENS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ens: Option<String>,
    /// Where the provider is paid (`0x` + 40 hex), when payments are on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<u32>,
    /// Jobs waiting in the provider's queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<u32>,
}

/// The escrow stake that pays for a task.
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<StakeAuthorization>,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// The job (the escrow's `bytes32`).
    pub job_id: JobId,
    /// Model to run.
    pub model: String,
    /// The prompt.
    pub prompt: String,
    /// Backend options (Ollama's `options` object), passed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Map<String, Value>>,
    /// The stake paying for it; absent when payments are off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stake: Option<StakeRef>,
    /// Unix time in milliseconds after which the requester no longer waits.
    pub deadline_ms: u64,
    /// The requester's ENS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_ens: Option<String>,
    /// A chat instead of a prompt: the conversation, run through the backend's chat API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<ChatMessage>>,
    /// Whether the requester wants the output as it is generated, in `task_chunk`s.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
}

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Its text.
    pub content: String,
}

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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    /// Tokens generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
    /// Wall time of the inference on the provider, milliseconds.
    #[serde(default)]
    pub inference_ms: u64,
    /// Which backend produced it (e.g. `ollama`, `demo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

/// provider -> requester: the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// The job.
    pub job_id: JobId,
    /// The model's output.
    pub output: String,
    /// Usage and timings.
    #[serde(default)]
    pub usage: Usage,
}

/// Why a provider did not deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
}

impl TaskErrorCode {
    /// The snake_case name, as on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::StakeMissing => "stake_missing",
            Self::StakeInsufficient => "stake_insufficient",
            Self::DeadlineTooClose => "deadline_too_close",
            Self::ModelUnavailable => "model_unavailable",
            Self::Busy => "busy",
            Self::InferenceFailed => "inference_failed",
            Self::BadRequest => "bad_request",
            Self::Cancelled => "cancelled",
        }
    }
}

/// provider -> requester: could not do it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskError {
    /// The job.
    pub job_id: JobId,
    /// Machine-readable cause.
    pub code: TaskErrorCode,
    /// Human-readable detail.
    pub message: String,
    /// With `busy`: when to ask again, milliseconds (the provider's queue is full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// either side -> the sender of a reliable message: it arrived (see [`Envelope`]).
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The job.
    pub job_id: JobId,
    /// Queued or running.
    pub state: BeatState,
    /// While queued: jobs ahead of this one (0 = next to run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u32>,
}

/// x402 v2 `PaymentRequirements`, carried over AXL instead of HTTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirements {
    /// Payment scheme, e.g. `exact`.
    pub scheme: String,
    /// CAIP-2 network, e.g. `eip155:84532`.
    pub network: String,
    /// Token contract (USDC).
    pub asset: String,
    /// Amount in base units, decimal string.
    pub amount: String,
    /// Who is paid.
    pub pay_to: String,
    /// How long the offer stands.
    pub max_timeout_seconds: u64,
    /// Scheme-specific data: here `{escrow, jobId}`.
    #[serde(default)]
    pub extra: Map<String, Value>,
}

/// x402 v2 `ResourceInfo`: what is paid for (here the job, `axl://<provider>/job/<id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfo {
    /// The resource's URL.
    pub url: String,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// MIME type of the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

/// x402 v2 `PaymentRequired` (the body of a 402), carried over AXL instead of HTTP.
/// [`crate::paid::x402`] builds and checks it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    /// Always 2.
    pub x402_version: u32,
    /// Why payment is (still) required, when something went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What is paid for.
    pub resource: ResourceInfo,
    /// The ways to pay, each a [`PaymentRequirements`].
    pub accepts: Vec<PaymentRequirements>,
}

/// x402 v2 `SettleResponse`: how a payment settled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettleResponse {
    /// Whether it settled.
    pub success: bool,
    /// Machine-readable reason when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
    /// Who paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// The settling transaction's hash.
    pub transaction: String,
    /// CAIP-2 network.
    pub network: String,
    /// Amount settled, base units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
}

/// provider -> requester: pay me; here is the proof that binds the output to me.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentRequest {
    /// The job.
    pub job_id: JobId,
    /// What to pay: a full x402 v2 `PaymentRequired`.
    pub payment_required: PaymentRequired,
    /// Poseidon commitment to keccak256(output), `0x` + 64 hex.
    pub output_commitment: String,
    /// Poseidon commitment to the provider's AXL key, `0x` + 64 hex.
    pub wallet_commitment: String,
    /// Groth16 proof in snarkjs JSON form (points checked on the curve while parsing).
    pub proof: SnarkjsProof,
    /// Public signals, decimal strings, in the circuit's order.
    pub public_signals: PublicSignals,
}

/// requester -> provider: paid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentConfirmed {
    /// The job.
    pub job_id: JobId,
    /// The release transaction.
    pub tx_hash: String,
    /// A link to it on the explorer.
    pub explorer_url: String,
    /// The same settlement as an x402 v2 `SettleResponse`.
    pub settle_response: SettleResponse,
}

/// Every message of the protocol, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
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
}

/// The `type` names this build knows.
pub const MESSAGE_TYPES: [&str; 12] = [
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

/// Most ignored field names one decode logs.
const MAX_IGNORED_LOGGED: usize = 16;

/// Deserialise one message of type `kind` from its fields (`v`, `type` and `msg_id`
/// taken out), noting every field this build does not know in `ignored` (nested ones as
/// paths, e.g. `stake.extra`).
fn decode_kind(
    kind: &str,
    map: Map<String, Value>,
    ignored: &mut Vec<String>,
) -> Result<Message, serde_json::Error> {
    fn de<T: serde::de::DeserializeOwned>(
        map: Map<String, Value>,
        ignored: &mut Vec<String>,
    ) -> Result<T, serde_json::Error> {
        serde_ignored::deserialize(Value::Object(map), |path| {
            if ignored.len() < MAX_IGNORED_LOGGED {
                ignored.push(path.to_string());
            }
        })
    }
    Ok(match kind {
        "resource_request" => Message::ResourceRequest(de(map, ignored)?),
        "resource_ad" => Message::ResourceAd(de(map, ignored)?),
        "task" => Message::Task(de(map, ignored)?),
        "task_chunk" => Message::TaskChunk(de(map, ignored)?),
        "task_cancel" => Message::TaskCancel(de(map, ignored)?),
        "task_result" => Message::TaskResult(de(map, ignored)?),
        "task_error" => Message::TaskError(de(map, ignored)?),
        "payment_request" => Message::PaymentRequest(Box::new(de(map, ignored)?)),
        "payment_confirmed" => Message::PaymentConfirmed(de(map, ignored)?),
        "ack" => Message::Ack(de(map, ignored)?),
        "heartbeat" => Message::Heartbeat(de(map, ignored)?),
        "announce" => Message::Announce(de(map, ignored)?),
        other => {
            return Err(serde::de::Error::custom(format!(
                "unknown variant {other:?}"
            )))
        }
    })
}

/// A decoded message with its delivery id: the top-level `msg_id` (a UUID) that the
/// reliable types carry. A message of an older peer has none: it is handled, but not
/// acknowledged or de-duplicated. Another type carrying `msg_id` (a newer peer's) is
/// acknowledged and de-duplicated the same way.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The delivery id, when the sender asked for an acknowledgement.
    pub msg_id: Option<Uuid>,
    /// The message.
    pub msg: Message,
}

impl Message {
    /// The `type` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::ResourceRequest(_) => "resource_request",
            Message::ResourceAd(_) => "resource_ad",
            Message::Task(_) => "task",
            Message::TaskChunk(_) => "task_chunk",
            Message::TaskCancel(_) => "task_cancel",
            Message::TaskResult(_) => "task_result",
            Message::TaskError(_) => "task_error",
            Message::PaymentRequest(_) => "payment_request",
            Message::PaymentConfirmed(_) => "payment_confirmed",
            Message::Ack(_) => "ack",
            Message::Heartbeat(_) => "heartbeat",
            Message::Announce(_) => "announce",
        }
    }

    /// Whether this message is delivered reliably (see [`RELIABLE_TYPES`]).
    pub fn is_reliable(&self) -> bool {
        RELIABLE_TYPES.contains(&self.kind())
    }

    /// The node id the message claims for its sender, if it carries one.
    pub fn claimed_node(&self) -> Option<&PeerKey> {
        match self {
            Message::ResourceRequest(m) => Some(&m.node_id),
            Message::ResourceAd(m) => Some(&m.node_id),
            Message::Announce(m) => Some(&m.node_id),
            _ => None,
        }
    }

    /// Serialise to the wire form, `{"v":1,"type":...}`.
    pub fn encode(&self) -> Result<Bytes, EncodeError> {
        self.encode_with_id(None)
    }

    /// Serialise with a delivery id (`msg_id`), which only reliable types may carry.
    pub fn encode_with_id(&self, msg_id: Option<Uuid>) -> Result<Bytes, EncodeError> {
        self.validate().map_err(EncodeError::Invalid)?;
        if msg_id.is_some() && !self.is_reliable() {
            return Err(EncodeError::Invalid(format!(
                "{} is not a reliable message and carries no msg_id",
                self.kind()
            )));
        }
        let mut value = serde_json::to_value(self).map_err(|e| EncodeError::Json(e.to_string()))?;
        let Value::Object(map) = &mut value else {
            return Err(EncodeError::Json("message is not an object".into()));
        };
        map.insert("v".into(), Value::from(VERSION));
        if let Some(id) = msg_id {
            map.insert("msg_id".into(), Value::from(id.to_string()));
        }
        let body = serde_json::to_vec(&value).map_err(|e| EncodeError::Json(e.to_string()))?;
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(EncodeError::TooLarge(body.len()));
        }
        Ok(Bytes::from(body))
    }

    /// Parse and validate a wire message (its `msg_id`, if any, is checked and dropped).
    pub fn decode(body: &[u8]) -> Result<Message, DecodeError> {
        Self::decode_envelope(body).map(|e| e.msg)
    }

    /// Parse and validate a wire message with its delivery id.
    pub fn decode_envelope(body: &[u8]) -> Result<Envelope, DecodeError> {
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(DecodeError::new(
                DropReason::Oversize,
                format!("{} bytes", body.len()),
            ));
        }
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| DecodeError::new(DropReason::BadJson, e.to_string()))?;
        let Value::Object(mut map) = value else {
            return Err(DecodeError::new(DropReason::BadJson, "not a JSON object"));
        };
        match map.remove("v") {
            Some(Value::Number(n)) if n.as_u64() == Some(VERSION) => {}
            Some(other) => {
                return Err(DecodeError::new(
                    DropReason::BadVersion,
                    format!("v = {other}"),
                ))
            }
            None => return Err(DecodeError::new(DropReason::BadVersion, "missing v")),
        }
        let kind = match map.remove("type") {
            Some(Value::String(t)) if MESSAGE_TYPES.contains(&t.as_str()) => t,
            Some(Value::String(t)) => {
                let t: String = t.chars().take(64).collect();
                return Err(DecodeError::new(
                    DropReason::UnknownType,
                    format!("type {t:?}"),
                ));
            }
            _ => return Err(DecodeError::new(DropReason::UnknownType, "missing type")),
        };
        let msg_id = match map.remove("msg_id") {
            None => None,
            Some(Value::String(s)) => Some(
                Uuid::parse_str(&s)
                    .map_err(|_| DecodeError::new(DropReason::Invalid, "msg_id must be a UUID"))?,
            ),
            Some(_) => {
                return Err(DecodeError::new(
                    DropReason::Invalid,
                    "msg_id must be a UUID string",
                ))
            }
        };
        let mut ignored: Vec<String> = Vec::new();
        let msg = decode_kind(&kind, map, &mut ignored)
            .map_err(|e| DecodeError::new(DropReason::Invalid, e.to_string()))?;
        msg.validate()
            .map_err(|e| DecodeError::new(DropReason::Invalid, e))?;
        if !ignored.is_empty() {
            ignored.truncate(MAX_IGNORED_LOGGED);
            tracing::debug!(kind = msg.kind(), fields = ?ignored, "fields this build does not know ignored (a newer peer?)");
        }
        Ok(Envelope { msg_id, msg })
    }

    /// Field-level checks beyond what the types enforce.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Message::ResourceRequest(m) => {
                check_model(&m.model)?;
                if m.hops > MAX_RELAY_HOPS {
                    return Err(format!("hops {} exceeds {MAX_RELAY_HOPS}", m.hops));
                }
                check_opt_ens(&m.sender_ens)
            }
            Message::ResourceAd(m) => check_ad(m),
            Message::Announce(m) => {
                check_opt_ens(&m.ens)?;
                if m.known.len() > MAX_ANNOUNCE_KNOWN {
                    return Err(format!("more than {MAX_ANNOUNCE_KNOWN} known nodes"));
                }
                if let Some(ad) = &m.ad {
                    if ad.node_id != m.node_id {
                        return Err("the ad's node_id is not the sender's".into());
                    }
                    check_ad(ad)?;
                }
                Ok(())
            }
            Message::Task(m) => {
                check_model(&m.model)?;
                check_opt_ens(&m.sender_ens)?;
                if let Some(s) = &m.stake {
                    check_address("stake.escrow", &s.escrow)?;
                    check_amount("stake.amount", &s.amount)?;
                    if !s.tx.is_empty() || s.authorization.is_none() {
                        check_hash("stake.tx", &s.tx)?;
                    }
                    if let Some(a) = &s.authorization {
                        check_address("stake.authorization.from", &a.from)?;
                        check_hash("stake.authorization.nonce", &a.nonce)?;
                        if !is_hex(&a.signature, 130) {
                            return Err(
                                "stake.authorization.signature must be 0x + 130 hex characters"
                                    .into(),
                            );
                        }
                    }
                }
                if let Some(msgs) = &m.messages {
                    if msgs.len() > 4096 {
                        return Err("too many messages".into());
                    }
                    for msg in msgs {
                        check_text("messages.role", &msg.role)?;
                    }
                }
                Ok(())
            }
            Message::TaskChunk(_) | Message::TaskCancel(_) => Ok(()),
            Message::TaskResult(_) => Ok(()),
            Message::TaskError(m) => check_text("message", &m.message),
            Message::PaymentRequest(m) => {
                check_hash("output_commitment", &m.output_commitment)?;
                check_hash("wallet_commitment", &m.wallet_commitment)?;
                let pr = &m.payment_required;
                check_text("payment_required.resource.url", &pr.resource.url)?;
                if let Some(e) = &pr.error {
                    check_text("payment_required.error", e)?;
                }
                if pr.accepts.is_empty() || pr.accepts.len() > MAX_ACCEPTS {
                    return Err(format!(
                        "payment_required.accepts must hold 1 to {MAX_ACCEPTS} entries"
                    ));
                }
                for r in &pr.accepts {
                    check_address("accepts.asset", &r.asset)?;
                    check_address("accepts.payTo", &r.pay_to)?;
                    check_amount("accepts.amount", &r.amount)?;
                    check_text("accepts.scheme", &r.scheme)?;
                    check_text("accepts.network", &r.network)?;
                    if serde_json::to_string(&r.extra).map_or(0, |s| s.len()) > MAX_TEXT_LEN {
                        return Err(format!("accepts.extra longer than {MAX_TEXT_LEN} bytes"));
                    }
                }
                Ok(())
            }
            Message::PaymentConfirmed(m) => {
                check_hash("tx_hash", &m.tx_hash)?;
                check_text(
                    "settle_response.transaction",
                    &m.settle_response.transaction,
                )?;
                check_text("settle_response.network", &m.settle_response.network)?;
                check_text("explorer_url", &m.explorer_url)
            }
            Message::Ack(_) | Message::Heartbeat(_) => Ok(()),
        }
    }
}

fn check_ad(m: &ResourceAd) -> Result<(), String> {
    check_opt_ens(&m.ens)?;
    if let Some(w) = &m.wallet {
        check_address("wallet", w)?;
    }
    if m.models.len() > MAX_AD_MODELS || m.model_info.len() > MAX_AD_MODELS {
        return Err("too many models".into());
    }
    for model in &m.models {
        check_model(model)?;
    }
    for model in &m.model_info {
        check_model(&model.name)?;
    }
    if !(0.0..=1.0).contains(&m.load) {
        return Err(format!("load {} is outside 0..=1", m.load));
    }
    check_text("version", &m.version)
}

/// A model name as the protocol accepts it: 1..=[`MAX_MODEL_LEN`] printable characters.
pub fn check_model(m: &str) -> Result<(), String> {
    if m.is_empty() || m.len() > MAX_MODEL_LEN || m.chars().any(|c| c.is_control()) {
        return Err(format!(
            "model must be 1..={MAX_MODEL_LEN} printable characters"
        ));
    }
    Ok(())
}

fn check_opt_ens(e: &Option<String>) -> Result<(), String> {
    match e {
        Some(n) if n.len() > MAX_ENS_LEN || n.chars().any(|c| c.is_control()) => {
            Err("ENS name too long or not printable".into())
        }
        _ => Ok(()),
    }
}

fn check_text(field: &str, s: &str) -> Result<(), String> {
    if s.len() > MAX_TEXT_LEN {
        return Err(format!("{field} longer than {MAX_TEXT_LEN} bytes"));
    }
    Ok(())
}

fn is_hex(s: &str, n: usize) -> bool {
    s.strip_prefix("0x")
        .is_some_and(|h| h.len() == n && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn check_address(field: &str, s: &str) -> Result<(), String> {
    if !is_hex(s, 40) {
        return Err(format!("{field} must be 0x + 40 hex characters"));
    }
    Ok(())
}

fn check_hash(field: &str, s: &str) -> Result<(), String> {
    if !is_hex(s, 64) {
        return Err(format!("{field} must be 0x + 64 hex characters"));
    }
    Ok(())
}

fn check_amount(field: &str, s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 78 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{field} must be a decimal integer string"));
    }
    Ok(())
}

/// Why an incoming message was dropped (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Larger than [`MAX_MESSAGE_BYTES`].
    Oversize,
    /// Not JSON, or not a JSON object.
    BadJson,
    /// `v` missing or not 1.
    BadVersion,
    /// `type` missing or unknown.
    UnknownType,
    /// Fields missing, unknown, or out of shape.
    Invalid,
    /// The claimed `node_id` does not map to the sender's address.
    Spoofed,
    /// Well-formed but not expected now (unknown job, wrong sender, stale request).
    Unexpected,
    /// A reliable message handled already (sent again because its ack was lost).
    Duplicate,
    /// The sender exceeded its per-peer rate, or the node has too much in flight.
    RateLimited,
}

impl DropReason {
    /// Stable label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Oversize => "oversize",
            Self::BadJson => "bad_json",
            Self::BadVersion => "bad_version",
            Self::UnknownType => "unknown_type",
            Self::Invalid => "invalid",
            Self::Spoofed => "spoofed",
            Self::Unexpected => "unexpected",
            Self::Duplicate => "duplicate",
            Self::RateLimited => "rate_limited",
        }
    }

    /// Every reason, for exporting zeroed counters.
    pub const ALL: [DropReason; 9] = [
        Self::Oversize,
        Self::BadJson,
        Self::BadVersion,
        Self::UnknownType,
        Self::Invalid,
        Self::Spoofed,
        Self::Unexpected,
        Self::Duplicate,
        Self::RateLimited,
    ];
}

/// A message that could not be decoded.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {detail}", reason.as_str())]
pub struct DecodeError {
    /// The class of fault.
    pub reason: DropReason,
    /// What exactly was wrong.
    pub detail: String,
}

impl DecodeError {
    fn new(reason: DropReason, detail: impl Into<String>) -> Self {
        let mut detail: String = detail.into();
        detail.truncate(300);
        DecodeError { reason, detail }
    }
}

/// A message we could not send.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EncodeError {
    /// Serialisation failed.
    #[error("cannot serialise message: {0}")]
    Json(String),
    /// A field is out of shape.
    #[error("invalid message: {0}")]
    Invalid(String),
    /// The encoded message exceeds [`MAX_MESSAGE_BYTES`].
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge(usize),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(b: u8) -> PeerKey {
        PeerKey([b; 32])
    }

    /// A real proof (proving once per test binary).
    fn sample_proof() -> (SnarkjsProof, PublicSignals) {
        static P: std::sync::OnceLock<(SnarkjsProof, PublicSignals)> = std::sync::OnceLock::new();
        P.get_or_init(|| crate::zk::prove(b"out", &[2; 32], &[7; 32]).unwrap())
            .clone()
    }

    /// One sample of every message type.
    pub(crate) fn samples() -> Vec<Message> {
        let job = JobId([7; 32]);
        let mut extra = Map::new();
        extra.insert("escrow".into(), json!("0x".to_string() + &"a".repeat(40)));
        vec![
            Message::ResourceRequest(ResourceRequest {
                request_id: Uuid::new_v4(),
                node_id: key(1),
                model: "tinyllama".into(),
                min_memory_mb: 512,
                max_price: Some(10_000),
                sender_ens: Some("jetson-orin.edgent.eth".into()),
                hops: 2,
            }),
            Message::ResourceAd(ResourceAd {
                request_id: Uuid::new_v4(),
                node_id: key(2),
                ens: Some("dell-g15.edgent.eth".into()),
                wallet: Some(format!("0x{}", "b".repeat(40))),
                models: vec!["tinyllama:latest".into()],
                free_memory_mb: 8000,
                price: 10_000,
                load: 0.5,
                version: "0.1.0".into(),
                model_info: vec![ModelOffer {
                    name: "tinyllama:latest".into(),
                    size_bytes: Some(637_700_138),
                    loaded: true,
                }],
                slots: Some(2),
                queue: Some(0),
            }),
            Message::Task(Task {
                job_id: job,
                model: "tinyllama".into(),
                prompt: "hello".into(),
                options: Some(
                    json!({"service": "x", "a2a": true})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                ),
                stake: Some(StakeRef {
                    chain_id: 84532,
                    escrow: format!("0x{}", "c".repeat(40)),
                    amount: "10000".into(),
                    tx: format!("0x{}", "d".repeat(64)),
                    authorization: None,
                }),
                deadline_ms: 1,
                sender_ens: None,
                messages: Some(vec![ChatMessage {
                    role: "user".into(),
                    content: "hi".into(),
                }]),
                stream: true,
            }),
            Message::TaskChunk(TaskChunk {
                job_id: job,
                seq: 3,
                delta: "wor".into(),
            }),
            Message::TaskCancel(TaskCancel { job_id: job }),
            Message::TaskResult(TaskResult {
                job_id: job,
                output: "world".into(),
                usage: Usage::default(),
            }),
            Message::TaskError(TaskError {
                job_id: job,
                code: TaskErrorCode::Busy,
                message: "at capacity".into(),
                retry_after_ms: Some(2000),
            }),
            Message::PaymentRequest(Box::new(PaymentRequest {
                job_id: job,
                payment_required: PaymentRequired {
                    x402_version: 2,
                    error: None,
                    resource: ResourceInfo {
                        url: "axl://provider/job/7".into(),
                        description: None,
                        mime_type: None,
                    },
                    accepts: vec![PaymentRequirements {
                        scheme: "auth-capture".into(),
                        network: "eip155:84532".into(),
                        asset: format!("0x{}", "e".repeat(40)),
                        amount: "10000".into(),
                        pay_to: format!("0x{}", "f".repeat(40)),
                        max_timeout_seconds: 600,
                        extra,
                    }],
                },
                output_commitment: format!("0x{}", "1".repeat(64)),
                wallet_commitment: format!("0x{}", "2".repeat(64)),
                proof: sample_proof().0,
                public_signals: sample_proof().1,
            })),
            Message::PaymentConfirmed(PaymentConfirmed {
                job_id: job,
                tx_hash: format!("0x{}", "3".repeat(64)),
                explorer_url: "https://sepolia.basescan.org/tx/0x".into(),
                settle_response: SettleResponse {
                    success: true,
                    error_reason: None,
                    payer: Some(format!("0x{}", "4".repeat(40))),
                    transaction: format!("0x{}", "3".repeat(64)),
                    network: "eip155:84532".into(),
                    amount: Some("10000".into()),
                },
            }),
            Message::Ack(Ack {
                acked: Uuid::new_v4(),
            }),
            Message::Heartbeat(Heartbeat {
                job_id: job,
                state: BeatState::Queued,
                queue_position: Some(3),
            }),
            Message::Announce(Announce {
                node_id: key(2),
                ens: None,
                known: vec![key(3), key(4)],
                ad: None,
                ttl_ms: 60_000,
            }),
        ]
    }

    #[test]
    fn every_type_round_trips() {
        let s = samples();
        assert_eq!(s.len(), MESSAGE_TYPES.len());
        for m in s {
            let wire = m.encode().unwrap();
            let back = Message::decode(&wire).unwrap();
            assert_eq!(back, m);
            let v: Value = serde_json::from_slice(&wire).unwrap();
            assert_eq!(v["v"], json!(1));
            assert_eq!(v["type"], json!(m.kind()));
        }
    }

    #[test]
    fn no_message_has_a_top_level_service_or_a2a_key() {
        for m in samples() {
            let v: Value = serde_json::from_slice(&m.encode().unwrap()).unwrap();
            let obj = v.as_object().unwrap();
            assert!(!obj.contains_key("service"), "{} has service", m.kind());
            assert!(!obj.contains_key("a2a"), "{} has a2a", m.kind());
        }
    }

    #[test]
    fn bad_input_is_classified() {
        let cases: Vec<(&[u8], DropReason)> = vec![
            (b"not json", DropReason::BadJson),
            (b"{\"v\":1,\"type\":\"task\"", DropReason::BadJson),
            (b"[1,2]", DropReason::BadJson),
            (b"{\"type\":\"task\"}", DropReason::BadVersion),
            (b"{\"v\":2,\"type\":\"task\"}", DropReason::BadVersion),
            (b"{\"v\":\"1\",\"type\":\"task\"}", DropReason::BadVersion),
            (b"{\"v\":1,\"type\":\"steal\"}", DropReason::UnknownType),
            (b"{\"v\":1}", DropReason::UnknownType),
            (b"{\"v\":1,\"type\":\"task\"}", DropReason::Invalid),
            (
                b"{\"v\":1,\"type\":\"task_error\",\"job_id\":\"0x00\",\"code\":\"busy\",\"message\":\"\"}",
                DropReason::Invalid,
            ),
        ];
        for (body, reason) in cases {
            let e = Message::decode(body).unwrap_err();
            assert_eq!(e.reason, reason, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn a_newer_peers_unknown_fields_are_ignored_and_its_unknown_types_dropped() {
        for m in samples() {
            let mut v: Value = serde_json::from_slice(&m.encode().unwrap()).unwrap();
            v["extra_field"] = json!({"nested": [1, 2]});
            let got = Message::decode(&serde_json::to_vec(&v).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e:?}", m.kind()));
            assert_eq!(got, m, "{}", m.kind());
        }
        // Nested too: an unknown field inside the task's stake.
        let task = samples().into_iter().find(|m| m.kind() == "task").unwrap();
        let mut v: Value = serde_json::from_slice(&task.encode().unwrap()).unwrap();
        if v["stake"].is_object() {
            v["stake"]["new_thing"] = json!(true);
        }
        assert_eq!(
            Message::decode(&serde_json::to_vec(&v).unwrap()).unwrap(),
            task
        );
        // A type this build does not know: dropped as unknown_type, nothing else.
        let e = Message::decode(br#"{"v":1,"type":"task_progress","job_id":"0x00"}"#).unwrap_err();
        assert_eq!(e.reason, DropReason::UnknownType);
    }

    #[test]
    fn bad_shapes_are_refused() {
        let mut ad: Value = serde_json::from_slice(&samples()[1].encode().unwrap()).unwrap();
        ad["load"] = json!(7.0);
        let e = Message::decode(&serde_json::to_vec(&ad).unwrap()).unwrap_err();
        assert_eq!(e.reason, DropReason::Invalid);
        ad["load"] = json!(0.1);
        ad["node_id"] = json!("abc");
        let e = Message::decode(&serde_json::to_vec(&ad).unwrap()).unwrap_err();
        assert_eq!(e.reason, DropReason::Invalid);
    }

    #[test]
    fn oversize_is_refused_both_ways() {
        let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert_eq!(
            Message::decode(&big).unwrap_err().reason,
            DropReason::Oversize
        );
        let m = Message::TaskResult(TaskResult {
            job_id: JobId::new(),
            output: "x".repeat(MAX_MESSAGE_BYTES),
            usage: Usage::default(),
        });
        assert!(matches!(m.encode(), Err(EncodeError::TooLarge(_))));
    }

    #[test]
    fn reliable_messages_carry_an_optional_msg_id() {
        let id = Uuid::new_v4();
        for m in samples() {
            let with = m.encode_with_id(Some(id));
            if m.is_reliable() {
                let env = Message::decode_envelope(&with.unwrap()).unwrap();
                assert_eq!(env.msg_id, Some(id));
                assert_eq!(env.msg, m);
                // An older peer's message, without the id, is still understood.
                let env = Message::decode_envelope(&m.encode().unwrap()).unwrap();
                assert_eq!(env.msg_id, None);
            } else {
                assert!(with.is_err(), "{} encoded a msg_id", m.kind());
                // A newer peer may deliver it reliably: its msg_id is kept, to be acked.
                let mut v: Value = serde_json::from_slice(&m.encode().unwrap()).unwrap();
                v["msg_id"] = json!(id.to_string());
                let env = Message::decode_envelope(&serde_json::to_vec(&v).unwrap()).unwrap();
                assert_eq!(env.msg_id, Some(id), "{}", m.kind());
                assert_eq!(env.msg, m);
            }
        }
        let mut v: Value = serde_json::from_slice(&samples()[3].encode().unwrap()).unwrap();
        v["msg_id"] = json!("not-a-uuid");
        let e = Message::decode(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert_eq!(e.reason, DropReason::Invalid);
        v["msg_id"] = json!(7);
        let e = Message::decode(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert_eq!(e.reason, DropReason::Invalid);
    }

    #[test]
    fn job_ids_are_bytes32_hex() {
        let j = JobId::new();
        assert_eq!(j.to_hex().len(), 66);
        assert_eq!(JobId::from_hex(&j.to_hex()).unwrap(), j);
        assert!(JobId::from_hex("0x1234").is_err());
        assert_ne!(JobId::new(), JobId::new());
    }
}
