//! A reader for snarkjs's binary `.zkey` (Groth16 proving key + the A and B constraint
//! matrices), small enough to keep the prover free of ark-circom's wasmer dependency.
//!
//! Layout: `"zkey"`, version u32, section count u32, then sections `(id u32, length u64,
//! bytes)`. Section 2 is the Groth16 header, 3 the IC points, 4 the A/B coefficients, 5..9 the
//! A, B1, B2, C (= L) and H queries. Field elements are 32-byte little-endian in Montgomery
//! form; a coefficient is stored multiplied by R twice.

use ark_bn254::{Bn254, Fq, Fq2, Fr, G1Affine, G2Affine};
use ark_ff::{BigInt, PrimeField};
use ark_groth16::ProvingKey;
use ark_relations::gr1cs::Matrix;

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

type R<T> = Result<T, String>;

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| format!("truncated at byte {}", self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self) -> R<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> R<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn bigint(&mut self) -> R<BigInt<4>> {
        let b = self.take(32)?;
        let mut limbs = [0u64; 4];
        for (i, l) in limbs.iter_mut().enumerate() {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i * 8..i * 8 + 8]);
            *l = u64::from_le_bytes(a);
        }
        Ok(BigInt(limbs))
    }
    /// An Fq coordinate in Montgomery form.
    fn fq(&mut self) -> R<Fq> {
        let b = self.bigint()?;
        if b >= Fq::MODULUS {
            return Err("base-field element out of range".into());
        }
        Ok(Fq::new_unchecked(b))
    }
    fn g1(&mut self) -> R<G1Affine> {
        let (x, y) = (self.fq()?, self.fq()?);
        if x == Fq::from(0u64) && y == Fq::from(0u64) {
            return Ok(G1Affine::identity());
        }
        let p = G1Affine::new_unchecked(x, y);
        if !p.is_on_curve() {
            return Err("G1 point not on the curve".into());
        }
        Ok(p)
    }
    fn g2(&mut self) -> R<G2Affine> {
        let x = Fq2::new(self.fq()?, self.fq()?);
        let y = Fq2::new(self.fq()?, self.fq()?);
        if x == Fq2::from(0u64) && y == Fq2::from(0u64) {
            return Ok(G2Affine::identity());
        }
        // On-curve only: the subgroup check over every B2 point would cost a noticeable start-up
        // time, and the embedded key is pinned by circuits/manifest.sha256.
        let p = G2Affine::new_unchecked(x, y);
        if !p.is_on_curve() {
            return Err("G2 point not on the curve".into());
        }
        Ok(p)
    }
}

/// Parses a snarkjs Groth16 `.zkey` over BN254.
pub(crate) fn read_zkey(bytes: &[u8]) -> R<ZkeyProver> {
    let mut c = Cursor { buf: bytes, pos: 0 };
    if c.take(4)? != b"zkey" {
        return Err("not a zkey file (bad magic)".into());
    }
    let _version = c.u32()?;
    let n_sections = c.u32()?;
    let mut sections: [Option<(usize, usize)>; 11] = [None; 11];
    for _ in 0..n_sections {
        let id = c.u32()? as usize;
        let len = usize::try_from(c.u64()?).map_err(|_| "section too long")?;
        let start = c.pos;
        c.take(len)?;
        if id < sections.len() && sections[id].is_none() {
            sections[id] = Some((start, len));
        }
    }
    let section = |id: usize| -> R<Cursor<'_>> {
        let (start, len) = sections[id].ok_or_else(|| format!("section {id} missing"))?;
        Ok(Cursor {
            buf: &bytes[..start + len],
            pos: start,
        })
    };

    let mut h = section(1)?;
    if h.u32()? != 1 {
        return Err("not a Groth16 zkey".into());
    }

    let mut h = section(2)?;
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
        let mut s = section(id)?;
        (0..n).map(|_| s.g1()).collect()
    };
    let ic = g1s(3, n_public + 1)?;
    let a_query = g1s(5, n_vars)?;
    let b_g1_query = g1s(6, n_vars)?;
    let b_g2_query = {
        let mut s = section(7)?;
        (0..n_vars).map(|_| s.g2()).collect::<R<Vec<_>>>()?
    };
    let l_query = g1s(8, n_vars - n_public - 1)?;
    let h_query = g1s(9, domain_size)?;

    let mut s = section(4)?;
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
