//! x402 v2 over AXL: building and checking the `PaymentRequired` a provider sends in its
//! `payment_request`, and the `SettleResponse` a requester sends in `payment_confirmed`.
//!
//! The scheme is x402's `auth-capture` with `extra.paymentFlow: "escrow"`: the requester's
//! stake is the `authorize` (funds held before the resource runs), `release` is the
//! `capture`, `reject` the `void`, and the requester's `refund` after the deadline the
//! `reclaim`. The network binding is this repository's EdgentEscrow rather than the
//! Commerce Payments contracts of x402's EVM binding; `contracts/README.md` ("x402 scheme")
//! describes it in the shape of x402's scheme template. The `extra` keys are the constants
//! of [`extra`]; every refusal is an [`X402Refusal`] naming the field.

use alloy::primitives::Address;
use serde_json::{Map, Value};

use crate::axl::PeerKey;
use crate::protocol::{JobId, PaymentRequired, PaymentRequirements, ResourceInfo, SettleResponse};

/// The x402 protocol version carried.
pub const X402_VERSION: u32 = 2;
/// x402's authorize-then-capture scheme.
pub const SCHEME: &str = "auth-capture";
/// `extra.paymentFlow` of a held (escrowed) payment.
pub const PAYMENT_FLOW_ESCROW: &str = "escrow";
/// The resource's MIME type: the job's output is text.
pub const RESOURCE_MIME: &str = "text/plain";

/// The keys of `PaymentRequirements.extra` for this scheme.
pub mod extra {
    /// `"escrow"`: the payment flow (x402's `auth-capture` field).
    pub const PAYMENT_FLOW: &str = "paymentFlow";
    /// Unix seconds after which the hold can no longer be captured (the stake's deadline).
    pub const CAPTURE_DEADLINE: &str = "captureDeadline";
    /// The EdgentEscrow contract holding the stake.
    pub const ESCROW: &str = "escrow";
    /// The escrow's `bytes32` job id, `0x` + 64 hex.
    pub const JOB_ID: &str = "jobId";
}

/// The CAIP-2 name of an EVM chain.
pub fn caip2(chain_id: u64) -> String {
    format!("eip155:{chain_id}")
}

/// The resource URL of a job: `axl://<provider key>/job/<job id>`.
pub fn resource_url(provider: &PeerKey, job: &JobId) -> String {
    format!("axl://{}/job/{}", provider.to_hex(), job.to_hex())
}

/// The terms of one job's payment, as the stake fixed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    /// The job.
    pub job: JobId,
    /// The provider's AXL key (names the resource).
    pub provider: PeerKey,
    /// Chain id of the escrow's chain.
    pub chain_id: u64,
    /// The escrow's USDC.
    pub asset: Address,
    /// Base units.
    pub amount: u64,
    /// Who is paid (the stake's provider wallet), as the stake record has it.
    pub pay_to: String,
    /// The escrow, as the stake record has it.
    pub escrow: String,
    /// The stake's deadline, unix seconds.
    pub capture_deadline: u64,
}

/// Build the `PaymentRequired` for `terms`; the offer stands `max_timeout_seconds`.
pub fn payment_required(terms: &Terms, max_timeout_seconds: u64) -> PaymentRequired {
    let mut x = Map::new();
    x.insert(extra::PAYMENT_FLOW.into(), Value::from(PAYMENT_FLOW_ESCROW));
    x.insert(
        extra::CAPTURE_DEADLINE.into(),
        Value::from(terms.capture_deadline),
    );
    x.insert(extra::ESCROW.into(), Value::from(terms.escrow.clone()));
    x.insert(extra::JOB_ID.into(), Value::from(terms.job.to_hex()));
    PaymentRequired {
        x402_version: X402_VERSION,
        error: None,
        resource: ResourceInfo {
            url: resource_url(&terms.provider, &terms.job),
            description: Some("the output of a delegated inference job".into()),
            mime_type: Some(RESOURCE_MIME.into()),
        },
        accepts: vec![PaymentRequirements {
            scheme: SCHEME.into(),
            network: caip2(terms.chain_id),
            asset: format!("{:#x}", terms.asset),
            amount: terms.amount.to_string(),
            pay_to: terms.pay_to.clone(),
            max_timeout_seconds: max_timeout_seconds.max(1),
            extra: x,
        }],
    }
}

/// Why a `PaymentRequired` does not match the stake; each names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum X402Refusal {
    /// Not x402 v2.
    #[error("x402Version {0} is not {X402_VERSION}")]
    Version(u32),
    /// No `accepts` entry of this scheme.
    #[error("accepts holds no {SCHEME:?} requirements")]
    NoScheme,
    /// The resource is not this job from this provider.
    #[error("resource.url {got:?} is not {want:?}")]
    Resource {
        /// Sent.
        got: String,
        /// Expected.
        want: String,
    },
    /// `extra.paymentFlow` is not `escrow`.
    #[error("extra.paymentFlow {0:?} is not \"escrow\"")]
    PaymentFlow(String),
    /// Another chain.
    #[error("network {got} is not {want}")]
    Network {
        /// Sent.
        got: String,
        /// Expected.
        want: String,
    },
    /// Another token.
    #[error("asset {got} is not the escrow's USDC {want:#x}")]
    Asset {
        /// Sent.
        got: String,
        /// Expected.
        want: Address,
    },
    /// Another amount.
    #[error("amount {got} is not the staked {want}")]
    Amount {
        /// Sent.
        got: String,
        /// Expected.
        want: u64,
    },
    /// Another payee.
    #[error("payTo {got} is not the stake's {want}")]
    PayTo {
        /// Sent.
        got: String,
        /// Expected.
        want: String,
    },
    /// Another escrow.
    #[error("extra.escrow {got:?} is not the escrow {want}")]
    Escrow {
        /// Sent.
        got: String,
        /// Expected.
        want: String,
    },
    /// Another job.
    #[error("extra.jobId {0:?} is not this job")]
    JobId(String),
}

fn extra_str<'a>(r: &'a PaymentRequirements, key: &str) -> &'a str {
    r.extra.get(key).and_then(Value::as_str).unwrap_or("")
}

fn addr_eq(a: &str, b: &Address) -> bool {
    a.parse::<Address>().is_ok_and(|a| &a == b)
}

/// Check a provider's `PaymentRequired` against the stake's `terms`; returns the accepted
/// requirements.
pub fn check_payment_required<'a>(
    pr: &'a PaymentRequired,
    terms: &Terms,
) -> Result<&'a PaymentRequirements, X402Refusal> {
    if pr.x402_version != X402_VERSION {
        return Err(X402Refusal::Version(pr.x402_version));
    }
    let want_url = resource_url(&terms.provider, &terms.job);
    if pr.resource.url != want_url {
        return Err(X402Refusal::Resource {
            got: pr.resource.url.clone(),
            want: want_url,
        });
    }
    let r = pr
        .accepts
        .iter()
        .find(|r| r.scheme == SCHEME)
        .ok_or(X402Refusal::NoScheme)?;
    let flow = extra_str(r, extra::PAYMENT_FLOW);
    if flow != PAYMENT_FLOW_ESCROW {
        return Err(X402Refusal::PaymentFlow(flow.into()));
    }
    let network = caip2(terms.chain_id);
    if r.network != network {
        return Err(X402Refusal::Network {
            got: r.network.clone(),
            want: network,
        });
    }
    if !addr_eq(&r.asset, &terms.asset) {
        return Err(X402Refusal::Asset {
            got: r.asset.clone(),
            want: terms.asset,
        });
    }
    if r.amount != terms.amount.to_string() {
        return Err(X402Refusal::Amount {
            got: r.amount.clone(),
            want: terms.amount,
        });
    }
    if !r.pay_to.eq_ignore_ascii_case(&terms.pay_to) {
        return Err(X402Refusal::PayTo {
            got: r.pay_to.clone(),
            want: terms.pay_to.clone(),
        });
    }
    let escrow = extra_str(r, extra::ESCROW);
    if !escrow.eq_ignore_ascii_case(&terms.escrow) {
        return Err(X402Refusal::Escrow {
            got: escrow.into(),
            want: terms.escrow.clone(),
        });
    }
    let job = extra_str(r, extra::JOB_ID);
    if !job.eq_ignore_ascii_case(&terms.job.to_hex()) {
        return Err(X402Refusal::JobId(job.into()));
    }
    Ok(r)
}

/// The `SettleResponse` of a release (`capture`) by `transaction` on `chain_id`.
pub fn settle_response(
    transaction: &str,
    chain_id: u64,
    payer: Address,
    amount: Option<u64>,
) -> SettleResponse {
    SettleResponse {
        success: true,
        error_reason: None,
        payer: Some(format!("{payer:#x}")),
        transaction: transaction.to_string(),
        network: caip2(chain_id),
        amount: amount.map(|a| a.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms() -> Terms {
        Terms {
            job: JobId([9; 32]),
            provider: PeerKey([5; 32]),
            chain_id: 84532,
            asset: Address::repeat_byte(0xcc),
            amount: 10_000,
            pay_to: format!("0x{}", "bb".repeat(20)),
            escrow: format!("0x{}", "aa".repeat(20)),
            capture_deadline: 1_900_000_000,
        }
    }

    #[test]
    fn what_is_built_checks_and_has_the_spec_shape() {
        let t = terms();
        let pr = payment_required(&t, 600);
        assert_eq!(check_payment_required(&pr, &t).unwrap().amount, "10000");
        let v = serde_json::to_value(&pr).unwrap();
        assert_eq!(v["x402Version"], 2);
        assert_eq!(v["accepts"][0]["scheme"], "auth-capture");
        assert_eq!(v["accepts"][0]["extra"]["paymentFlow"], "escrow");
        assert_eq!(
            v["accepts"][0]["extra"]["captureDeadline"],
            1_900_000_000u64
        );
        assert_eq!(v["accepts"][0]["payTo"], t.pay_to);
        assert_eq!(v["accepts"][0]["maxTimeoutSeconds"], 600);
        assert!(v.get("error").is_none());
    }

    #[test]
    fn each_difference_is_refused_by_name() {
        let t = terms();
        type Edit = fn(&mut PaymentRequired);
        let cases: [(&str, Edit); 9] = [
            ("x402Version", |p| p.x402_version = 1),
            ("resource.url", |p| p.resource.url = "axl://x/job/y".into()),
            ("accepts", |p| p.accepts[0].scheme = "exact".into()),
            ("paymentFlow", |p| {
                p.accepts[0]
                    .extra
                    .insert(extra::PAYMENT_FLOW.into(), "authorization".into());
            }),
            ("network", |p| p.accepts[0].network = "eip155:1".into()),
            ("asset", |p| {
                p.accepts[0].asset = format!("0x{}", "dd".repeat(20))
            }),
            ("amount", |p| p.accepts[0].amount = "9999".into()),
            ("extra.escrow", |p| {
                p.accepts[0].extra.remove(extra::ESCROW);
            }),
            ("extra.jobId", |p| {
                p.accepts[0]
                    .extra
                    .insert(extra::JOB_ID.into(), JobId([1; 32]).to_hex().into());
            }),
        ];
        for (field, edit) in cases {
            let mut pr = payment_required(&t, 600);
            edit(&mut pr);
            let e = check_payment_required(&pr, &t).unwrap_err().to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
        let mut pr = payment_required(&t, 600);
        pr.accepts[0].pay_to = format!("0x{}", "ee".repeat(20));
        assert!(matches!(
            check_payment_required(&pr, &t),
            Err(X402Refusal::PayTo { .. })
        ));
    }
}
