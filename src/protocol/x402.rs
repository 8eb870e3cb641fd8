//! The payment messages (`payment_request`, `payment_confirmed`) and the x402 v2 shapes
//! they carry over AXL instead of HTTP. [`crate::paid::x402`] builds and checks them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::JobId;
use crate::zk::{PublicSignals, SnarkjsProof};

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
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfo {
    /// The resource's URL.
    pub url: String,
    /// Human-readable description.
    pub description: Option<String>,
    /// MIME type of the resource.
    pub mime_type: Option<String>,
}

/// x402 v2 `PaymentRequired` (the body of a 402), carried over AXL instead of HTTP.
/// [`crate::paid::x402`] builds and checks it.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    /// Always 2.
    pub x402_version: u32,
    /// Why payment is (still) required, when something went wrong.
    pub error: Option<String>,
    /// What is paid for.
    pub resource: ResourceInfo,
    /// The ways to pay, each a [`PaymentRequirements`].
    pub accepts: Vec<PaymentRequirements>,
}

/// x402 v2 `SettleResponse`: how a payment settled.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettleResponse {
    /// Whether it settled.
    pub success: bool,
    /// Machine-readable reason when it did not.
    pub error_reason: Option<String>,
    /// Who paid.
    pub payer: Option<String>,
    /// The settling transaction's hash.
    pub transaction: String,
    /// CAIP-2 network.
    pub network: String,
    /// Amount settled, base units.
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
