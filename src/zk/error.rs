//! The causes a caller of [`crate::zk`] can act on.

/// Why a zk operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ZkError {
    /// A proof or public-signals document is not valid snarkjs JSON of the expected shape.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which document or element ("proof", "public signals", "pi_a", ...).
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The public signals are well formed but are not the ones this job, output and provider
    /// key commit to.
    #[error("public signal {signal} does not match: expected {expected}, got {got}")]
    PublicSignalMismatch {
        /// Name of the signal (`outputCommitment`, `walletCommitment`, `jobIdHi`, `jobIdLo`).
        signal: &'static str,
        /// The value recomputed locally (decimal).
        expected: String,
        /// The value in the received public signals (decimal).
        got: String,
    },
    /// The proof is well formed but does not verify against the key and public signals.
    #[error("the Groth16 proof does not verify")]
    InvalidProof,
    /// A verification or proving key could not be read (corrupted artifact or wrong file).
    #[error("bad {what}: {reason}")]
    Key {
        /// Which key ("verification key", "proving key").
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The circuit's witness could not be computed (the inputs violate a constraint, or its
    /// public part differs from the native commitments).
    #[error("witness computation failed: {0}")]
    Witness(String),
    /// The Groth16 prover failed.
    #[error("proving failed: {0}")]
    Proving(String),
}

impl ZkError {
    pub(crate) fn malformed(what: &'static str, reason: impl Into<String>) -> Self {
        ZkError::Malformed {
            what,
            reason: reason.into(),
        }
    }

    pub(crate) fn key(what: &'static str, reason: impl Into<String>) -> Self {
        ZkError::Key {
            what,
            reason: reason.into(),
        }
    }
}
