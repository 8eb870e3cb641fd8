//! Groth16 verification against a snarkjs `verification_key.json` (the committed one by
//! default). Needs no witness machinery, so it is available without the `prover` feature.

use std::sync::OnceLock;

use ark_bn254::Bn254;
use ark_groth16::{Groth16, PreparedVerifyingKey};
use serde::Deserialize;

use super::commitments::{commitments, Commitments};
use super::error::ZkError;
use super::field::to_decimal;
use super::snarkjs::{
    g1_from_strings, g2_from_strings, PublicSignals, SnarkjsProof, NUM_PUBLIC_SIGNALS,
    PUBLIC_SIGNAL_NAMES,
};

/// A Groth16 verifying key, prepared for pairing checks.
#[derive(Clone, Debug)]
pub struct VerifyingKey {
    prepared: PreparedVerifyingKey<Bn254>,
}

#[derive(Deserialize)]
struct RawVerifyingKey {
    protocol: String,
    curve: String,
    #[serde(rename = "nPublic")]
    n_public: usize,
    vk_alpha_1: [String; 3],
    vk_beta_2: [[String; 2]; 3],
    vk_gamma_2: [[String; 2]; 3],
    vk_delta_2: [[String; 2]; 3],
    #[serde(rename = "IC")]
    ic: Vec<[String; 3]>,
}

impl VerifyingKey {
    /// Parses a snarkjs `verification_key.json` for this circuit (four public signals).
    pub fn from_snarkjs_json(text: &str) -> Result<Self, ZkError> {
        const WHAT: &str = "verification key";
        let raw: RawVerifyingKey =
            serde_json::from_str(text).map_err(|e| ZkError::key(WHAT, e.to_string()))?;
        if raw.protocol != "groth16" || raw.curve != "bn128" {
            return Err(ZkError::key(
                WHAT,
                format!("is {}/{}, expected groth16/bn128", raw.protocol, raw.curve),
            ));
        }
        if raw.n_public != NUM_PUBLIC_SIGNALS || raw.ic.len() != NUM_PUBLIC_SIGNALS + 1 {
            return Err(ZkError::key(
                WHAT,
                format!(
                    "has {} public signals and {} IC points, this circuit has {NUM_PUBLIC_SIGNALS}",
                    raw.n_public,
                    raw.ic.len()
                ),
            ));
        }
        let as_key = |e: ZkError| ZkError::key(WHAT, e.to_string());
        let vk = ark_groth16::VerifyingKey::<Bn254> {
            alpha_g1: g1_from_strings("vk_alpha_1", &raw.vk_alpha_1).map_err(as_key)?,
            beta_g2: g2_from_strings("vk_beta_2", &raw.vk_beta_2).map_err(as_key)?,
            gamma_g2: g2_from_strings("vk_gamma_2", &raw.vk_gamma_2).map_err(as_key)?,
            delta_g2: g2_from_strings("vk_delta_2", &raw.vk_delta_2).map_err(as_key)?,
            gamma_abc_g1: raw
                .ic
                .iter()
                .map(|p| g1_from_strings("IC", p))
                .collect::<Result<_, _>>()
                .map_err(as_key)?,
        };
        Ok(Self::from_ark(&vk))
    }

    pub(crate) fn from_ark(vk: &ark_groth16::VerifyingKey<Bn254>) -> Self {
        VerifyingKey {
            prepared: ark_groth16::prepare_verifying_key(vk),
        }
    }

    /// The committed key (`circuits/artifacts/verification_key.json`, embedded at build
    /// time), parsed once per process.
    pub fn committed() -> Result<&'static VerifyingKey, ZkError> {
        static KEY: OnceLock<Result<VerifyingKey, String>> = OnceLock::new();
        KEY.get_or_init(|| {
            VerifyingKey::from_snarkjs_json(super::VERIFICATION_KEY_JSON).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| ZkError::key("committed verification key", e.clone()))
    }
}

/// Checks `proof` against `public` with the committed verification key.
/// `Ok(())` means the proof is valid for exactly these public signals; it says nothing about
/// whether the signals are the ones you expect: use [`verify_job`] for that.
pub fn verify(proof: &SnarkjsProof, public: &PublicSignals) -> Result<(), ZkError> {
    verify_with_key(VerifyingKey::committed()?, proof, public)
}

/// Checks `proof` against `public` with the given verification key.
pub fn verify_with_key(
    key: &VerifyingKey,
    proof: &SnarkjsProof,
    public: &PublicSignals,
) -> Result<(), ZkError> {
    match Groth16::<Bn254>::verify_proof(&key.prepared, proof.as_ark(), public.elements()) {
        Ok(true) => Ok(()),
        Ok(false) => {
            tracing::debug!("Groth16 proof rejected by the pairing check");
            Err(ZkError::InvalidProof)
        }
        Err(e) => {
            tracing::warn!(error = %e, "Groth16 verification could not run");
            Err(ZkError::InvalidProof)
        }
    }
}

/// The requester's whole check: recomputes the commitments from the `output` it received, the
/// `provider_key` it knows and its `job_id`, requires `public` to be exactly those, then checks
/// the proof with the committed key. Returns the commitments it checked (the output commitment
/// is the escrow's `outputHash`).
pub fn verify_job(
    proof: &SnarkjsProof,
    public: &PublicSignals,
    output: &[u8],
    provider_key: &[u8; 32],
    job_id: &[u8; 32],
) -> Result<Commitments, ZkError> {
    let c = commitments(output, provider_key, job_id);
    let expected = c.public_signals();
    for (i, (want, got)) in expected
        .elements()
        .iter()
        .zip(public.elements())
        .enumerate()
    {
        if want != got {
            tracing::warn!(
                signal = PUBLIC_SIGNAL_NAMES[i],
                "proof's public signal differs from the recomputed one"
            );
            return Err(ZkError::PublicSignalMismatch {
                signal: PUBLIC_SIGNAL_NAMES[i],
                expected: to_decimal(want),
                got: to_decimal(got),
            });
        }
    }
    verify(proof, public)?;
    Ok(c)
}
