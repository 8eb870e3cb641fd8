//! Affine point additions in batches that share one field inversion (Montgomery's trick): an
//! addition then costs about six multiplications, against ten to fourteen in projective
//! coordinates. Used by `msm` for its buckets, their leftovers and their weighted sum.

use ark_bn254::{Fq, Fq2};
use ark_ec::short_weierstrass::{Affine, Projective, SWCurveConfig};
use ark_ec::{AdditiveGroup, AffineRepr, CurveGroup};
use ark_ff::Field;

use super::inverse::{fq2_inverse, fq_inverse};

/// The field operations of batched additions, at their fastest for each coordinate field.
pub(crate) trait Coord: Field {
    /// `self²`.
    fn sq(&self) -> Self;
    /// `self⁻¹`, `None` for zero.
    fn inv(&self) -> Option<Self>;
}

impl Coord for Fq {
    /// A multiplication: arkworks' squaring in this field is slower.
    #[inline(always)]
    fn sq(&self) -> Self {
        *self * self
    }
    fn inv(&self) -> Option<Self> {
        fq_inverse(self)
    }
}

impl Coord for Fq2 {
    #[inline(always)]
    fn sq(&self) -> Self {
        self.square()
    }
    fn inv(&self) -> Option<Self> {
        fq2_inverse(self)
    }
}

/// Inverts every element of `values` in place with one inversion; every element must be
/// non-zero. `prefix` is scratch space.
pub(crate) fn invert_all<F: Coord>(values: &mut [F], prefix: &mut Vec<F>) {
    prefix.clear();
    let mut acc = F::one();
    for v in values.iter() {
        prefix.push(acc);
        acc *= v;
    }
    // The product of non-zero elements is non-zero.
    let mut inv = acc.inv().unwrap_or_default();
    for (v, before) in values.iter_mut().zip(prefix.iter()).rev() {
        let v_inv = inv * before;
        inv *= *v;
        *v = v_inv;
    }
}

/// `a + (bx, by)` for affine points with different x, given `inv = 1 / (bx - a.x)`: the
/// chord's slope, then the third point's reflection.
#[inline(always)]
pub(crate) fn add_given_inverse<P: SWCurveConfig<BaseField: Coord>>(
    a: &Affine<P>,
    bx: P::BaseField,
    by: P::BaseField,
    inv: &P::BaseField,
) -> Affine<P> {
    let lambda = (by - a.y) * inv;
    let x3 = lambda.sq() - a.x - bx;
    Affine::new_unchecked(x3, lambda * (a.x - x3) - a.y)
}

/// The sum of every list of points. The lists lie one after another in `points`, with lengths
/// `lens`; the result has one point per list (the identity for an empty list). Neighbours are
/// added in rounds, every round's additions sharing one inversion, so a list of `n` points
/// takes `⌈log₂ n⌉` rounds however many lists there are.
pub(crate) fn sum_lists<P: SWCurveConfig<BaseField: Coord>>(
    mut points: Vec<Affine<P>>,
    mut lens: Vec<usize>,
) -> Vec<Affine<P>> {
    let mut next = Vec::with_capacity(points.len() / 2 + lens.len());
    // (destination in `next`, first point, second point) of the additions of a round.
    let mut pending: Vec<(usize, usize, usize)> = Vec::new();
    let mut dx = Vec::new();
    let mut prefix = Vec::new();
    while lens.iter().any(|l| *l > 1) {
        next.clear();
        pending.clear();
        dx.clear();
        let mut start = 0;
        for len in lens.iter_mut() {
            for k in 0..*len / 2 {
                let (i, j) = (start + 2 * k, start + 2 * k + 1);
                let (a, b) = (&points[i], &points[j]);
                if a.is_zero() {
                    next.push(*b);
                } else if b.is_zero() {
                    next.push(*a);
                } else if a.x == b.x {
                    // A doubling or a cancellation: rare, done at once.
                    next.push((Projective::from(*a) + b).into_affine());
                } else {
                    pending.push((next.len(), i, j));
                    dx.push(b.x - a.x);
                    next.push(*a);
                }
            }
            if *len % 2 == 1 {
                next.push(points[start + *len - 1]);
            }
            start += *len;
            *len = len.div_ceil(2);
        }
        invert_all(&mut dx, &mut prefix);
        for (&(dst, i, j), inv) in pending.iter().zip(&dx) {
            next[dst] = add_given_inverse(&points[i], points[j].x, points[j].y, inv);
        }
        std::mem::swap(&mut points, &mut next);
    }
    let mut sums = Vec::with_capacity(lens.len());
    let mut start = 0;
    for len in lens {
        sums.push(if len == 1 {
            points[start]
        } else {
            Affine::identity()
        });
        start += len;
    }
    sums
}

/// `Σ (k+1)·buckets[k]`, every addition batched. Writing the weight as `k = 2a + b`,
/// `Σ k·xₖ = 2·Σ a·(x₂ₐ + x₂ₐ₊₁) + Σ x₂ₐ₊₁`: each level halves the list with one round of
/// pair additions and sets aside its odd elements, whose sums (all levels' together, in
/// `⌈log₂⌉` rounds) are then combined as `Σ 2ᵗ·Oₜ`. About as many additions as a running sum
/// (two per bucket), but affine and batched instead of projective and one after another.
pub(crate) fn weighted_sum<P: SWCurveConfig<BaseField: Coord>>(
    buckets: Vec<Affine<P>>,
) -> Projective<P> {
    // x[k] has weight k.
    let mut x = Vec::with_capacity(buckets.len() + 1);
    x.push(Affine::<P>::identity());
    x.extend(buckets);
    let mut odd_points = Vec::with_capacity(x.len());
    let mut odd_lens = Vec::new();
    while x.len() > 1 {
        let before = odd_points.len();
        odd_points.extend(x.iter().skip(1).step_by(2));
        odd_lens.push(odd_points.len() - before);
        let mut lens = vec![2; x.len() / 2];
        if x.len() % 2 == 1 {
            lens.push(1);
        }
        x = sum_lists(x, lens);
    }
    let odd_sums = sum_lists(odd_points, odd_lens);
    let mut total = Projective::<P>::default();
    for o in odd_sums.iter().rev() {
        total.double_in_place();
        total += o;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_bn254::Fr;
    use ark_ec::PrimeGroup;
    use ark_ff::Field;

    fn points<P: SWCurveConfig<ScalarField = Fr>>(n: u64) -> Vec<Affine<P>> {
        (0..n)
            .map(|i| (Projective::<P>::generator() * Fr::from(i + 3).pow([99 + i])).into_affine())
            .collect()
    }

    /// Lists with the cases the batched additions treat apart: the identity, a point added to
    /// itself (a doubling), a point and its negation (the sum is the identity), odd lengths.
    fn check_lists<P: SWCurveConfig<ScalarField = Fr, BaseField: Coord>>() {
        let p = points::<P>(8);
        let lists: Vec<Vec<Affine<P>>> = vec![
            vec![],
            vec![p[0]],
            vec![p[1], p[2]],
            vec![p[3], p[3]],
            vec![p[4], -p[4]],
            vec![p[5], Affine::identity(), p[6]],
            vec![p[0], p[1], p[0], p[1], p[7], -p[7], p[2]],
            vec![Affine::identity(); 3],
        ];
        let lens = lists.iter().map(Vec::len).collect();
        let sums = sum_lists(lists.concat(), lens);
        assert_eq!(sums.len(), lists.len());
        for (list, sum) in lists.iter().zip(sums) {
            let want: Projective<P> = list.iter().copied().map(Projective::from).sum();
            assert_eq!(sum, want.into_affine());
        }
    }

    #[test]
    fn list_sums_match_projective_sums() {
        check_lists::<ark_bn254::g1::Config>();
        check_lists::<ark_bn254::g2::Config>();
    }

    /// `Σ (k+1)·buckets[k]` for lengths that are and are not powers of two, with empty
    /// buckets and buckets equal to (or the negation of) their neighbours, which meet in the
    /// pair additions.
    fn check_weighted<P: SWCurveConfig<ScalarField = Fr, BaseField: Coord>>() {
        let p = points::<P>(40);
        for n in [0usize, 1, 2, 3, 16, 33] {
            let mut buckets = p[..n].to_vec();
            if n >= 16 {
                buckets[2] = Affine::identity();
                buckets[4] = buckets[3];
                buckets[6] = -buckets[5];
                buckets[n - 1] = Affine::identity();
            }
            let want: Projective<P> = buckets
                .iter()
                .enumerate()
                .map(|(k, b)| *b * Fr::from(k as u64 + 1))
                .sum();
            assert_eq!(
                weighted_sum(buckets).into_affine(),
                want.into_affine(),
                "{n}"
            );
        }
    }

    #[test]
    fn weighted_sums_match_scalar_multiplication() {
        check_weighted::<ark_bn254::g1::Config>();
        check_weighted::<ark_bn254::g2::Config>();
    }
}
