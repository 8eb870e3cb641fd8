//! A reader for circom's binary `.r1cs` (an iden3 container, see `binfile`, magic `"r1cs"`):
//! section 1 is the header, section 2 the constraints `A·B = C`, each side a list of
//! `(wire u32, coefficient)` terms with the coefficient as 32 little-endian bytes in normal
//! (not Montgomery) form.

use ark_bn254::Fr;
use ark_ff::PrimeField;

use super::binfile::{Sections, R};

/// A linear combination of wires: `Σ coefficient · w[wire]`.
pub(crate) type Lc = Vec<(u32, Fr)>;

/// One constraint `A·B = C`.
pub(crate) struct Constraint {
    pub a: Lc,
    pub b: Lc,
    pub c: Lc,
}

/// A constraint system over BN254's scalar field.
pub(crate) struct R1cs {
    /// Wires, the constant 1 (wire 0) included.
    pub n_wires: usize,
    /// Public outputs (wires `1..=n_pub_out`).
    pub n_pub_out: usize,
    /// Public inputs (the next `n_pub_in` wires).
    pub n_pub_in: usize,
    /// Private inputs (the next `n_prv_in` wires).
    pub n_prv_in: usize,
    /// The constraints, in file order.
    pub constraints: Vec<Constraint>,
}

/// Parses a `.r1cs` over BN254 (any other prime is refused).
pub(crate) fn read_r1cs(bytes: &[u8]) -> R<R1cs> {
    let file = Sections::parse(bytes, b"r1cs")?;
    let mut h = file.section(1)?;
    if h.u32()? != 32 || h.bigint()? != Fr::MODULUS {
        return Err("not a BN254 (bn128) r1cs".into());
    }
    let n_wires = h.u32()? as usize;
    let n_pub_out = h.u32()? as usize;
    let n_pub_in = h.u32()? as usize;
    let n_prv_in = h.u32()? as usize;
    let _n_labels = h.u64()?;
    let n_constraints = h.u32()? as usize;
    if 1 + n_pub_out + n_pub_in + n_prv_in > n_wires {
        return Err("more signals than wires".into());
    }

    let mut s = file.section(2)?;
    let mut lc = || -> R<Lc> {
        let n = s.u32()? as usize;
        // Each term takes 36 bytes: a count beyond what is left is a truncated file, found
        // before allocating for it.
        let mut terms = Vec::with_capacity(n.min(bytes.len() / 36));
        for _ in 0..n {
            let wire = s.u32()?;
            if wire as usize >= n_wires {
                return Err(format!("wire {wire} out of range"));
            }
            let value = Fr::from_bigint(s.bigint()?).ok_or("coefficient out of range")?;
            terms.push((wire, value));
        }
        Ok(terms)
    };
    let mut constraints = Vec::with_capacity(n_constraints.min(bytes.len() / 12));
    for _ in 0..n_constraints {
        let (a, b, c) = (lc()?, lc()?, lc()?);
        constraints.push(Constraint { a, b, c });
    }
    Ok(R1cs {
        n_wires,
        n_pub_out,
        n_pub_in,
        n_prv_in,
        constraints,
    })
}
