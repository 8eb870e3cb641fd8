//! A reader for snarkjs's binary `.zkey` (Groth16 proving key + the A and B constraint
//! matrices), small enough to keep the prover free of ark-circom's wasmer dependency.
//!
//! Layout (an iden3 container, see `binfile`, magic `"zkey"`): section 2 is the Groth16
//! header, 3 the IC points, 4 the A/B coefficients, 5..9 the A, B1, B2, C (= L) and H
//! queries. Field elements are 32-byte little-endian in Montgomery form; a coefficient is
//! stored multiplied by R twice.

use ark_bn254::{Bn254, Fq, Fr, G1Affine};
use ark_ff::PrimeField;
use ark_groth16::ProvingKey;
use ark_relations::gr1cs::Matrix;

use super::binfile::{Sections, R};

/// A parsed proving key with what the snarkjs-compatible witness map needs.
pub(crate) struct ZkeyProver {
    /// The arkworks proving key.
    pub pk: ProvingKey<Bn254>,
    /// `[A, B]`, one row per constraint (the public-input rows are left out).
    pub matrices: Vec<Matrix<Fr>>,
    /// Number of variables: the constant 1, the public signals, then the private ones.
    pub n_vars: usize,
    /// Public signals + 1.
    pub num_inputs: usize,
    /// Number of R1CS constraints.
    pub num_constraints: usize,
}

/// Parses a snarkjs Groth16 `.zkey` over BN254.
pub(crate) fn read_zkey(bytes: &[u8]) -> R<ZkeyProver> {
    let file = Sections::parse(bytes, b"zkey")?;

    let mut h = file.section(1)?;
    if h.u32()? != 1 {
        return Err("not a Groth16 zkey".into());
    }

    let mut h = file.section(2)?;
    if h.u32()? != 32 || h.bigint()? != Fq::MODULUS || h.u32()? != 32 || h.bigint()? != Fr::MODULUS
    {
        return Err("not a BN254 (bn128) zkey".into());
    }
    let n_vars = h.u32()? as usize;
    let n_public = h.u32()? as usize;
    let domain_size = h.u32()? as usize;
    let alpha_g1 = h.g1()?;
    let beta_g1 = h.g1()?;
    let beta_g2 = h.g2()?;
    let gamma_g2 = h.g2()?;
    let delta_g1 = h.g1()?;
    let delta_g2 = h.g2()?;
    if n_public >= n_vars || domain_size == 0 || !domain_size.is_power_of_two() {
        return Err("inconsistent Groth16 header".into());
    }

    let g1s = |id: usize, n: usize| -> R<Vec<G1Affine>> {
        let mut s = file.section(id)?;
        (0..n).map(|_| s.g1()).collect()
    };
    let ic = g1s(3, n_public + 1)?;
    let a_query = g1s(5, n_vars)?;
    let b_g1_query = g1s(6, n_vars)?;
    let b_g2_query = {
        let mut s = file.section(7)?;
        (0..n_vars).map(|_| s.g2()).collect::<R<Vec<_>>>()?
    };
    let l_query = g1s(8, n_vars - n_public - 1)?;
    let h_query = g1s(9, domain_size)?;

    let mut s = file.section(4)?;
    let n_coefs = s.u32()? as usize;
    let mut matrices: Vec<Matrix<Fr>> = vec![vec![Vec::new(); domain_size]; 2];
    let mut max_constraint = 0usize;
    for _ in 0..n_coefs {
        let matrix = s.u32()? as usize;
        let constraint = s.u32()? as usize;
        let signal = s.u32()? as usize;
        let raw = s.bigint()?;
        if matrix > 1 || constraint >= domain_size || signal >= n_vars || raw >= Fr::MODULUS {
            return Err("coefficient out of range".into());
        }
        // Stored as value * R^2: undo one Montgomery factor, then read as Montgomery.
        let value = Fr::new_unchecked(Fr::new_unchecked(raw).into_bigint());
        max_constraint = max_constraint.max(constraint);
        matrices[matrix][constraint].push((value, signal));
    }
    // snarkjs appends one row per public input (and the constant) after the real constraints.
    let num_constraints = max_constraint
        .checked_sub(n_public)
        .ok_or("too few coefficients")?;
    for m in &mut matrices {
        m.truncate(num_constraints);
    }

    let vk = ark_groth16::VerifyingKey::<Bn254> {
        alpha_g1,
        beta_g2,
        gamma_g2,
        delta_g2,
        gamma_abc_g1: ic,
    };
    Ok(ZkeyProver {
        pk: ProvingKey {
            vk,
            beta_g1,
            delta_g1,
            a_query,
            b_g1_query,
            b_g2_query,
            h_query,
            l_query,
        },
        matrices,
        n_vars,
        num_inputs: n_public + 1,
        num_constraints,
    })
}
