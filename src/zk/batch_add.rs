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

/// A list of affine points that [`sum_lists`] and [`weighted_sum`] add in batched rounds:
/// arkworks points, or the vector layout of `ifma`.
pub(crate) trait PointList: Sized {
    /// The curve of the points.
    type Curve: SWCurveConfig;
    /// An empty list of the same kind, with room for `n` points.
    fn empty(&self, n: usize) -> Self;
    /// Removes every point.
    fn clear(&mut self);
    /// Points in the list.
    fn len(&self) -> usize;
    /// Whether point `i` is the identity.
    fn is_zero(&self, i: usize) -> bool;
    /// Whether points `i` and `j` have the same x (their sum is a doubling or the identity).
    fn same_x(&self, i: usize, j: usize) -> bool;
    /// Point `i`.
    fn get(&self, i: usize) -> Affine<Self::Curve>;
    /// Appends `p`.
    fn push(&mut self, p: &Affine<Self::Curve>);
    /// Appends point `i` of `from`.
    fn push_from(&mut self, from: &Self, i: usize);
    /// Replaces point `dst` with point `i` of `from`.
    fn set_from(&mut self, dst: usize, from: &Self, i: usize);
    /// Sets point `dst` to `from[i] + from[j]` for every `(dst, i, j)`, all in one batch: the
    /// two points of a pair are not the identity and differ in x; the `dst` are distinct.
    fn add_pairs(&mut self, from: &Self, pending: &[(usize, usize, usize)]);
}

impl<P: SWCurveConfig<BaseField: Coord>> PointList for Vec<Affine<P>> {
    type Curve = P;
    fn empty(&self, n: usize) -> Self {
        Vec::with_capacity(n)
    }
    fn clear(&mut self) {
        Vec::clear(self)
    }
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn is_zero(&self, i: usize) -> bool {
        self[i].is_zero()
    }
    fn same_x(&self, i: usize, j: usize) -> bool {
        self[i].x == self[j].x
    }
    fn get(&self, i: usize) -> Affine<P> {
        self[i]
    }
    fn push(&mut self, p: &Affine<P>) {
        Vec::push(self, *p)
    }
    fn push_from(&mut self, from: &Self, i: usize) {
        Vec::push(self, from[i])
    }
    fn set_from(&mut self, dst: usize, from: &Self, i: usize) {
        self[dst] = from[i];
    }
    fn add_pairs(&mut self, from: &Self, pending: &[(usize, usize, usize)]) {
        if pending.is_empty() {
            return;
        }
        let mut dx: Vec<P::BaseField> = pending
            .iter()
            .map(|&(_, i, j)| from[j].x - from[i].x)
            .collect();
        let mut prefix = Vec::with_capacity(dx.len());
        invert_all(&mut dx, &mut prefix);
        for (&(dst, i, j), inv) in pending.iter().zip(&dx) {
            self[dst] = add_given_inverse(&from[i], from[j].x, from[j].y, inv);
        }
    }
}

/// The sum of every list of points. The lists lie one after another in `points`, with lengths
/// `lens`; the result has one point per list (the identity for an empty list). Neighbours are
/// added in rounds, every round's additions sharing one inversion, so a list of `n` points
/// takes `⌈log₂ n⌉` rounds however many lists there are.
pub(crate) fn sum_lists<L: PointList>(mut points: L, mut lens: Vec<usize>) -> L {
    let mut next = points.empty(points.len() / 2 + lens.len());
    // (destination in `next`, first point, second point) of the additions of a round.
    let mut pending: Vec<(usize, usize, usize)> = Vec::new();
    while lens.iter().any(|l| *l > 1) {
        next.clear();
        pending.clear();
        let mut start = 0;
        for len in lens.iter_mut() {
            for k in 0..*len / 2 {
                let (i, j) = (start + 2 * k, start + 2 * k + 1);
                if points.is_zero(i) {
                    next.push_from(&points, j);
                } else if points.is_zero(j) {
                    next.push_from(&points, i);
                } else if points.same_x(i, j) {
                    // A doubling or a cancellation: rare, done at once.
                    let sum = Projective::from(points.get(i)) + points.get(j);
                    next.push(&sum.into_affine());
                } else {
                    pending.push((next.len(), i, j));
                    next.push_from(&points, i);
                }
            }
            if *len % 2 == 1 {
                next.push_from(&points, start + *len - 1);
            }
            start += *len;
            *len = len.div_ceil(2);
        }
        next.add_pairs(&points, &pending);
        std::mem::swap(&mut points, &mut next);
    }
    let mut sums = points.empty(lens.len());
    let mut start = 0;
    for len in lens {
        if len == 1 {
            sums.push_from(&points, start);
        } else {
            sums.push(&Affine::identity());
        }
        start += len;
    }
    sums
}

/// `Σ (k+1)·buckets[k]`, every addition batched. Writing the weight as `k = 2a + b`,
/// `Σ k·xₖ = 2·Σ a·(x₂ₐ + x₂ₐ₊₁) + Σ x₂ₐ₊₁`: each level halves the list with one round of
/// pair additions and sets aside its odd elements, whose sums (all levels' together, in
/// `⌈log₂⌉` rounds) are then combined as `Σ 2ᵗ·Oₜ`. About as many additions as a running sum
/// (two per bucket), but affine and batched instead of projective and one after another.
pub(crate) fn weighted_sum<L: PointList>(buckets: L) -> Projective<L::Curve> {
    // x[k] has weight k.
    let mut x = buckets.empty(buckets.len() + 1);
    x.push(&Affine::identity());
    for i in 0..buckets.len() {
        x.push_from(&buckets, i);
    }
    let mut odd_points = buckets.empty(x.len());
    let mut odd_lens = Vec::new();
    while x.len() > 1 {
        let before = odd_points.len();
        for i in (1..x.len()).step_by(2) {
            odd_points.push_from(&x, i);
        }
        odd_lens.push(odd_points.len() - before);
        let mut lens = vec![2; x.len() / 2];
        if x.len() % 2 == 1 {
            lens.push(1);
        }
        x = sum_lists(x, lens);
    }
    let odd_sums = sum_lists(odd_points, odd_lens);
    let mut total = Projective::<L::Curve>::default();
    for i in (0..odd_sums.len()).rev() {
        total.double_in_place();
        total += odd_sums.get(i);
    }
    total
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ark_bn254::Fr;
    use ark_ec::PrimeGroup;
    use ark_ff::Field;

    fn points<P: SWCurveConfig<ScalarField = Fr>>(n: u64) -> Vec<Affine<P>> {
        (0..n)
            .map(|i| (Projective::<P>::generator() * Fr::from(i + 3).pow([99 + i])).into_affine())
            .collect()
    }

    /// A list of `kind`'s kind holding `points`.
    fn list<L: PointList>(kind: &L, points: &[Affine<L::Curve>]) -> L {
        let mut list = kind.empty(points.len());
        for p in points {
            list.push(p);
        }
        list
    }

    /// Lists with the cases the batched additions treat apart: the identity, a point added to
    /// itself (a doubling), a point and its negation (the sum is the identity), odd lengths;
    /// in lists of `kind`'s kind.
    pub(crate) fn check_lists<P: SWCurveConfig<ScalarField = Fr>, L: PointList<Curve = P>>(
        kind: L,
    ) {
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
        let sums = sum_lists(list(&kind, &lists.concat()), lens);
        assert_eq!(sums.len(), lists.len());
        for (i, l) in lists.iter().enumerate() {
            let want: Projective<P> = l.iter().copied().map(Projective::from).sum();
            assert_eq!(sums.get(i), want.into_affine());
        }
    }

    #[test]
    fn list_sums_match_projective_sums() {
        check_lists(Vec::<ark_bn254::G1Affine>::new());
        check_lists(Vec::<ark_bn254::G2Affine>::new());
    }

    /// `Σ (k+1)·buckets[k]` for lengths that are and are not powers of two, with empty
    /// buckets and buckets equal to (or the negation of) their neighbours, which meet in the
    /// pair additions; in lists of `kind`'s kind.
    pub(crate) fn check_weighted<P: SWCurveConfig<ScalarField = Fr>, L: PointList<Curve = P>>(
        kind: L,
    ) {
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
                weighted_sum(list(&kind, &buckets)).into_affine(),
                want.into_affine(),
                "{n}"
            );
        }
    }

    #[test]
    fn weighted_sums_match_scalar_multiplication() {
        check_weighted(Vec::<ark_bn254::G1Affine>::new());
        check_weighted(Vec::<ark_bn254::G2Affine>::new());
    }
}
