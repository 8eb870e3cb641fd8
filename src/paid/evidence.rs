//! What a requester's dispute carries to the escrow's arbiter: the hash of the task it sent
//! and the hash of the result it got (zero when none came). The `Disputed` event records
//! both next to the output commitment the provider submitted, so the arbiter judges from
//! messages the two sides exchanged and cannot be handed others.
//!
//! This is the one place that decides what the evidence is: when the result came with the
//! provider's signed receipt (kept on the job, accepted or refused), the result hash is the
//! receipt's, which the provider signed with its AXL key (the key the stake names), so the
//! arbiter can check the provider's own words against the submitted output commitment.

use alloy::primitives::{keccak256, B256};

use crate::jobs::JobRecord;

/// The hashes a dispute carries (`dispute(jobId, taskHash, resultHash)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evidence {
    /// keccak256 of the task as the requester sent it: job id, model and prompt.
    pub task_hash: B256,
    /// keccak256 of the result's signed receipt (JSON) when it came with one, else of the
    /// result as it arrived (job id and output); zero if none arrived.
    pub result_hash: B256,
}

impl Evidence {
    /// The evidence of a requester's job record.
    pub fn of(rec: &JobRecord) -> Evidence {
        let task = [
            b"edgent task v1".as_slice(),
            &rec.job_id.0,
            rec.model.as_bytes(),
            &[0],
            rec.prompt.as_bytes(),
        ]
        .concat();
        let receipt = rec
            .receipt
            .as_ref()
            .and_then(|r| serde_json::to_vec(r).ok());
        let result_hash = match (&receipt, &rec.output) {
            (Some(signed), _) => keccak256(
                [
                    b"edgent receipt v1".as_slice(),
                    &rec.job_id.0,
                    signed.as_slice(),
                ]
                .concat(),
            ),
            (None, Some(out)) => keccak256(
                [
                    b"edgent result v1".as_slice(),
                    &rec.job_id.0,
                    out.as_bytes(),
                ]
                .concat(),
            ),
            (None, None) => B256::ZERO,
        };
        Evidence {
            task_hash: keccak256(task),
            result_hash,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::Side;
    use crate::protocol::JobId;

    #[test]
    fn evidence_names_the_task_and_the_result_and_zero_without_one() {
        let mut rec = JobRecord::new(JobId([1; 32]), Side::Requester, "m", "hello", 0);
        let none = Evidence::of(&rec);
        assert_eq!(none.result_hash, B256::ZERO);
        rec.output = Some("hi".into());
        let got = Evidence::of(&rec);
        assert_eq!(got.task_hash, none.task_hash);
        assert_ne!(got.result_hash, B256::ZERO);
        rec.prompt = "hellO".into();
        assert_ne!(Evidence::of(&rec).task_hash, got.task_hash);
        rec.output = Some("hI".into());
        assert_ne!(Evidence::of(&rec).result_hash, got.result_hash);
    }
}
