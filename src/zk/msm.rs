//! Multi-scalar multiplication against fixed bases (the proving key's queries).
//!
//! The bases never change, so each one is stored once with its multiples `2^(c·j)·P` for every
//! `c`-bit window `j` of a scalar. A product `Σ sᵢ·Pᵢ` then needs no doublings and a single
//! bucket reduction: every signed `c`-bit digit `d` of every scalar adds `±T[i][j]` to bucket
//! `|d|`, and the buckets are summed once at the end (`Σ k·bucket[k]`), instead of once per
//! window as in a plain Pippenger MSM. Scalars above `(r-1)/2` are negated first, so small
//! negative values (`-1`) cost as little as small positive ones.

use ark_bn254::Fr;
use ark_ec::short_weierstrass::{Affine, Bucket, Projective, SWCurveConfig};
use ark_ec::{AdditiveGroup, AffineRepr, CurveGroup};
use ark_ff::{BigInt, BigInteger, PrimeField};

/// Bits of a BN254 scalar, plus one for the carry of the signed-digit recoding.
const SCALAR_BITS: usize = Fr::MODULUS_BIT_SIZE as usize + 1;

/// How many bases are doubled and normalised together while the table is built (bounds the
/// temporary projective copies).
const BUILD_CHUNK: usize = 64;

/// The window multiples of a list of fixed bases.
pub(crate) struct FixedBaseMsm<P: SWCurveConfig> {
    /// Window width in bits.
    window: usize,
    /// Windows per scalar.
    windows: usize,
    /// For each stored base, its position in the original list (the identity is not stored).
    rows: Vec<u32>,
    /// `table[r * windows + j] = 2^(window·j) · base[rows[r]]`, affine.
    table: Vec<Affine<P>>,
}

impl<P: SWCurveConfig<ScalarField = Fr>> FixedBaseMsm<P> {
    /// Precomputes the window multiples of `bases` for `window`-bit digits (2 ≤ window ≤ 20).
    pub(crate) fn new(bases: &[Affine<P>], window: usize) -> Self {
        let window = window.clamp(2, 20);
        let windows = SCALAR_BITS.div_ceil(window);
        let rows: Vec<u32> = bases
            .iter()
            .enumerate()
            .filter(|(_, b)| !b.is_zero())
            .map(|(i, _)| i as u32)
            .collect();
        let mut table = Vec::with_capacity(rows.len() * windows);
        let mut proj: Vec<Projective<P>> = Vec::with_capacity(BUILD_CHUNK * windows);
        for chunk in rows.chunks(BUILD_CHUNK) {
            proj.clear();
            for &i in chunk {
                let mut p: Projective<P> = bases[i as usize].into();
                for _ in 0..windows {
                    proj.push(p);
                    for _ in 0..window {
                        p.double_in_place();
                    }
                }
            }
            table.extend(Projective::normalize_batch(&proj));
        }
        FixedBaseMsm {
            window,
            windows,
            rows,
            table,
        }
    }

    /// `Σ scalars[i] · bases[i]` (missing scalars count as zero).
    pub(crate) fn msm(&self, scalars: &[BigInt<4>]) -> Projective<P> {
        let c = self.window;
        let half = 1u64 << (c - 1);
        let full = 1u64 << c;
        let mut buckets = vec![Bucket::<P>::ZERO; half as usize];
        let modulus = Fr::MODULUS;
        let mut half_modulus = modulus;
        half_modulus.div2();
        for (r, &i) in self.rows.iter().enumerate() {
            let Some(s) = scalars.get(i as usize) else {
                continue;
            };
            if s.is_zero() {
                continue;
            }
            let (s, negate) = if *s > half_modulus {
                let mut n = modulus;
                n.sub_with_borrow(s);
                (n, true)
            } else {
                (*s, false)
            };
            let bits = s.num_bits() as usize;
            let row = &self.table[r * self.windows..(r + 1) * self.windows];
            let mut carry = 0u64;
            let mut j = 0;
            while j * c < bits || carry != 0 {
                let mut d = window_bits(&s.0, j * c, c) + carry;
                carry = 0;
                if d != 0 {
                    let mut neg = negate;
                    if d > half {
                        d = full - d;
                        carry = 1;
                        neg = !neg;
                    }
                    if d != 0 {
                        let b = &mut buckets[(d - 1) as usize];
                        if neg {
                            *b -= &row[j];
                        } else {
                            *b += &row[j];
                        }
                    }
                }
                j += 1;
            }
        }
        // Σ k·bucket[k-1], as a running sum from the top.
        let mut running = Bucket::<P>::ZERO;
        let mut total = Bucket::<P>::ZERO;
        for b in buckets.iter().rev() {
            running += b;
            total += &running;
        }
        total.into()
    }
}

/// The `c` bits of `s` starting at bit `pos` (zero past the end).
#[inline(always)]
fn window_bits(s: &[u64; 4], pos: usize, c: usize) -> u64 {
    let limb = pos / 64;
    if limb >= 4 {
        return 0;
    }
    let off = pos % 64;
    let mut v = s[limb] >> off;
    if off + c > 64 && limb + 1 < 4 {
        v |= s[limb + 1] << (64 - off);
    }
    v & ((1u64 << c) - 1)
}

#[cfg(test)]
mod tests {
    use super::FixedBaseMsm;
    use ark_bn254::{Fr, G1Affine, G1Projective, G2Affine, G2Projective};
    use ark_ec::short_weierstrass::{Affine, Projective, SWCurveConfig};
    use ark_ec::{CurveGroup, PrimeGroup, VariableBaseMSM};
    use ark_ff::{Field, PrimeField};

    /// A full-size scalar that looks random (no RNG dependency needed).
    fn scalar(i: u64) -> Fr {
        Fr::from(i + 7).pow([1000 + i])
    }

    fn check<P: SWCurveConfig<ScalarField = Fr>>(bases: Vec<Affine<P>>, window: usize) {
        let n = bases.len() as u64;
        let mut scalars: Vec<Fr> = (0..n).map(|i| scalar(i + 100)).collect();
        // Zero, one, minus one, window edges, small negative, 64-bit, and the largest scalars.
        let specials = [
            Fr::from(0u64),
            Fr::from(1u64),
            -Fr::from(1u64),
            Fr::from(1u64 << window),
            Fr::from((1u64 << window) - 1),
            Fr::from(1u64 << (window - 1)),
            Fr::from((1u64 << (window - 1)) + 1),
            -Fr::from(12345u64),
            Fr::from(u64::MAX),
            -Fr::from(u64::MAX),
            Fr::from(2u64).pow([253]),
            -Fr::from(2u64).pow([253]),
        ];
        for (s, v) in scalars.iter_mut().zip(specials) {
            *s = v;
        }
        let table = FixedBaseMsm::new(&bases, window);
        let big: Vec<_> = scalars.iter().map(|s| s.into_bigint()).collect();
        let expected = Projective::<P>::msm(&bases, &scalars).expect("lengths");
        assert_eq!(table.msm(&big).into_affine(), expected.into_affine());
        // Fewer scalars than bases: the missing ones count as zero.
        let expected = Projective::<P>::msm(&bases[..5], &scalars[..5]).expect("lengths");
        assert_eq!(table.msm(&big[..5]).into_affine(), expected.into_affine());
    }

    #[test]
    fn fixed_base_msm_matches_arkworks_g1() {
        let mut bases: Vec<G1Affine> = (0..40)
            .map(|i| (G1Projective::generator() * scalar(i)).into_affine())
            .collect();
        bases[3] = G1Affine::identity();
        for w in [3, 7, 10, 13] {
            check(bases.clone(), w);
        }
    }

    #[test]
    fn fixed_base_msm_matches_arkworks_g2() {
        let mut bases: Vec<G2Affine> = (0..20)
            .map(|i| (G2Projective::generator() * scalar(i)).into_affine())
            .collect();
        bases[1] = G2Affine::identity();
        check(bases, 9);
    }
}
