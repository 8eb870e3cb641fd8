//! The two public commitments, computed natively exactly as the circuit computes them.

use ark_bn254::Fr;
use ark_ff::PrimeField;
use light_poseidon::{Poseidon, PoseidonHasher};

use super::field::{from_be_bytes, halves, to_be32, to_decimal};
use super::snarkjs::PublicSignals;

/// The public values of one job's statement: both commitments and the job id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Commitments {
    /// `Poseidon(hi128, lo128)` of `keccak256(output)`, 32 bytes big-endian. As `0x…` hex
    /// ([`Commitments::output_hash_hex`]) this is the escrow's on-chain `outputHash`.
    pub output_commitment: [u8; 32],
    /// `Poseidon(hi128, lo128)` of the provider's 32-byte AXL public key, 32 bytes big-endian.
    pub wallet_commitment: [u8; 32],
    /// The bytes32 job id the proof is bound to.
    pub job_id: [u8; 32],
}

/// keccak256 of `data` (Ethereum's hash, not NIST SHA3-256).
pub fn keccak256(data: &[u8]) -> [u8; 32] {
    use tiny_keccak::{Hasher, Keccak};
    let mut k = Keccak::v256();
    k.update(data);
    let mut out = [0u8; 32];
    k.finalize(&mut out);
    out
}

/// Computes the commitments a proof for (`output`, `provider_key`, `job_id`) must carry.
/// The requester calls this on the output it received and the provider key it knows.
pub fn commitments(output: &[u8], provider_key: &[u8; 32], job_id: &[u8; 32]) -> Commitments {
    Commitments {
        output_commitment: to_be32(&poseidon_of_halves(&keccak256(output))),
        wallet_commitment: to_be32(&poseidon_of_halves(provider_key)),
        job_id: *job_id,
    }
}

/// The walletCommitment of `provider_key` alone, 32 bytes big-endian: what a stake names as
/// the provider's key commitment (the escrow checks `submit`'s proof against it).
pub fn wallet_commitment(provider_key: &[u8; 32]) -> [u8; 32] {
    to_be32(&poseidon_of_halves(provider_key))
}

/// `Poseidon(hi, lo)` over the two big-endian 128-bit halves of 32 bytes, with circomlib's
/// parameters (t = 3).
pub(crate) fn poseidon_of_halves(bytes: &[u8; 32]) -> Fr {
    let hi: Fr = from_be_bytes(&bytes[..16]);
    let lo: Fr = from_be_bytes(&bytes[16..]);
    // Both constructions are infallible for two inputs; the Err arms are unreachable but we
    // still refuse to panic on them.
    match Poseidon::<Fr>::new_circom(2).and_then(|mut p| p.hash(&[hi, lo])) {
        Ok(h) => h,
        Err(e) => unreachable_poseidon(e),
    }
}

#[cold]
fn unreachable_poseidon(e: light_poseidon::PoseidonError) -> Fr {
    // light-poseidon only fails for an unsupported width or a wrong input count, neither of
    // which a fixed two-input call can hit.
    tracing::error!(error = %e, "Poseidon(2) failed; this is a bug");
    Fr::from(0u64)
}

/// The circuit's inputs for one statement, in the form circom's `input.json` takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CircuitInputs {
    /// `outputHashBits`: bits 0..128 are chunk0 (bytes 0..16 of keccak256(output) as a
    /// big-endian number), 128..256 are chunk1 (bytes 16..32); bit i of a chunk is its i-th
    /// least significant bit.
    pub output_hash_bits: Vec<u8>,
    /// `keyHi`, `keyLo`: the provider key's 128-bit halves, big-endian.
    pub key: (u128, u128),
    /// `jobIdHi`, `jobIdLo`: the job id's 128-bit halves, big-endian.
    pub job_id: (u128, u128),
}

/// The circuit inputs that prove (`output`, `provider_key`, `job_id`).
pub fn circuit_inputs(output: &[u8], provider_key: &[u8; 32], job_id: &[u8; 32]) -> CircuitInputs {
    let (chunk0, chunk1) = halves(&keccak256(output));
    let mut bits = Vec::with_capacity(256);
    for chunk in [chunk0, chunk1] {
        for i in 0..128 {
            bits.push(((chunk >> i) & 1) as u8);
        }
    }
    CircuitInputs {
        output_hash_bits: bits,
        key: halves(provider_key),
        job_id: halves(job_id),
    }
}

impl CircuitInputs {
    /// The inputs as snarkjs/circom `input.json` (numbers as decimal strings).
    pub fn to_snarkjs_json(&self) -> serde_json::Value {
        serde_json::json!({
            "outputHashBits": self.output_hash_bits.iter().map(|b| b.to_string()).collect::<Vec<_>>(),
            "keyHi": self.key.0.to_string(),
            "keyLo": self.key.1.to_string(),
            "jobIdHi": self.job_id.0.to_string(),
            "jobIdLo": self.job_id.1.to_string(),
        })
    }
}

impl Commitments {
    /// `outputCommitment` as `0x` + 64 hex digits: the on-chain `outputHash` for `release`.
    pub fn output_hash_hex(&self) -> String {
        format!("0x{}", hex::encode(self.output_commitment))
    }

    /// `walletCommitment` as `0x` + 64 hex digits.
    pub fn wallet_commitment_hex(&self) -> String {
        format!("0x{}", hex::encode(self.wallet_commitment))
    }

    /// `outputCommitment` as a decimal string, as snarkjs shows it.
    pub fn output_commitment_decimal(&self) -> String {
        to_decimal(&Fr::from_be_bytes_mod_order(&self.output_commitment))
    }

    /// `walletCommitment` as a decimal string, as snarkjs shows it.
    pub fn wallet_commitment_decimal(&self) -> String {
        to_decimal(&Fr::from_be_bytes_mod_order(&self.wallet_commitment))
    }

    /// The public signals a valid proof for this job must carry, in the circuit's order.
    pub fn public_signals(&self) -> PublicSignals {
        let (job_hi, job_lo) = halves(&self.job_id);
        PublicSignals::from_elements([
            Fr::from_be_bytes_mod_order(&self.output_commitment),
            Fr::from_be_bytes_mod_order(&self.wallet_commitment),
            Fr::from(job_hi),
            Fr::from(job_lo),
        ])
    }
}
