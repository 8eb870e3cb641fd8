//! What the front door adds to a mesh answer in the agents' own formats: the paid
//! receipt, and the timestamps Ollama and OpenAI write. The delegation itself is
//! [`crate::requester::events`]; the request's four shapes are [`super::agent`].

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::request::DelegateResponse;

/// A paid answer's receipt, added as `edgent` to the last object of a mesh answer (Ollama's
/// `done` line, OpenAI's last chunk or whole object): the job, whether the provider's
/// proof checked, and the payment. The last object goes out only once the proof checked
/// (or the release is confirmed, with `wait: settled`). Unpaid answers carry none, so they
/// stay exactly in Ollama's and OpenAI's shapes; clients ignore the extra field.
pub fn receipt(r: &DelegateResponse) -> Option<Value> {
    if r.proof_verified.is_none() && r.payment.is_none() {
        return None;
    }
    Some(serde_json::json!({
        "job_id": r.job_id,
        "proof_verified": r.proof_verified,
        "payment": r.payment,
    }))
}

/// Now as RFC 3339 with nanoseconds, UTC, as Ollama writes `created_at`.
pub fn rfc3339_now() -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(FORMAT)
        .unwrap_or_default()
}

/// Now as unix seconds (OpenAI's `created`).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        let t = rfc3339_now();
        assert_eq!(t.len(), "2026-11-30T14:39:38.003478439Z".len(), "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
