//! The requester's checks of a provider's `payment_request`, in order, before any money
//! moves: the Groth16 proof against the output received, the provider's key and the job,
//! then the x402 terms against the stake.

use alloy::primitives::Address;

use crate::axl::PeerKey;
use crate::jobs::PaymentRecord;
use crate::protocol::receipt::OutputBinding;
use crate::protocol::{JobId, PaymentRequest};

/// Why a `payment_request` is refused (nothing is paid; the operator is asked to reject).
#[derive(Debug, thiserror::Error)]
pub enum PaymentRequestRefusal {
    /// The public signals are not this job's, or the Groth16 proof does not verify.
    #[error("proof refused: {0}")]
    Proof(#[from] crate::zk::ZkError),
    /// `output_commitment` is not the commitment to the output received.
    #[error("output_commitment differs from the commitment to the output received")]
    OutputCommitment,
    /// `wallet_commitment` is not the commitment to the provider's key.
    #[error("wallet_commitment differs from the commitment to the provider's key")]
    WalletCommitment,
    /// The x402 `PaymentRequired` does not match the stake.
    #[error(transparent)]
    X402(#[from] super::x402::X402Refusal),
    /// The output is empty and calls no tool: nothing to pay for, whatever the proof says.
    #[error("the output is empty and calls no tool: an empty result is never paid")]
    EmptyOutput,
    /// The check itself could not run.
    #[error("verification task failed: {0}")]
    Internal(String),
}

/// Every check a payment request must pass before money moves, in order. `output` is the
/// text the requester received and `bound` the model digest and tool calls its receipt
/// names, bound together as the proof commits them
/// ([`crate::protocol::receipt::committed_output`]). Returns the output commitment (the
/// escrow's `outputHash`) when all pass.
pub fn check_payment_request(
    req: &PaymentRequest,
    output: &str,
    bound: &OutputBinding,
    provider: &PeerKey,
    job: &JobId,
    pay: &PaymentRecord,
    usdc: &Address,
) -> Result<String, PaymentRequestRefusal> {
    // 0: an empty output is never paid (anyone can prove one); a tool call alone is an answer.
    if bound.says_nothing(output) {
        return Err(PaymentRequestRefusal::EmptyOutput);
    }
    // 1-4: the output commitment, the wallet commitment, the job id (public signals, in
    // this order), then the Groth16 proof against the committed key.
    let committed = crate::protocol::receipt::committed_output(output, bound);
    let expected = crate::zk::verify_job(
        &req.proof,
        &req.public_signals,
        &committed,
        &provider.0,
        &job.0,
    )?;
    if !req
        .output_commitment
        .eq_ignore_ascii_case(&expected.output_hash_hex())
    {
        return Err(PaymentRequestRefusal::OutputCommitment);
    }
    if !req
        .wallet_commitment
        .eq_ignore_ascii_case(&expected.wallet_commitment_hex())
    {
        return Err(PaymentRequestRefusal::WalletCommitment);
    }
    // 5: the x402 PaymentRequired matches the stake.
    let terms = super::x402::Terms {
        job: *job,
        provider: *provider,
        chain_id: pay.chain_id,
        asset: *usdc,
        amount: pay.amount_units,
        pay_to: pay.pay_to.clone(),
        escrow: pay.escrow.clone(),
        capture_deadline: pay.stake_deadline,
    };
    super::x402::check_payment_required(&req.payment_required, &terms)?;
    Ok(expected.output_hash_hex())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::PayStatus;
    use serde_json::Value;

    const OUTPUT: &str = "Paris is the capital of France.";
    const KEY: PeerKey = PeerKey([5; 32]);
    const JOB: JobId = JobId([9; 32]);

    fn usdc() -> Address {
        Address::repeat_byte(0xcc)
    }

    fn pay() -> PaymentRecord {
        PaymentRecord::new(
            PayStatus::Staked,
            31337,
            format!("0x{}", "aa".repeat(20)),
            10_000,
            format!("0x{}", "bb".repeat(20)),
            0,
        )
    }

    /// An honest provider's request for (OUTPUT, KEY, JOB).
    fn request() -> PaymentRequest {
        static P: std::sync::OnceLock<PaymentRequest> = std::sync::OnceLock::new();
        P.get_or_init(|| request_for(OUTPUT)).clone()
    }

    /// A request with a valid proof for (output, KEY, JOB).
    fn request_for(output: &str) -> PaymentRequest {
        request_proving(output.as_bytes())
    }

    /// A request with a valid proof for the committed bytes `committed`, KEY and JOB.
    fn request_proving(committed: &[u8]) -> PaymentRequest {
        {
            let (proof, public) = crate::zk::prove(committed, &KEY.0, &JOB.0).unwrap();
            let c = crate::zk::commitments(committed, &KEY.0, &JOB.0);
            let p = pay();
            let terms = crate::paid::x402::Terms {
                job: JOB,
                provider: KEY,
                chain_id: p.chain_id,
                asset: usdc(),
                amount: p.amount_units,
                pay_to: p.pay_to.clone(),
                escrow: p.escrow.clone(),
                capture_deadline: p.stake_deadline,
            };
            PaymentRequest {
                job_id: JOB,
                payment_required: crate::paid::x402::payment_required(&terms, 600),
                output_commitment: c.output_hash_hex(),
                wallet_commitment: c.wallet_commitment_hex(),
                proof,
                public_signals: public,
            }
        }
    }

    /// Line 10 of docs/threat-model.md: anyone can prove an empty output; it is not paid.
    #[test]
    fn an_empty_output_with_a_valid_proof_is_refused() {
        for empty in ["", " \n\t"] {
            let e = check(&request_for(empty), empty, &KEY, &JOB).unwrap_err();
            assert_eq!(e, PaymentRequestRefusal::EmptyOutput.to_string());
        }
    }

    fn check(
        req: &PaymentRequest,
        output: &str,
        key: &PeerKey,
        job: &JobId,
    ) -> Result<String, String> {
        let none = OutputBinding::default();
        check_payment_request(req, output, &none, key, job, &pay(), &usdc())
            .map_err(|e| e.to_string())
    }

    /// An answer that only calls a tool has no text; it is paid when the proof commits to
    /// its tool calls (the receipt's hash), and refused when the proof leaves them out.
    #[test]
    fn a_tool_call_without_text_is_paid_when_the_proof_binds_it() {
        let bound = OutputBinding {
            model_digest: "ab".repeat(32),
            tool_calls_hash: crate::protocol::receipt::tool_calls_hash(&[serde_json::json!(
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
            )]),
        };
        let committed = crate::protocol::receipt::committed_output("", &bound);
        let req = request_proving(&committed);
        let got = check_payment_request(&req, "", &bound, &KEY, &JOB, &pay(), &usdc());
        let want = crate::zk::commitments(&committed, &KEY.0, &JOB.0).output_hash_hex();
        assert_eq!(got.map_err(|e| e.to_string()), Ok(want));
        // The same proof does not pay the text-only reading of the answer.
        let digest_only = OutputBinding {
            tool_calls_hash: String::new(),
            ..bound
        };
        let e = check_payment_request(&req, "", &digest_only, &KEY, &JOB, &pay(), &usdc());
        assert_eq!(
            e.map_err(|e| e.to_string()),
            Err(PaymentRequestRefusal::EmptyOutput.to_string())
        );
    }

    #[test]
    fn an_honest_request_passes_and_yields_the_escrow_output_hash() {
        let got = check(&request(), OUTPUT, &KEY, &JOB).unwrap();
        let want = crate::zk::commitments(OUTPUT.as_bytes(), &KEY.0, &JOB.0).output_hash_hex();
        assert_eq!(got, want);
    }

    #[test]
    fn a_proof_for_another_output_key_or_job_is_refused() {
        let r = request();
        let e = check(&r, "Lyon is the capital of France.", &KEY, &JOB).unwrap_err();
        assert!(e.contains("outputCommitment"), "{e}");
        let e = check(&r, OUTPUT, &PeerKey([6; 32]), &JOB).unwrap_err();
        assert!(e.contains("walletCommitment"), "{e}");
        // Replayed for another job (its id in extra too): the job id signals differ.
        let other = JobId([8; 32]);
        let mut replay = r.clone();
        replay.job_id = other;
        replay.payment_required.resource.url = crate::paid::x402::resource_url(&KEY, &other);
        replay.payment_required.accepts[0]
            .extra
            .insert("jobId".into(), Value::from(other.to_hex()));
        let e = check(&replay, OUTPUT, &KEY, &other).unwrap_err();
        assert!(e.contains("jobIdHi"), "{e}");
    }

    #[test]
    fn requirements_that_differ_from_the_stake_are_refused() {
        type Edit = fn(&mut PaymentRequest);
        let cases: [(&str, Edit); 7] = [
            ("output_commitment", |r| {
                r.output_commitment = format!("0x{}", "0".repeat(64))
            }),
            ("network", |r| {
                r.payment_required.accepts[0].network = "eip155:1".into()
            }),
            ("asset", |r| {
                r.payment_required.accepts[0].asset = format!("0x{}", "dd".repeat(20))
            }),
            ("amount", |r| {
                r.payment_required.accepts[0].amount = "9999".into()
            }),
            ("payTo", |r| {
                r.payment_required.accepts[0].pay_to = format!("0x{}", "ee".repeat(20))
            }),
            ("extra.escrow", |r| {
                r.payment_required.accepts[0].extra.remove("escrow");
            }),
            ("extra.jobId", |r| {
                r.payment_required.accepts[0]
                    .extra
                    .insert("jobId".into(), Value::from(JobId([1; 32]).to_hex()));
            }),
        ];
        for (field, edit) in cases {
            let mut r = request();
            edit(&mut r);
            let e = check(&r, OUTPUT, &KEY, &JOB).unwrap_err();
            assert!(e.contains(field), "{field}: {e}");
        }
    }
}
