//! Evidence of a caught cheater, as a node publishes it over the mesh (`evidence`), and the
//! check a receiver makes before it keeps it ([`check_evidence`]).
//!
//! A node whose spot check caught a provider sends its direct peers what the check ran:
//! the model, its digest, the options and the prompt (or chat), the accused's signed
//! receipt, and the checkers' signed receipts of their own runs. Every claim in it is
//! someone's signature: the sender's word adds nothing. A receiver keeps it only when every
//! signature checks, the first receipt is the accused's own, and every receipt names the
//! carried model, prompt and options; it excludes nobody on it unless its own run confirms
//! it (docs/receipts-and-spot-checks.md, "Evidence").

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::receipt::{prompt_hash, same_options, verify_signature};
use super::{ChatMessage, Receipt};
use crate::axl::PeerKey;

/// Most bytes of a carried prompt (or chat, as JSON).
pub const MAX_EVIDENCE_PROMPT_BYTES: usize = 64 * 1024;

/// Most receipts one evidence carries (the accused's and the checkers').
pub const MAX_EVIDENCE_RECEIPTS: usize = 8;

/// Fewest checkers' receipts: a spot check accuses only when two others agree.
pub const MIN_EVIDENCE_CHECKERS: usize = 2;

/// any node -> its direct peers: a spot check of mine caught `accused`; check it yourself.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The accused provider's full AXL key.
    pub accused: PeerKey,
    /// The model the job asked for.
    pub model: String,
    /// The digest the accused's receipt names (empty when none).
    #[serde(default)]
    pub model_digest: String,
    /// The options every compared run ran with (the job's, or its greedy probe's).
    #[serde(default)]
    pub options: Option<Map<String, Value>>,
    /// The prompt (empty for a chat).
    #[serde(default)]
    pub prompt: String,
    /// The chat, when the job was one.
    #[serde(default)]
    pub messages: Option<Vec<ChatMessage>>,
    /// The accused's signed receipt of the compared run.
    pub accused_receipt: Receipt,
    /// The checkers' signed receipts of their own runs.
    #[serde(default)]
    pub checker_receipts: Vec<Receipt>,
}

/// Why a received evidence is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    /// Too large or too many receipts.
    #[error("evidence too large: {0}")]
    TooLarge(String),
    /// A receipt's signature does not check.
    #[error("a receipt's signature does not check (signer {0})")]
    BadSignature(String),
    /// The accused's receipt is signed by another key.
    #[error("the accused's receipt is signed by {0}, not by the accused")]
    NotTheAccused(String),
    /// Too few checkers, or a checker that is the accused or counted twice.
    #[error("the checkers' receipts do not make an accusation: {0}")]
    Checkers(String),
    /// A receipt names another model, digest, prompt or options than the carried job's.
    #[error("a receipt's {0} is not the carried job's")]
    Mismatch(&'static str),
}

impl Evidence {
    /// Every receipt it carries, the accused's first.
    pub fn receipts(&self) -> impl Iterator<Item = &Receipt> {
        std::iter::once(&self.accused_receipt).chain(&self.checker_receipts)
    }

    /// The size bounds, checked when it is decoded and before it is sent.
    pub fn check_bounds(&self) -> Result<(), EvidenceError> {
        let prompt = match &self.messages {
            Some(m) => serde_json::to_vec(m).map(|v| v.len()).unwrap_or(usize::MAX),
            None => self.prompt.len(),
        };
        if prompt > MAX_EVIDENCE_PROMPT_BYTES {
            return Err(EvidenceError::TooLarge(format!(
                "prompt of {prompt} bytes (at most {MAX_EVIDENCE_PROMPT_BYTES})"
            )));
        }
        if 1 + self.checker_receipts.len() > MAX_EVIDENCE_RECEIPTS {
            return Err(EvidenceError::TooLarge(format!(
                "more than {MAX_EVIDENCE_RECEIPTS} receipts"
            )));
        }
        Ok(())
    }
}

/// Check an evidence before it is kept: its bounds, every receipt's signature, the
/// accused's receipt signed by the accused, at least [`MIN_EVIDENCE_CHECKERS`] checkers
/// that are neither the accused nor each other, and every receipt naming the carried
/// model, prompt (its hash) and options (the accused's the carried digest too).
pub fn check_evidence(ev: &Evidence) -> Result<(), EvidenceError> {
    ev.check_bounds()?;
    for r in ev.receipts() {
        verify_signature(r)
            .map_err(|_| EvidenceError::BadSignature(r.body.signer.chars().take(64).collect()))?;
    }
    let accused = ev.accused.to_hex();
    if ev.accused_receipt.body.signer != accused {
        return Err(EvidenceError::NotTheAccused(
            ev.accused_receipt.body.signer.chars().take(64).collect(),
        ));
    }
    let mut seen = vec![accused];
    for r in &ev.checker_receipts {
        if seen.contains(&r.body.signer) {
            return Err(EvidenceError::Checkers(format!(
                "{} counted twice",
                r.body.signer
            )));
        }
        seen.push(r.body.signer.clone());
    }
    if ev.checker_receipts.len() < MIN_EVIDENCE_CHECKERS {
        return Err(EvidenceError::Checkers(format!(
            "{} checkers, at least {MIN_EVIDENCE_CHECKERS}",
            ev.checker_receipts.len()
        )));
    }
    if ev.accused_receipt.body.model_digest != ev.model_digest {
        return Err(EvidenceError::Mismatch("model_digest"));
    }
    let hash = prompt_hash(&ev.prompt, ev.messages.as_deref());
    let asked = ev.options.clone().unwrap_or_default();
    for r in ev.receipts() {
        if r.body.model != ev.model {
            return Err(EvidenceError::Mismatch("model"));
        }
        if r.body.prompt_hash != hash {
            return Err(EvidenceError::Mismatch("prompt_hash"));
        }
        let got: Option<Map<String, Value>> = serde_json::from_str(&r.body.options_json).ok();
        if !got.is_some_and(|g| same_options(&asked, &g)) {
            return Err(EvidenceError::Mismatch("options"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::receipt::{output_hash, ReceiptBody, ReceiptSigner};

    fn run(s: &ReceiptSigner, output: &str) -> Receipt {
        s.sign(ReceiptBody {
            job_id: format!("0x{}", "07".repeat(32)),
            model: "gemma3:270m".into(),
            model_digest: "ab".repeat(32),
            options_json: r#"{"seed":0,"temperature":0}"#.into(),
            prompt_hash: prompt_hash("why is the sky blue?", None),
            output_hash: output_hash(output),
            tool_calls_hash: String::new(),
            time_ms: 1_000_000,
            signer: String::new(),
        })
    }

    /// A true accusation: the accused's output differs from two checkers that agree.
    fn evidence() -> Evidence {
        let (a, b, c) = (
            ReceiptSigner::from_seed(&[1; 32]),
            ReceiptSigner::from_seed(&[2; 32]),
            ReceiptSigner::from_seed(&[3; 32]),
        );
        Evidence {
            accused: a.public(),
            model: "gemma3:270m".into(),
            model_digest: "ab".repeat(32),
            options: serde_json::json!({"temperature": 0, "seed": 0})
                .as_object()
                .cloned(),
            prompt: "why is the sky blue?".into(),
            messages: None,
            accused_receipt: run(&a, "tiny nonsense"),
            checker_receipts: vec![
                run(&b, "Rayleigh scattering"),
                run(&c, "Rayleigh scattering"),
            ],
        }
    }

    #[test]
    fn signed_evidence_of_the_carried_job_checks() {
        check_evidence(&evidence()).unwrap();
    }

    #[test]
    fn a_forged_or_mismatched_evidence_is_refused() {
        // A checker's receipt altered after signing (its output claimed otherwise).
        let mut e = evidence();
        e.checker_receipts[0].body.output_hash = output_hash("other");
        assert!(matches!(
            check_evidence(&e),
            Err(EvidenceError::BadSignature(_))
        ));
        // The accused's receipt forged: signed by someone else under the accused's name.
        let mut e = evidence();
        let forger = ReceiptSigner::from_seed(&[9; 32]);
        let mut r = run(&forger, "tiny nonsense");
        r.body.signer = e.accused.to_hex();
        e.accused_receipt = r;
        assert!(matches!(
            check_evidence(&e),
            Err(EvidenceError::BadSignature(_))
        ));
        // A genuine receipt of someone else's, presented as the accused's.
        let mut e = evidence();
        e.accused = ReceiptSigner::from_seed(&[9; 32]).public();
        assert!(matches!(
            check_evidence(&e),
            Err(EvidenceError::NotTheAccused(_))
        ));
        // Another prompt than the receipts ran.
        let mut e = evidence();
        e.prompt = "why is grass green?".into();
        assert_eq!(
            check_evidence(&e),
            Err(EvidenceError::Mismatch("prompt_hash"))
        );
        // Other options.
        let mut e = evidence();
        e.options = serde_json::json!({"temperature": 0.8}).as_object().cloned();
        assert_eq!(check_evidence(&e), Err(EvidenceError::Mismatch("options")));
        // One checker twice, or the accused as its own checker.
        let mut e = evidence();
        e.checker_receipts[1] = e.checker_receipts[0].clone();
        assert!(matches!(
            check_evidence(&e),
            Err(EvidenceError::Checkers(_))
        ));
        let mut e = evidence();
        e.checker_receipts.truncate(1);
        assert!(matches!(
            check_evidence(&e),
            Err(EvidenceError::Checkers(_))
        ));
        // Too many receipts, too long a prompt.
        let mut e = evidence();
        let extra = e.checker_receipts[0].clone();
        e.checker_receipts.extend(std::iter::repeat_n(extra, 8));
        assert!(matches!(
            check_evidence(&e),
            Err(EvidenceError::TooLarge(_))
        ));
        let mut e = evidence();
        e.prompt = "x".repeat(MAX_EVIDENCE_PROMPT_BYTES + 1);
        assert!(matches!(
            check_evidence(&e),
            Err(EvidenceError::TooLarge(_))
        ));
    }
}
