//! Zero-knowledge proofs: Poseidon commitments and Groth16 prove/verify (issue 3).
