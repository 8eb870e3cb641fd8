//! The wire form: a [`Message`] as `{"v":1,"type":...}`, encoded and decoded with its
//! delivery id, and why an incoming message was dropped ([`DropReason`]).

use bytes::Bytes;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{Message, MAX_MESSAGE_BYTES, MESSAGE_TYPES, RELIABLE_TYPES, VERSION};
use crate::axl::PeerKey;

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
        "evidence" => Message::Evidence(Box::new(de(map, ignored)?)),
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
        self.into()
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
}

/// Why an incoming message was dropped (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
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
    /// A task for a job id this provider already knows (in intake, queued, running or
    /// recorded): dropped before any stake check (docs/threat-model.md, rule 1).
    KnownJob,
}

impl DropReason {
    /// Stable label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        self.into()
    }

    /// Every reason, for exporting zeroed counters.
    pub const ALL: [DropReason; 10] = [
        Self::Oversize,
        Self::BadJson,
        Self::BadVersion,
        Self::UnknownType,
        Self::Invalid,
        Self::Spoofed,
        Self::Unexpected,
        Self::Duplicate,
        Self::RateLimited,
        Self::KnownJob,
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
