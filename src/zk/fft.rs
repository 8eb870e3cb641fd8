//! snarkjs's witness map over the circuit's evaluation domain, with precomputed twiddles.
//!
//! The prover needs `A·B - C` on the odd points of a domain twice as large (a coset `g·H` of
//! the `n`-point domain `H`, `g` a primitive `2n`-th root of unity): snarkjs's `.zkey` holds
//! the H query in Lagrange form over those points. Each of A, B, C goes from evaluations on
//! `H` to evaluations on `g·H` as an inverse transform (decimation in frequency, leaving the
//! coefficients in bit-reversed order), a scaling of coefficient `i` by `gⁱ/n` (stored in the
//! same bit-reversed order), and a forward transform (decimation in time, from bit-reversed
//! order back to natural order): no bit-reversal permutation is ever done.

use ark_bn254::Fr;
use ark_ff::{One, Zero};
use ark_poly::{EvaluationDomain, Radix2EvaluationDomain};

use super::ifma::CosetLanes;

/// The `n`-point domain's twiddles and the coset scaling.
pub(crate) struct CosetFft {
    n: usize,
    /// `ωⁱ` for `i < n/2`.
    forward: Vec<Fr>,
    /// `ω⁻ⁱ` for `i < n/2`.
    inverse: Vec<Fr>,
    /// `gʲ/n` at position `bitrev(j)`.
    scale: Vec<Fr>,
    /// The same transform in vector lanes, where the CPU has them.
    lanes: Option<CosetLanes>,
}

fn powers(base: Fr, count: usize) -> Vec<Fr> {
    let mut v = Vec::with_capacity(count);
    let mut x = Fr::one();
    for _ in 0..count {
        v.push(x);
        x *= base;
    }
    v
}

impl CosetFft {
    /// Tables for the smallest power-of-two domain of at least `size` points, or `None` if the
    /// field has no such domain.
    pub(crate) fn new(size: usize) -> Option<Self> {
        let domain = Radix2EvaluationDomain::<Fr>::new(size)?;
        let n = domain.size();
        let g = Radix2EvaluationDomain::<Fr>::new(2 * n)?.group_gen;
        let n_inv = domain.size_inv;
        let bits = n.trailing_zeros();
        let g_powers = powers(g, n);
        let mut scale = vec![Fr::zero(); n];
        for (j, p) in g_powers.iter().enumerate() {
            scale[bitrev(j, bits)] = *p * n_inv;
        }
        let forward = powers(domain.group_gen, n / 2);
        let inverse = powers(domain.group_gen_inv, n / 2);
        Some(CosetFft {
            n,
            lanes: CosetLanes::new(n, &forward, &inverse, &scale),
            forward,
            inverse,
            scale,
        })
    }

    /// Number of points of the domain.
    pub(crate) fn size(&self) -> usize {
        self.n
    }

    /// Evaluations on `H` (natural order, `n` of them) to evaluations on `g·H`, in place.
    pub(crate) fn to_coset(&self, v: &mut [Fr]) {
        debug_assert_eq!(v.len(), self.n);
        if let Some(lanes) = self.lanes.as_ref().filter(|_| v.len() == self.n) {
            lanes.to_coset(v);
            return;
        }
        // Inverse transform, decimation in frequency: natural order in, bit-reversed out.
        let mut half = self.n / 2;
        while half >= 1 {
            let stride = self.n / (2 * half);
            for block in v.chunks_exact_mut(2 * half) {
                let (lo, hi) = block.split_at_mut(half);
                // The first twiddle is 1: no multiplication (a fifth of them).
                let t = lo[0] - hi[0];
                lo[0] += hi[0];
                hi[0] = t;
                let twiddles = self.inverse.iter().step_by(stride).skip(1);
                for ((u, w), tw) in lo[1..].iter_mut().zip(&mut hi[1..]).zip(twiddles) {
                    let t = *u - *w;
                    *u += *w;
                    *w = t * tw;
                }
            }
            half /= 2;
        }
        for (x, s) in v.iter_mut().zip(&self.scale) {
            *x *= s;
        }
        // Forward transform, decimation in time: bit-reversed in, natural order out.
        let mut half = 1;
        while half < self.n {
            let stride = self.n / (2 * half);
            for block in v.chunks_exact_mut(2 * half) {
                let (lo, hi) = block.split_at_mut(half);
                let t = hi[0];
                hi[0] = lo[0] - t;
                lo[0] += t;
                let twiddles = self.forward.iter().step_by(stride).skip(1);
                for ((u, w), tw) in lo[1..].iter_mut().zip(&mut hi[1..]).zip(twiddles) {
                    let t = *w * tw;
                    *w = *u - t;
                    *u += t;
                }
            }
            half *= 2;
        }
    }
}

fn bitrev(i: usize, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        i.reverse_bits() >> (usize::BITS - bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_ff::Field;

    fn is_primitive_root(g: Fr, order: u64) -> bool {
        g.pow([order]) == Fr::one() && g.pow([order / 2]) != Fr::one()
    }

    /// The same transform with arkworks' own FFTs, as the prover did before.
    fn reference(v: &mut Vec<Fr>, n: usize) {
        let domain = Radix2EvaluationDomain::<Fr>::new(n).unwrap();
        let g = Radix2EvaluationDomain::<Fr>::new(2 * n).unwrap().element(1);
        assert!(is_primitive_root(g, 2 * n as u64));
        domain.ifft_in_place(v);
        Radix2EvaluationDomain::<Fr>::distribute_powers_and_mul_by_const(v, g, Fr::one());
        domain.fft_in_place(v);
    }

    #[test]
    fn coset_transform_matches_arkworks() {
        for size in [1usize, 2, 8, 64, 743] {
            let mut fft = CosetFft::new(size).unwrap();
            if size == 743 {
                // The vector path where this CPU has one (64 points and up), and the portable
                // one.
                assert_eq!(fft.lanes.is_some(), super::super::ifma::has_lanes());
                let n = fft.size();
                let mut v: Vec<Fr> = (0..n as u64).map(|i| Fr::from(i + 1).pow([33])).collect();
                let mut want = v.clone();
                reference(&mut want, n);
                fft.to_coset(&mut v);
                assert_eq!(v, want, "size {size}, lanes");
                fft.lanes = None;
            }
            let n = fft.size();
            let mut v: Vec<Fr> = (0..n as u64)
                .map(|i| Fr::from(i * i + 3).pow([17]))
                .collect();
            let mut want = v.clone();
            reference(&mut want, n);
            fft.to_coset(&mut v);
            assert_eq!(v, want, "size {size}");
        }
    }
}
