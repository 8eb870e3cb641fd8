//! Zero-knowledge proofs: Poseidon commitments and Groth16 prove/verify with the committed keys.
//!
//! The statement (see `circuits/edgent.circom` and DESIGN.md, "The ZK statement"): the prover
//! knows an output whose keccak256 commits to `outputCommitment` and the 32-byte AXL public key
//! behind `walletCommitment`, for one job id. Public signals, in snarkjs's order:
//!
//! | index | signal | value |
//! |---|---|---|
//! | 0 | `outputCommitment` | `Poseidon(hi128, lo128)` of `keccak256(output)` |
//! | 1 | `walletCommitment` | `Poseidon(hi128, lo128)` of the provider key |
//! | 2 | `jobIdHi` | bytes 0..16 of the bytes32 job id, big-endian |
//! | 3 | `jobIdLo` | bytes 16..32 of the job id, big-endian |
//!
//! # Layout
//!
//! - [`commitments`](fn@commitments): the two commitments computed natively (keccak256 + Poseidon).
//! - [`snarkjs`]: [`SnarkjsProof`] and [`PublicSignals`], serde types in snarkjs's JSON form that
//!   validate while they parse (decimal strings below the modulus, points on the curve).
//! - [`verify`](mod@verify): Groth16 verification against the committed `verification_key.json`;
//!   needs no witness machinery.
//! - `prove` (cargo feature `prover`, on by default): the circuit's witness solved natively from
//!   its committed constraint system (see `r1cs` and `solver`), and a Groth16 proof with the
//!   committed `.zkey` (parsed once, see `zkey`) whose five multi-scalar multiplications run on
//!   fixed-base tables built once per process (see `msm`), their point additions batched in
//!   affine coordinates around one field inversion each (see `batch_add` and `inverse`), eight
//!   at a time in AVX-512 IFMA lanes where the CPU has them (see `ifma`, which also runs the
//!   witness map's transforms).
//!   [`warm_up`] does that one-time work up front.
//! - [`cli`]: `edgent zk prove` / `edgent zk verify`.
//!
//! Proving is CPU-bound (milliseconds, two cores): async callers run [`prove`] inside
//! `tokio::task::spawn_blocking`. Verification is a few pairings; cheap enough inline, but
//! `spawn_blocking` does no harm there either.

#[cfg(feature = "prover")]
mod binfile;
pub mod cli;
mod commitments;
mod error;
mod field;
pub mod snarkjs;
pub mod verify;

#[cfg(feature = "prover")]
mod batch_add;
#[cfg(feature = "prover")]
mod fft;
#[cfg(feature = "prover")]
mod ifma;
#[cfg(feature = "prover")]
mod inverse;
#[cfg(feature = "prover")]
mod msm;
#[cfg(feature = "prover")]
mod prove;
#[cfg(feature = "prover")]
mod r1cs;
#[cfg(feature = "prover")]
mod solver;
#[cfg(feature = "prover")]
mod zkey;

pub use commitments::{
    circuit_inputs, commitments, keccak256, wallet_commitment, CircuitInputs, Commitments,
};
pub use error::ZkError;
#[cfg(feature = "prover")]
pub use prove::{prove, warm_up, warm_up_for_key};
pub use snarkjs::{PublicSignals, SnarkjsProof};
pub use verify::{verify, verify_job, verify_with_key, VerifyingKey};
#[cfg(not(feature = "prover"))]
pub use without_prover::prove;

#[cfg(not(feature = "prover"))]
mod without_prover {
    use super::{PublicSignals, SnarkjsProof, ZkError};

    /// Built without the `prover` feature: every proof fails with [`ZkError::Proving`]. (A
    /// daemon built so refuses to start as a paid provider.)
    pub fn prove(
        _output: &[u8],
        _provider_key: &[u8; 32],
        _job_id: &[u8; 32],
    ) -> Result<(SnarkjsProof, PublicSignals), ZkError> {
        Err(ZkError::Proving(
            "this edgent was built without the `prover` feature".into(),
        ))
    }
}

/// The committed snarkjs verification key (`circuits/artifacts/verification_key.json`).
pub const VERIFICATION_KEY_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/circuits/artifacts/verification_key.json"
));
