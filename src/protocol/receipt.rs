//! Signed receipts: what a provider says it ran, signed with its AXL key.
//!
//! Every `task_result` carries a [`Receipt`]: the job, the model's name and digest, the
//! options it ran with (the sampling: seed, temperature, top_k, ...), a hash of the prompt
//! or messages, the hash of the output, and the time, signed (ed25519) with the provider's
//! AXL node key, the key whose Poseidon commitment the proof and the escrow name
//! (`walletCommitment`). The requester checks the signature and every field against what it
//! asked ([`check_receipt`]) before it pays, and keeps the receipt with the job: a receipt
//! that names another model, other options or another prompt than the job's is the
//! provider's own signed word, evidence an arbiter or another node can check with nothing
//! but the provider's public key.
//!
//! # The signed bytes
//!
//! `"edgent receipt v1\n"` followed by the JSON of [`ReceiptBody`]: a struct of strings
//! and integers only, so its JSON is the same on every machine (the options travel as the
//! JSON text the provider signed, `options_json`, and the requester compares them by
//! value). Hashes are keccak256, the output's the same `keccak256(output)` the proof
//! commits to.

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{ChatMessage, JobId};
use crate::axl::PeerKey;
use crate::zk::keccak256;

/// The domain of the signed bytes.
const DOMAIN: &[u8] = b"edgent receipt v1\n";

/// How far a receipt's time may be from the requester's clock, milliseconds.
pub const RECEIPT_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;

/// provider -> requester, inside `task_result`: what the provider ran, signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// What was signed.
    #[serde(flatten)]
    pub body: ReceiptBody,
    /// ed25519 signature over [`ReceiptBody::signed_bytes`], 128 hex digits.
    pub signature: String,
}

/// The signed fields of a [`Receipt`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBody {
    /// The job (the escrow's `bytes32`), `0x` + 64 hex.
    pub job_id: String,
    /// The model name the provider ran.
    pub model: String,
    /// The digest of the weights it ran (64 lowercase hex digits), empty when its backend
    /// knows none.
    pub model_digest: String,
    /// The backend options it ran with (the sampling: seed, temperature, top_k, top_p,
    /// num_predict, stop, ...), as JSON text; `{}` when none.
    pub options_json: String,
    /// keccak256 of the prompt or messages ([`prompt_hash`]), `0x` + 64 hex.
    pub prompt_hash: String,
    /// keccak256 of the output (the hash the proof commits to), `0x` + 64 hex.
    pub output_hash: String,
    /// keccak256 of the tool calls the result carries ([`tool_calls_hash`]); absent (and
    /// not in the signed bytes) when it carries none, so a receipt without tool calls signs
    /// the same bytes as before the field existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tool_calls_hash: String,
    /// When the provider signed it, unix milliseconds.
    pub time_ms: u64,
    /// The provider's full AXL key, 64 hex.
    pub signer: String,
}

impl ReceiptBody {
    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = DOMAIN.to_vec();
        // A struct of strings and integers: serialising cannot fail.
        out.extend(serde_json::to_vec(self).unwrap_or_default());
        out
    }
}

/// keccak256 of what the model was asked: the chat's messages (as a JSON array of
/// `{role, content}`) when it is a chat, else the prompt; `0x` + 64 hex.
pub fn prompt_hash(prompt: &str, messages: Option<&[ChatMessage]>) -> String {
    let bytes = match messages {
        Some(m) => {
            let mut b = b"messages:".to_vec();
            b.extend(serde_json::to_vec(m).unwrap_or_default());
            b
        }
        None => [b"prompt:".as_slice(), prompt.as_bytes()].concat(),
    };
    format!("0x{}", hex::encode(keccak256(&bytes)))
}

/// keccak256 of a result's tool calls (their JSON array), `0x` + 64 hex; empty for none.
pub fn tool_calls_hash(calls: &[Value]) -> String {
    if calls.is_empty() {
        return String::new();
    }
    let json = serde_json::to_vec(calls).unwrap_or_default();
    format!("0x{}", hex::encode(keccak256(&json)))
}

/// keccak256 of an output, `0x` + 64 hex.
pub fn output_hash(output: &str) -> String {
    format!("0x{}", hex::encode(keccak256(output.as_bytes())))
}

/// What a paid output is bound to beside its text, as the job's signed receipt names it:
/// the model's digest and the hash of the tool calls (each empty when none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputBinding {
    /// The model's digest (64 hex), empty when the model has none known.
    pub model_digest: String,
    /// [`tool_calls_hash`] of the result's tool calls, empty for none.
    pub tool_calls_hash: String,
}

impl OutputBinding {
    /// The binding a job's receipt names (empty without a receipt).
    pub fn of(receipt: Option<&Receipt>) -> Self {
        receipt.map_or_else(Self::default, |r| Self {
            model_digest: r.body.model_digest.clone(),
            tool_calls_hash: r.body.tool_calls_hash.clone(),
        })
    }

    /// Whether an output with this binding says nothing: no text and no tool call (an
    /// answer that only calls a tool is paid; an empty one never is).
    pub fn says_nothing(&self, output: &str) -> bool {
        crate::protocol::is_empty_output(output) && self.tool_calls_hash.is_empty()
    }
}

/// The bytes the proof's `outputCommitment` commits to (its preimage is their keccak256),
/// so the on-chain `outputHash` names the model and the tool calls too: the output alone
/// when the binding is empty; `"edgent output v2\n" || digest || "\n" || output` without
/// tool calls; `"edgent output v3\n" || digest || "\n" || tool_calls_hash || "\n" ||
/// output` with them. Both ends take the binding from the job's receipt.
pub fn committed_output(output: &str, bound: &OutputBinding) -> Vec<u8> {
    let mut b = Vec::with_capacity(output.len() + 150);
    if !bound.tool_calls_hash.is_empty() {
        b.extend(b"edgent output v3\n");
        b.extend(bound.model_digest.as_bytes());
        b.push(b'\n');
        b.extend(bound.tool_calls_hash.as_bytes());
        b.push(b'\n');
    } else if !bound.model_digest.is_empty() {
        b.extend(b"edgent output v2\n");
        b.extend(bound.model_digest.as_bytes());
        b.push(b'\n');
    }
    b.extend(output.as_bytes());
    b
}

/// The digest a job's receipt names, empty without one.
pub fn receipt_digest(receipt: Option<&Receipt>) -> &str {
    receipt.map_or("", |r| r.body.model_digest.as_str())
}

/// The options as a receipt carries them.
pub fn options_json(options: Option<&Map<String, Value>>) -> String {
    match options {
        Some(m) => serde_json::to_string(m).unwrap_or_else(|_| "{}".into()),
        None => "{}".into(),
    }
}

/// A provider's receipt signer: its AXL node key.
#[derive(Clone)]
pub struct ReceiptSigner {
    key: SigningKey,
}

impl std::fmt::Debug for ReceiptSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReceiptSigner({})", self.public().short())
    }
}

impl ReceiptSigner {
    /// The signer of the ed25519 key with this 32-byte seed (the AXL key file's).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        ReceiptSigner {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// Its public key: the AXL node id it signs as.
    pub fn public(&self) -> PeerKey {
        PeerKey(self.key.verifying_key().to_bytes())
    }

    /// Sign a receipt for `body` (its `signer` set to this key).
    pub fn sign(&self, mut body: ReceiptBody) -> Receipt {
        body.signer = self.public().to_hex();
        let sig = self.key.sign(&body.signed_bytes());
        Receipt {
            body,
            signature: hex::encode(sig.to_bytes()),
        }
    }
}

/// What the requester asked, to check a receipt against.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The job.
    pub job_id: &'a JobId,
    /// The provider it gave the job to (its full AXL key, from its ad).
    pub provider: &'a PeerKey,
    /// The model it asked for (without a pin).
    pub model: &'a str,
    /// The digest the model must have: the pinned one, else the one the provider's ad
    /// claimed for it (empty when the ad claimed none: the receipt must say none too).
    pub model_digest: &'a str,
    /// The options it sent.
    pub options: Option<&'a Map<String, Value>>,
    /// The hash of the prompt or chat it sent ([`prompt_hash`]).
    pub prompt_hash: &'a str,
    /// The output it received.
    pub output: &'a str,
    /// The tool calls it received with the output.
    pub tool_calls: &'a [Value],
    /// When it sent the task, unix milliseconds.
    pub sent_ms: u64,
    /// Now, unix milliseconds.
    pub now_ms: u64,
}

/// Why a receipt does not stand: the provider is not paid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptMismatch {
    /// The result carries no receipt.
    #[error("the result carries no signed receipt")]
    Missing,
    /// The signer is not the provider the job was given to.
    #[error("the receipt is signed by {got}, not by the job's provider {want}")]
    WrongSigner {
        /// The key the job was given to.
        want: String,
        /// The key the receipt names.
        got: String,
    },
    /// The signature does not check.
    #[error("the receipt's signature does not check")]
    BadSignature,
    /// A field differs from what was asked or received.
    #[error("the receipt's {field} is {got:?}, the job's is {want:?}")]
    Field {
        /// Which field.
        field: &'static str,
        /// What the job asked or received.
        want: String,
        /// What the receipt says.
        got: String,
    },
}

fn field(field: &'static str, want: &str, got: &str) -> Result<(), ReceiptMismatch> {
    if want == got {
        Ok(())
    } else {
        Err(ReceiptMismatch::Field {
            field,
            want: want.chars().take(200).collect(),
            got: got.chars().take(200).collect(),
        })
    }
}

/// The signature of `receipt` checks against the key it names.
pub fn verify_signature(receipt: &Receipt) -> Result<PeerKey, ReceiptMismatch> {
    let signer =
        PeerKey::from_hex(&receipt.body.signer).map_err(|_| ReceiptMismatch::BadSignature)?;
    let key = VerifyingKey::from_bytes(&signer.0).map_err(|_| ReceiptMismatch::BadSignature)?;
    let mut sig = [0u8; 64];
    hex::decode_to_slice(&receipt.signature, &mut sig)
        .map_err(|_| ReceiptMismatch::BadSignature)?;
    key.verify(&receipt.body.signed_bytes(), &Signature::from_bytes(&sig))
        .map_err(|_| ReceiptMismatch::BadSignature)?;
    Ok(signer)
}

/// Check a result's receipt against what was asked: the signer is the job's provider, the
/// signature checks, and the job, model, digest, options, prompt, output and time are the
/// job's. The one check a requester makes before it pays (and on unpaid jobs too).
pub fn check_receipt(
    receipt: Option<&Receipt>,
    want: &Expected<'_>,
) -> Result<(), ReceiptMismatch> {
    let r = receipt.ok_or(ReceiptMismatch::Missing)?;
    let b = &r.body;
    let named = PeerKey::from_hex(&b.signer).map_err(|_| ReceiptMismatch::BadSignature)?;
    if named != *want.provider {
        return Err(ReceiptMismatch::WrongSigner {
            want: want.provider.to_hex(),
            got: b.signer.chars().take(64).collect(),
        });
    }
    verify_signature(r)?;
    field("job_id", &want.job_id.to_string(), &b.job_id)?;
    field("model", want.model, &b.model)?;
    field("model_digest", want.model_digest, &b.model_digest)?;
    let got: Option<Map<String, Value>> = serde_json::from_str(&b.options_json).ok();
    let asked = want.options.cloned().unwrap_or_default();
    if !got.as_ref().is_some_and(|g| same_options(&asked, g)) {
        return Err(ReceiptMismatch::Field {
            field: "options",
            want: options_json(Some(&asked)),
            got: b.options_json.chars().take(200).collect(),
        });
    }
    field("prompt_hash", want.prompt_hash, &b.prompt_hash)?;
    field("output_hash", &output_hash(want.output), &b.output_hash)?;
    field(
        "tool_calls_hash",
        &tool_calls_hash(want.tool_calls),
        &b.tool_calls_hash,
    )?;
    let earliest = want.sent_ms.saturating_sub(RECEIPT_CLOCK_SKEW_MS);
    let latest = want.now_ms.saturating_add(RECEIPT_CLOCK_SKEW_MS);
    if b.time_ms < earliest || b.time_ms > latest {
        return Err(ReceiptMismatch::Field {
            field: "time_ms",
            want: format!("{earliest}..={latest}"),
            got: b.time_ms.to_string(),
        });
    }
    Ok(())
}

/// Two options objects say the same: the same keys, equal values (numbers equal to a
/// relative 1e-12, as a float may come back one unit in the last place off after a trip
/// through JSON text).
pub fn same_options(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(k, v)| b.get(k).is_some_and(|w| same_value(v, w)))
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            _ if x == y => true,
            (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same_value(v, w))
        }
        (Value::Object(x), Value::Object(y)) => same_options(x, y),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DIGEST: &str = "abababababababababababababababababababababababababababababababab";

    /// `prompt_hash("hi", None)`.
    static PROMPT_HI: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| prompt_hash("hi", None));

    fn job() -> JobId {
        JobId([7u8; 32])
    }

    fn body(signer: &ReceiptSigner) -> ReceiptBody {
        ReceiptBody {
            job_id: job().to_string(),
            model: "gemma3:270m".into(),
            model_digest: DIGEST.into(),
            options_json: r#"{"seed":42,"temperature":0.7}"#.into(),
            prompt_hash: prompt_hash("hi", None),
            output_hash: output_hash("hello"),
            tool_calls_hash: String::new(),
            time_ms: 1_000_000,
            signer: signer.public().to_hex(),
        }
    }

    fn expected<'a>(
        provider: &'a PeerKey,
        j: &'a JobId,
        opts: &'a Map<String, Value>,
    ) -> Expected<'a> {
        Expected {
            job_id: j,
            provider,
            model: "gemma3:270m",
            model_digest: DIGEST,
            options: Some(opts),
            prompt_hash: &PROMPT_HI,
            output: "hello",
            tool_calls: &[],
            sent_ms: 999_000,
            now_ms: 1_001_000,
        }
    }

    #[test]
    fn an_honest_receipt_checks_and_every_altered_field_is_caught() {
        let s = ReceiptSigner::from_seed(&[3u8; 32]);
        let p = s.public();
        let j = job();
        let opts = json!({"temperature": 0.7, "seed": 42})
            .as_object()
            .unwrap()
            .clone();
        let r = s.sign(body(&s));
        // Through the wire and back.
        let r: Receipt = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        check_receipt(Some(&r), &expected(&p, &j, &opts)).unwrap();

        // Each field the job expects otherwise is named.
        let altered = |want: &Expected| match check_receipt(Some(&r), want) {
            Err(ReceiptMismatch::Field { field, .. }) => Some(field),
            _ => None,
        };
        let digest = "cd".repeat(32);
        let mut want = expected(&p, &j, &opts);
        want.model_digest = &digest;
        assert_eq!(altered(&want), Some("model_digest"));

        let other = json!({"temperature": 0.0, "seed": 42})
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(altered(&expected(&p, &j, &other)), Some("options"));

        let mut want = expected(&p, &j, &opts);
        want.output = "hello!";
        assert_eq!(altered(&want), Some("output_hash"));

        let mut want = expected(&p, &j, &opts);
        let ho = prompt_hash("ho", None);
        want.prompt_hash = &ho;
        assert_eq!(altered(&want), Some("prompt_hash"));

        let mut want = expected(&p, &j, &opts);
        want.model = "llama3:70b";
        assert_eq!(altered(&want), Some("model"));

        // A field changed after signing.
        let mut forged = r.clone();
        forged.body.model_digest = "ef".repeat(32);
        assert_eq!(
            check_receipt(Some(&forged), &expected(&p, &j, &opts)),
            Err(ReceiptMismatch::BadSignature)
        );

        // Signed by another key.
        let other_key = ReceiptSigner::from_seed(&[4u8; 32]);
        let r2 = other_key.sign(body(&other_key));
        assert!(matches!(
            check_receipt(Some(&r2), &expected(&p, &j, &opts)),
            Err(ReceiptMismatch::WrongSigner { .. })
        ));

        assert_eq!(
            check_receipt(None, &expected(&p, &j, &opts)),
            Err(ReceiptMismatch::Missing)
        );

        let mut want = expected(&p, &j, &opts);
        want.sent_ms = 1_000_000 + RECEIPT_CLOCK_SKEW_MS + 1;
        want.now_ms = want.sent_ms;
        assert!(matches!(
            check_receipt(Some(&r), &want),
            Err(ReceiptMismatch::Field {
                field: "time_ms",
                ..
            })
        ));
    }

    #[test]
    fn a_chat_and_a_prompt_hash_apart() {
        let m = vec![ChatMessage {
            role: "user".into(),
            content: "hi".into(),
            ..Default::default()
        }];
        assert_ne!(prompt_hash("hi", None), prompt_hash("hi", Some(&m)));
        assert_eq!(prompt_hash("", Some(&m)), prompt_hash("other", Some(&m)));
    }
}
