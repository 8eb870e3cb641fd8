//! The prover's field arithmetic eight elements at a time with AVX-512 IFMA (52-bit
//! multiply-add), on the x86_64 CPUs that have it: field elements in radix 2⁵² and Montgomery
//! form with R = 2²⁶⁰, one per 64-bit lane. A multiplication costs about 3 ns per lane here,
//! against 16 ns for arkworks' 64-bit limb product. What runs in lanes: the batched affine
//! additions of the MSMs in G1 and G2 (the bucket rounds, the leftovers and the weighted
//! bucket sums: [`Table`]) and the witness map's coset transforms over Fr ([`CosetLanes`]).
//! Elsewhere (aarch64, older x86) [`has_lanes`] is false, [`Table::new`] and
//! [`CosetLanes::new`] return `None`, and `msm` and `fft` keep their portable paths; the
//! results are the same either way.
//!
//! The layout: a point is its x limbs then its y limbs (Fq2: both parts of x, then of y),
//! each coordinate canonical (below p) in the R = 2²⁶⁰ form. Between operations a value may
//! be any multiple of p larger (the bounds are in the comments); multiplications take inputs
//! below 4p and return values below 2p, so only stored values are reduced.

use std::marker::PhantomData;

use ark_bn254::{g1, g2, Fq, Fq2, Fr};
use ark_ec::short_weierstrass::{Affine, Projective, SWCurveConfig};

use super::batch_add::Coord;
#[cfg(target_arch = "x86_64")]
use super::msm::bucket_sum;
use super::msm::Entry;

/// A curve of the proving key whose coordinates this module can put in lanes: G1 over Fq
/// (`N = 1` field element per coordinate), G2 over Fq2 (`N = 2`).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) trait LaneCurve: SWCurveConfig<ScalarField = Fr, BaseField: Coord> {
    /// Fq elements per coordinate.
    const N: usize;
    /// The coordinate's Fq elements.
    fn parts(x: &Self::BaseField) -> [Fq; 2];
    /// The coordinate of these Fq elements (the second is ignored for G1).
    fn from_parts(parts: [Fq; 2]) -> Self::BaseField;
    /// Additions in lanes (see `x86::add_batch`).
    ///
    /// # Safety
    /// As `x86::add_batch`.
    #[cfg(target_arch = "x86_64")]
    unsafe fn add_batch(adds: &[x86::LaneAdd], a: *const u64, b: *const u64, dst: *mut u64);
}

impl LaneCurve for g1::Config {
    const N: usize = 1;
    fn parts(x: &Fq) -> [Fq; 2] {
        [*x, Fq::from(0u64)]
    }
    fn from_parts(parts: [Fq; 2]) -> Fq {
        parts[0]
    }
    #[cfg(target_arch = "x86_64")]
    unsafe fn add_batch(adds: &[x86::LaneAdd], a: *const u64, b: *const u64, dst: *mut u64) {
        // SAFETY: passed on from the caller.
        unsafe { x86::add_batch::<1>(adds, a, b, dst) }
    }
}

impl LaneCurve for g2::Config {
    const N: usize = 2;
    fn parts(x: &Fq2) -> [Fq; 2] {
        [x.c0, x.c1]
    }
    fn from_parts(parts: [Fq; 2]) -> Fq2 {
        Fq2::new(parts[0], parts[1])
    }
    #[cfg(target_arch = "x86_64")]
    unsafe fn add_batch(adds: &[x86::LaneAdd], a: *const u64, b: *const u64, dst: *mut u64) {
        // SAFETY: passed on from the caller.
        unsafe { x86::add_batch::<2>(adds, a, b, dst) }
    }
}

/// Whether this CPU runs the vector lanes (AVX-512F and IFMA, on x86_64).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn has_lanes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512ifma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The coset transform of `fft` in lanes, where this CPU has AVX-512 IFMA.
#[cfg(target_arch = "x86_64")]
pub(crate) use x86::CosetLanes;

/// Never built: no vector path on this architecture.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) struct CosetLanes(std::convert::Infallible);

#[cfg(not(target_arch = "x86_64"))]
impl CosetLanes {
    /// No vector path here.
    pub(crate) fn new(_n: usize, _forward: &[Fr], _inverse: &[Fr], _scale: &[Fr]) -> Option<Self> {
        None
    }
    /// Never called.
    pub(crate) fn to_coset(&self, _v: &mut [Fr]) {
        match self.0 {}
    }
}

/// A table of points in the vector layout, or nothing where this CPU cannot use one.
pub(crate) struct Table<P> {
    /// Each point's x then y, each coordinate `5·N` words.
    #[cfg(target_arch = "x86_64")]
    words: Vec<u64>,
    #[cfg(not(target_arch = "x86_64"))]
    never: std::convert::Infallible,
    curve: PhantomData<P>,
}

impl<P: LaneCurve> Table<P> {
    /// The table's points in the vector layout, if this CPU has AVX-512 IFMA (and no point is
    /// the identity, which fixed-base tables never hold).
    pub(crate) fn new(points: &[Affine<P>]) -> Option<Table<P>> {
        #[cfg(target_arch = "x86_64")]
        {
            x86::table(points)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = points;
            None
        }
    }

    /// `msm::bucket_sum` over this table, in lanes.
    pub(crate) fn bucket_sum(&self, entries: Vec<Entry>, n_buckets: usize) -> Projective<P> {
        #[cfg(target_arch = "x86_64")]
        {
            bucket_sum(
                x86::VectorBuckets::<P>::new(&self.words, n_buckets),
                entries,
                n_buckets,
            )
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (entries, n_buckets);
            match self.never {}
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::marker::PhantomData;

    use ark_bn254::{Fq, Fr};
    use ark_ec::short_weierstrass::{Affine, Projective};
    use ark_ec::{AffineRepr, CurveGroup};
    use ark_ff::{BigInt, MontFp, PrimeField};

    use super::super::batch_add::PointList;
    use super::super::inverse::fq_inverse;
    use super::super::msm::{Buckets, Entry};
    use super::LaneCurve;

    const MASK: u64 = (1 << 52) - 1;

    /// A field element in radix 2⁵², low limb first.
    type Limbs = [u64; 5];

    /// Five lanes of limbs: eight field elements, one per 64-bit lane.
    type V = [__m512i; 5];

    /// 256 bits in 64-bit limbs to radix 2⁵².
    const fn to52(w: [u64; 4]) -> Limbs {
        [
            w[0] & MASK,
            (w[0] >> 52 | w[1] << 12) & MASK,
            (w[1] >> 40 | w[2] << 24) & MASK,
            (w[2] >> 28 | w[3] << 36) & MASK,
            w[3] >> 16,
        ]
    }

    /// Radix 2⁵² (a value below 2²⁵⁶) to 64-bit limbs.
    const fn to64(l: Limbs) -> [u64; 4] {
        [
            l[0] | l[1] << 52,
            l[1] >> 12 | l[2] << 40,
            l[2] >> 24 | l[3] << 28,
            l[3] >> 36 | l[4] << 16,
        ]
    }

    /// `-p⁻¹ mod 2⁵²` (Newton's iteration doubles the correct low bits each step).
    const fn neg_inverse_52(p0: u64) -> u64 {
        let mut inv = 1u64;
        let mut i = 0;
        while i < 7 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(p0.wrapping_mul(inv)));
            i += 1;
        }
        inv.wrapping_neg() & MASK
    }

    /// `k·m` in normalised limbs, for a modulus `m` in 64-bit limbs.
    const fn times(m: [u64; 4], k: u64) -> Limbs {
        let m = to52(m);
        let mut out = [0u64; 5];
        let mut carry = 0;
        let mut j = 0;
        while j < 5 {
            let v = m[j] * k + carry;
            out[j] = if j < 4 { v & MASK } else { v };
            carry = v >> 52;
            j += 1;
        }
        out
    }

    const P: Limbs = times(<Fq as PrimeField>::MODULUS.0, 1);
    const P2: Limbs = times(<Fq as PrimeField>::MODULUS.0, 2);
    const P4: Limbs = times(<Fq as PrimeField>::MODULUS.0, 4);
    const PINV: u64 = neg_inverse_52(<Fq as PrimeField>::MODULUS.0[0]);
    const ZERO: Limbs = [0; 5];

    /// 16: arkworks keeps `x·2²⁵⁶`, so the element 16·x is kept as `x·2²⁶⁰`, this layout.
    const SIXTEEN: Fq = MontFp!("16");
    /// 1/16 mod p, for the way back.
    const INV_SIXTEEN: Fq =
        MontFp!("12312136615409592312513603231707217237391675025980025810262583815737939742328");
    /// 256: see [`invert_lanes`].
    const TWO_FIFTY_SIX: Fq = MontFp!("256");
    /// 1 in this layout (2²⁶⁰ mod p).
    const ONE: Limbs = to52(SIXTEEN.0 .0);

    /// `x` in this layout.
    fn limbs(x: Fq) -> Limbs {
        to52((x * SIXTEEN).0 .0)
    }

    /// The element of canonical limbs `l`.
    fn element(l: &[u64]) -> Fq {
        Fq::new_unchecked(BigInt(to64([l[0], l[1], l[2], l[3], l[4]]))) * INV_SIXTEEN
    }

    /// `-y` for canonical `y`.
    fn negate(y: &[u64]) -> Limbs {
        if y.iter().all(|w| *w == 0) {
            return ZERO;
        }
        let mut out = [0u64; 5];
        let mut borrow = 0i64;
        for j in 0..5 {
            let d = P[j] as i64 - y[j] as i64 + borrow;
            borrow = d >> 52;
            out[j] = (d as u64) & MASK;
        }
        out
    }

    /// Words per point: x then y, `5·N` each.
    const fn stride<P: LaneCurve>() -> usize {
        10 * P::N
    }

    /// A coordinate from its words.
    fn coordinate<P: LaneCurve>(words: &[u64]) -> P::BaseField {
        let second = if P::N == 2 {
            element(&words[5..10])
        } else {
            Fq::from(0u64)
        };
        P::from_parts([element(&words[..5]), second])
    }

    /// The point of `words`, negated if `negated`.
    fn point<P: LaneCurve>(words: &[u64], negated: bool) -> Affine<P> {
        let half = 5 * P::N;
        let p = Affine::<P>::new_unchecked(
            coordinate::<P>(&words[..half]),
            coordinate::<P>(&words[half..2 * half]),
        );
        if negated {
            -p
        } else {
            p
        }
    }

    /// Appends `p` in this layout to `out`.
    fn push_point<P: LaneCurve>(p: &Affine<P>, out: &mut Vec<u64>) {
        for c in [&p.x, &p.y] {
            for part in &P::parts(c)[..P::N] {
                out.extend(limbs(*part));
            }
        }
    }

    pub(super) fn table<P: LaneCurve>(points: &[Affine<P>]) -> Option<super::Table<P>> {
        if !super::has_lanes() {
            return None;
        }
        if points.iter().any(|p| p.is_zero()) {
            return None;
        }
        let mut words = Vec::with_capacity(points.len() * stride::<P>());
        for p in points {
            push_point(p, &mut words);
        }
        Some(super::Table {
            words,
            curve: PhantomData,
        })
    }

    /// Writes the point an entry adds, `±table[index]`, to `dst`.
    fn copy_entry<P: LaneCurve>(dst: &mut [u64], table: &[u64], e: Entry) {
        let w = stride::<P>();
        dst.copy_from_slice(&table[e.index() * w..][..w]);
        if e.negated() {
            let half = w / 2;
            for part in 0..P::N {
                let y = &mut dst[half + 5 * part..][..5];
                let negated = negate(y);
                y.copy_from_slice(&negated);
            }
        }
    }

    /// Whether two points in this layout have the same x. The limbs are canonical, so the
    /// same words are the same x. (Compared word by word: a slice comparison here went
    /// through `memcmp`.)
    #[inline(always)]
    fn same_x<P: LaneCurve>(a: &[u64], b: &[u64]) -> bool {
        (0..5 * P::N).all(|k| a[k] == b[k])
    }

    /// Points in the vector layout, with a flag for the identity (whose words are unused).
    pub(super) struct LanePoints<P> {
        words: Vec<u64>,
        zero: Vec<bool>,
        curve: PhantomData<P>,
    }

    impl<P: LaneCurve> LanePoints<P> {
        /// An empty list.
        #[cfg(test)]
        pub(super) fn new() -> Self {
            LanePoints {
                words: Vec::new(),
                zero: Vec::new(),
                curve: PhantomData,
            }
        }

        fn words(&self, i: usize) -> &[u64] {
            &self.words[i * stride::<P>()..][..stride::<P>()]
        }
    }

    impl<P: LaneCurve> PointList for LanePoints<P> {
        type Curve = P;
        fn empty(&self, n: usize) -> Self {
            LanePoints {
                words: Vec::with_capacity(n * stride::<P>()),
                zero: Vec::with_capacity(n),
                curve: PhantomData,
            }
        }
        fn clear(&mut self) {
            self.words.clear();
            self.zero.clear();
        }
        fn len(&self) -> usize {
            self.zero.len()
        }
        fn is_zero(&self, i: usize) -> bool {
            self.zero[i]
        }
        fn same_x(&self, i: usize, j: usize) -> bool {
            same_x::<P>(self.words(i), self.words(j))
        }
        fn get(&self, i: usize) -> Affine<P> {
            if self.zero[i] {
                Affine::identity()
            } else {
                point::<P>(self.words(i), false)
            }
        }
        fn push(&mut self, p: &Affine<P>) {
            if p.is_zero() {
                self.words.resize(self.words.len() + stride::<P>(), 0);
                self.zero.push(true);
            } else {
                push_point(p, &mut self.words);
                self.zero.push(false);
            }
        }
        fn push_from(&mut self, from: &Self, i: usize) {
            self.words.extend_from_slice(from.words(i));
            self.zero.push(from.zero[i]);
        }
        fn set_from(&mut self, dst: usize, from: &Self, i: usize) {
            let w = stride::<P>();
            self.words[dst * w..][..w].copy_from_slice(from.words(i));
            self.zero[dst] = from.zero[i];
        }
        fn add_pairs(&mut self, from: &Self, pending: &[(usize, usize, usize)]) {
            let w = stride::<P>();
            let adds: Vec<LaneAdd> = pending
                .iter()
                .map(|&(dst, i, j)| LaneAdd {
                    a: i * w,
                    b: j * w,
                    dst: dst * w,
                    negate_b: false,
                })
                .collect();
            for &(dst, _, _) in pending {
                // The sum of two points with different x is not the identity.
                self.zero[dst] = false;
            }
            // SAFETY: `LanePoints` exist only for a `Table`, made only where AVX-512F and
            // IFMA were found. Every offset is of a whole point within `from` (for `a` and
            // `b`) or `self` (for `dst`, distinct), two different lists.
            unsafe {
                P::add_batch(
                    &adds,
                    from.words.as_ptr(),
                    from.words.as_ptr(),
                    self.words.as_mut_ptr(),
                )
            };
        }
    }

    /// The buckets of one MSM in the vector layout; the batch's additions run eight at a time.
    pub(super) struct VectorBuckets<'a, P> {
        table: &'a [u64],
        points: LanePoints<P>,
        batch: Vec<LaneAdd>,
    }

    impl<'a, P: LaneCurve> VectorBuckets<'a, P> {
        pub(super) fn new(table: &'a [u64], n_buckets: usize) -> Self {
            VectorBuckets {
                table,
                points: LanePoints {
                    words: vec![0; n_buckets * stride::<P>()],
                    zero: vec![true; n_buckets],
                    curve: PhantomData,
                },
                batch: Vec::new(),
            }
        }
    }

    impl<P: LaneCurve> Buckets for VectorBuckets<'_, P> {
        type List = LanePoints<P>;

        fn add_or_queue(&mut self, e: Entry) -> bool {
            let w = stride::<P>();
            let b = e.bucket();
            let p = &self.table[e.index() * w..][..w];
            let bucket = &mut self.points.words[b * w..][..w];
            if self.points.zero[b] {
                copy_entry::<P>(bucket, self.table, e);
                self.points.zero[b] = false;
                return false;
            }
            if same_x::<P>(p, bucket) {
                // Doubling or cancellation: rare, done at once with a full addition.
                let sum = (Projective::from(point::<P>(bucket, false))
                    + point::<P>(p, e.negated()))
                .into_affine();
                if sum.is_zero() {
                    self.points.zero[b] = true;
                } else {
                    let mut words = Vec::with_capacity(w);
                    push_point(&sum, &mut words);
                    bucket.copy_from_slice(&words);
                }
                return false;
            }
            self.batch.push(LaneAdd {
                a: b * w,
                b: e.index() * w,
                dst: b * w,
                negate_b: e.negated(),
            });
            true
        }

        fn queued(&self) -> usize {
            self.batch.len()
        }

        fn prefetch(&self, e: Entry) {
            let w = stride::<P>();
            let point = self.table[e.index() * w..].as_ptr();
            let bucket = self.points.words[e.bucket() * w..].as_ptr();
            // SAFETY: prefetches have no effect on memory; all four addresses lie within
            // (or at the end of) the two slices.
            unsafe {
                for p in [point, point.add(w - 1), bucket, bucket.add(w - 1)] {
                    _mm_prefetch::<_MM_HINT_T0>(p.cast());
                }
            }
        }

        fn apply(&mut self) {
            if self.batch.is_empty() {
                return;
            }
            let buckets = self.points.words.as_mut_ptr();
            // SAFETY: these buckets exist only for a `Table`, made only where AVX-512F and
            // IFMA were found. Every entry's point is within `table` and its bucket within
            // the buckets (the MSM made them so); `rounds` queues distinct buckets, and
            // `add_batch` reads every bucket before it writes any.
            unsafe {
                P::add_batch(
                    &self.batch,
                    buckets.cast_const(),
                    self.table.as_ptr(),
                    buckets,
                )
            };
            self.batch.clear();
        }

        fn list(&mut self) -> &mut LanePoints<P> {
            &mut self.points
        }

        fn push_entry(&self, list: &mut LanePoints<P>, e: Entry) {
            let start = list.words.len();
            list.words.resize(start + stride::<P>(), 0);
            copy_entry::<P>(&mut list.words[start..], self.table, e);
            list.zero.push(false);
        }

        fn into_list(self) -> LanePoints<P> {
            self.points
        }
    }

    /// One addition in lanes, `dst = a ± b`, each a word offset of a point.
    #[derive(Clone, Copy)]
    pub(crate) struct LaneAdd {
        a: usize,
        b: usize,
        dst: usize,
        negate_b: bool,
    }

    /// A coordinate in lanes: `N` field elements.
    type C<const N: usize> = [V; N];

    /// What the first pass over a batch keeps for the second, per eight additions.
    #[derive(Clone, Copy)]
    struct Group<const N: usize> {
        /// Where the sums go (word offsets).
        dst: __m512i,
        ax: C<N>,
        ay: C<N>,
        bx: C<N>,
        by: C<N>,
        dx: C<N>,
        /// The product of the earlier groups' `dx`.
        before: C<N>,
    }

    /// `dst = a ± b` for every addition, eight lanes at a time: a first pass gathers the
    /// points and multiplies up the differences of x, one inversion (of eight lanes) covers
    /// them all, and a second pass finishes the additions and scatters the sums. Points are
    /// `10·N` words each. Every point is read before any sum is written, so `dst` may be `a`.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and IFMA; every offset must be of a whole point within the
    /// memory at its pointer; the `dst` offsets must be distinct; the two points of an
    /// addition must not be the identity and must differ in x (canonical limbs).
    #[target_feature(enable = "avx512f,avx512ifma")]
    pub(super) unsafe fn add_batch<const N: usize>(
        adds: &[LaneAdd],
        a: *const u64,
        b: *const u64,
        dst: *mut u64,
    ) {
        let m = adds.len();
        if m == 0 {
            return;
        }
        let half = 5 * N;
        let mut groups: Vec<Group<N>> = Vec::with_capacity(m.div_ceil(8));
        let (a, b) = (a.cast::<i64>(), b.cast::<i64>());
        let mut acc = [splat(&ZERO); N];
        acc[0] = splat(&ONE);
        for g in 0..m.div_ceil(8) {
            // Lanes past the batch's end repeat its first addition; their sums are not stored.
            let mut a_offsets = [0i64; 8];
            let mut b_offsets = [0i64; 8];
            let mut dst_offsets = [0i64; 8];
            let mut negated = 0u8;
            for lane in 0..8 {
                let add = adds.get(g * 8 + lane).unwrap_or(&adds[0]);
                a_offsets[lane] = add.a as i64;
                b_offsets[lane] = add.b as i64;
                dst_offsets[lane] = add.dst as i64;
                negated |= u8::from(add.negate_b) << lane;
            }
            // SAFETY: 64-byte loads from arrays of eight i64.
            let (a_offsets, b_offsets, dst) = unsafe {
                (
                    _mm512_loadu_si512(a_offsets.as_ptr().cast()),
                    _mm512_loadu_si512(b_offsets.as_ptr().cast()),
                    _mm512_loadu_si512(dst_offsets.as_ptr().cast()),
                )
            };
            let (mut ax, mut ay, mut bx, mut by) = (
                [splat(&ZERO); N],
                [splat(&ZERO); N],
                [splat(&ZERO); N],
                [splat(&ZERO); N],
            );
            for k in 0..N {
                // SAFETY: the offsets are of whole points (the caller's promise), and each
                // coordinate part is five words inside them.
                unsafe {
                    ax[k] = gather(a, a_offsets, 5 * k);
                    ay[k] = gather(a, a_offsets, half + 5 * k);
                    bx[k] = gather(b, b_offsets, 5 * k);
                    by[k] = gather(b, b_offsets, half + 5 * k);
                }
                // -y ≤ p: a component may be zero in Fq2.
                by[k] = blend(negated, &by[k], &sub(&splat(&ZERO), &by[k], &P));
            }
            // The x differ, both below p: dx in (0, 2p).
            let dx = csub(&bx, &ax, &P);
            groups.push(Group {
                dst,
                ax,
                ay,
                bx,
                by,
                dx,
                before: acc,
            });
            acc = cmul(&acc, &dx);
        }
        let mut inv = cinvert(&acc);
        let dst_ptr = dst.cast::<i64>();
        for (g, group) in groups.iter().enumerate().rev() {
            let inv_dx = cmul(&inv, &group.before);
            inv = cmul(&inv, &group.dx);
            let lambda = cmul(&csub(&group.by, &group.ay, &P), &inv_dx);
            // x3 = λ² - a.x - b.x: λ² below 2p, so each part is in (0, 4p).
            let x3 = csub(&csub(&csquare(&lambda), &group.ax, &P2), &group.bx, &ZERO);
            let x3 = creduce(&creduce(&x3, &P2), &P);
            // y3 = λ·(a.x - x3) - a.y: each part in (0, 3p).
            let y3 = csub(&cmul(&lambda, &csub(&group.ax, &x3, &P)), &group.ay, &P);
            let y3 = creduce(&creduce(&y3, &P2), &P);
            let live = m - g * 8;
            let mask: __mmask8 = if live >= 8 { 0xff } else { (1u8 << live) - 1 };
            for k in 0..N {
                for j in 0..5 {
                    // SAFETY: the offsets are of distinct whole points at `dst`.
                    unsafe {
                        _mm512_mask_i64scatter_epi64::<8>(
                            dst_ptr.add(5 * k + j),
                            mask,
                            group.dst,
                            x3[k][j],
                        );
                        _mm512_mask_i64scatter_epi64::<8>(
                            dst_ptr.add(half + 5 * k + j),
                            mask,
                            group.dst,
                            y3[k][j],
                        );
                    }
                }
            }
        }
    }

    /// Five limbs of eight elements at `base + offsets[lane] + first` (in 64-bit words).
    ///
    /// # Safety
    /// Every lane's `offset + first + 4` must be within the allocation at `base`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn gather(base: *const i64, offsets: __m512i, first: usize) -> V {
        let mut v = [_mm512_setzero_si512(); 5];
        for (j, limb) in v.iter_mut().enumerate() {
            // SAFETY: passed on from the caller.
            *limb = unsafe { _mm512_i64gather_epi64::<8>(offsets, base.add(first + j)) };
        }
        v
    }

    /// The product in Fq (`N = 1`) or Fq2 (`N = 2`, `u² = -1`, Karatsuba) of parts below
    /// 2p, with parts below 2p.
    #[inline]
    #[target_feature(enable = "avx512f,avx512ifma")]
    fn cmul<const N: usize>(a: &C<N>, b: &C<N>) -> C<N> {
        let mut out = *a;
        if N == 1 {
            out[0] = mul(&a[0], &b[0]);
        } else {
            let v0 = mul(&a[0], &b[0]);
            let v1 = mul(&a[1], &b[1]);
            let t = mul(&add(&a[0], &a[1]), &add(&b[0], &b[1]));
            out[0] = reduce(&sub(&v0, &v1, &P2), &P2);
            out[1] = reduce(&reduce(&sub(&sub(&t, &v0, &P2), &v1, &P2), &P4), &P2);
        }
        out
    }

    /// The square, as [`cmul`]: `(a + bu)² = (a + b)(a - b) + 2ab·u`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512ifma")]
    fn csquare<const N: usize>(a: &C<N>) -> C<N> {
        let mut out = *a;
        if N == 1 {
            out[0] = mul(&a[0], &a[0]);
        } else {
            out[0] = mul(&add(&a[0], &a[1]), &sub(&a[0], &a[1], &P2));
            out[1] = mul(&add(&a[0], &a[0]), &a[1]);
        }
        out
    }

    /// The inverses of the eight lanes (non-zero, parts below 2p), parts below 2p. In Fq2,
    /// `(a + bu)⁻¹ = (a - bu)/(a² + b²)`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512ifma")]
    fn cinvert<const N: usize>(a: &C<N>) -> C<N> {
        let mut out = *a;
        if N == 1 {
            out[0] = invert_lanes(&a[0]);
        } else {
            let norm = reduce(&add(&mul(&a[0], &a[0]), &mul(&a[1], &a[1])), &P2);
            let t = invert_lanes(&norm);
            out[0] = mul(&a[0], &t);
            out[1] = sub(&splat(&ZERO), &mul(&a[1], &t), &P2);
        }
        out
    }

    /// [`sub`] part by part.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn csub<const N: usize>(a: &C<N>, b: &C<N>, k: &Limbs) -> C<N> {
        let mut out = *a;
        for (o, (x, y)) in out.iter_mut().zip(a.iter().zip(b)) {
            *o = sub(x, y, k);
        }
        out
    }

    /// [`reduce`] part by part.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn creduce<const N: usize>(a: &C<N>, k: &Limbs) -> C<N> {
        let mut out = *a;
        for (o, x) in out.iter_mut().zip(a) {
            *o = reduce(x, k);
        }
        out
    }

    /// The inverses of the eight lanes (all non-zero, below 2p), in this layout: one
    /// inversion for the eight, in arkworks. The lanes' canonical limbs read as arkworks'
    /// internal form are the elements 16·x; `(16·x)⁻¹·256` is kept internally as
    /// `x⁻¹·2²⁶⁰`, which is `x⁻¹` in this layout.
    #[target_feature(enable = "avx512f,avx512ifma")]
    fn invert_lanes(a: &V) -> V {
        let mut lanes = [[0u64; 8]; 5];
        store8(&mut lanes, &reduce(a, &P));
        let elements: [Fq; 8] =
            std::array::from_fn(|l| Fq::new_unchecked(BigInt(to64(lane(&lanes, l)))));
        let mut before = [Fq::from(0u64); 8];
        let mut total = Fq::from(1u64);
        for (b, e) in before.iter_mut().zip(&elements) {
            *b = total;
            total *= e;
        }
        // The product of non-zero elements is non-zero.
        let mut inv = fq_inverse(&total).unwrap_or_default() * TWO_FIFTY_SIX;
        for l in (0..8).rev() {
            set_lane(&mut lanes, l, &to52((inv * before[l]).0 .0));
            inv *= elements[l];
        }
        load8(&lanes)
    }

    /// Lane `l` of eight limb-sliced elements.
    fn lane(lanes: &Lanes8, l: usize) -> Limbs {
        [
            lanes[0][l],
            lanes[1][l],
            lanes[2][l],
            lanes[3][l],
            lanes[4][l],
        ]
    }

    /// Sets lane `l` of eight limb-sliced elements.
    fn set_lane(lanes: &mut Lanes8, l: usize, limbs: &Limbs) {
        for (plane, limb) in lanes.iter_mut().zip(limbs) {
            plane[l] = *limb;
        }
    }

    /// `l` in every lane.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn splat(l: &Limbs) -> V {
        let mut v = [_mm512_setzero_si512(); 5];
        for (limb, x) in v.iter_mut().zip(l) {
            *limb = _mm512_set1_epi64(*x as i64);
        }
        v
    }

    /// Lanes of `b` where `mask` is set, of `a` elsewhere.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn blend(mask: __mmask8, a: &V, b: &V) -> V {
        let mut v = *a;
        for (limb, y) in v.iter_mut().zip(b) {
            *limb = _mm512_mask_blend_epi64(mask, *limb, *y);
        }
        v
    }

    /// Carries limbs that may be negative or above 2⁵² into the next one; the top limb keeps
    /// the rest (its sign is the value's).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn carry(mut t: V) -> V {
        let mask = _mm512_set1_epi64(MASK as i64);
        for j in 0..4 {
            t[j + 1] = _mm512_add_epi64(t[j + 1], _mm512_srai_epi64::<52>(t[j]));
            t[j] = _mm512_and_si512(t[j], mask);
        }
        t
    }

    /// `a + b`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn add(a: &V, b: &V) -> V {
        let mut t = *a;
        for (x, y) in t.iter_mut().zip(b) {
            *x = _mm512_add_epi64(*x, *y);
        }
        carry(t)
    }

    /// `a + k - b` with `k` a multiple of p (as limbs): callers pick `k` so that the result is
    /// not negative.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn sub(a: &V, b: &V, k: &Limbs) -> V {
        let mut t = *a;
        for j in 0..5 {
            t[j] = _mm512_sub_epi64(_mm512_add_epi64(t[j], _mm512_set1_epi64(k[j] as i64)), b[j]);
        }
        carry(t)
    }

    /// `a - k` where that is not negative, else `a`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn reduce(a: &V, k: &Limbs) -> V {
        let mut t = *a;
        for j in 0..5 {
            t[j] = _mm512_sub_epi64(t[j], _mm512_set1_epi64(k[j] as i64));
        }
        let t = carry(t);
        let negative = _mm512_cmplt_epi64_mask(t[4], _mm512_setzero_si512());
        blend(negative, &t, a)
    }

    /// Montgomery product `a·b/2²⁶⁰ mod p` in Fq (see [`mul_mod`]).
    #[inline]
    #[target_feature(enable = "avx512f,avx512ifma")]
    fn mul(a: &V, b: &V) -> V {
        mul_mod(a, b, &P, PINV)
    }

    /// Montgomery product `a·b/2²⁶⁰ mod m` of inputs below 4m, below 2m, for a modulus below
    /// 2²⁵⁴ with `minv = -m⁻¹ mod 2⁵²`. Each of the five steps adds `a·bᵢ` and the multiple
    /// `q·m` that clears the lowest limb, then drops it; the limbs may pass 2⁵² (never 2⁶⁴)
    /// until the final carry.
    #[inline]
    #[target_feature(enable = "avx512f,avx512ifma")]
    fn mul_mod(a: &V, b: &V, m: &Limbs, minv: u64) -> V {
        let z = _mm512_setzero_si512();
        let p = splat(m);
        let pinv = _mm512_set1_epi64(minv as i64);
        let mut t = [z; 5];
        for bi in b {
            let t0 = _mm512_madd52lo_epu64(t[0], a[0], *bi);
            let m = _mm512_madd52lo_epu64(z, t0, pinv);
            let t0 = _mm512_madd52lo_epu64(t0, p[0], m);
            let mut n = [z; 5];
            n[0] = _mm512_add_epi64(t[1], _mm512_srli_epi64::<52>(t0));
            n[1..4].copy_from_slice(&t[2..5]);
            for j in 1..5 {
                n[j - 1] = _mm512_madd52lo_epu64(n[j - 1], a[j], *bi);
                n[j - 1] = _mm512_madd52lo_epu64(n[j - 1], p[j], m);
            }
            for j in 0..5 {
                n[j] = _mm512_madd52hi_epu64(n[j], a[j], *bi);
                n[j] = _mm512_madd52hi_epu64(n[j], p[j], m);
            }
            t = n;
        }
        carry(t)
    }

    // The coset transform of `fft` over Fr, eight elements to a vector.

    const R: Limbs = times(<Fr as PrimeField>::MODULUS.0, 1);
    const R2: Limbs = times(<Fr as PrimeField>::MODULUS.0, 2);
    const RINV: u64 = neg_inverse_52(<Fr as PrimeField>::MODULUS.0[0]);
    /// 16 in Fr: as in Fq, arkworks' `x·2²⁵⁶` read in this layout is x/16.
    const SIXTEEN_R: Fr = MontFp!("16");

    /// Eight Fr elements, limb-sliced: `[limb][lane]`.
    type Lanes8 = [[u64; 8]; 5];

    /// `x` in this layout (its true value, not x/16).
    fn r_limbs(x: Fr) -> Limbs {
        to52((x * SIXTEEN_R).0 .0)
    }

    /// Eight elements' limbs as one vector per limb.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load8(l: &Lanes8) -> V {
        let mut v = [_mm512_setzero_si512(); 5];
        for (limb, plane) in v.iter_mut().zip(l) {
            // SAFETY: a 64-byte load from an array of eight u64.
            *limb = unsafe { _mm512_loadu_si512(plane.as_ptr().cast()) };
        }
        v
    }

    /// Eight elements from one vector per limb.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn store8(l: &mut Lanes8, v: &V) {
        for (plane, limb) in l.iter_mut().zip(v) {
            // SAFETY: a 64-byte store into an array of eight u64.
            unsafe { _mm512_storeu_si512(plane.as_mut_ptr().cast(), *limb) };
        }
    }

    /// Elements' limbs, eight to a group (the last group padded with zeros).
    fn lanes_of(values: impl Iterator<Item = Limbs>) -> Vec<Lanes8> {
        let mut out: Vec<Lanes8> = Vec::new();
        for (i, x) in values.enumerate() {
            if i % 8 == 0 {
                out.push([[0u64; 8]; 5]);
            }
            if let Some(group) = out.last_mut() {
                set_lane(group, i % 8, &x);
            }
        }
        out
    }

    /// The coset transform's tables in lanes: the stages with half ≥ 8 work on eight
    /// neighbouring butterflies at a time; the three stages on each side with half < 8 (and
    /// the scaling between them) work on groups of 64 elements transposed 8 × 8, so that the
    /// butterflies pair whole vectors.
    pub(crate) struct CosetLanes {
        n: usize,
        /// Per inverse stage with half `h ≥ 8` (largest first): `ω^{-i·n/2h}`, `i < h`.
        inverse: Vec<Vec<Lanes8>>,
        /// Per forward stage with half `h ≥ 8` (smallest first): `ω^{i·n/2h}`, `i < h`.
        forward: Vec<Vec<Lanes8>>,
        /// The small stages' twiddles: `ω^{∓k·n/8}` for `k < 4` (half 4), `ω^{∓k·n/4}` for
        /// `k < 2` (half 2), inverse then forward.
        small_inverse: [Limbs; 6],
        small_forward: [Limbs; 6],
        /// The coset scaling in the transposed order: group `s`, vector `k`, lane `l` holds
        /// the factor of element `64s + 8l + k`.
        scale: Vec<Lanes8>,
    }

    impl CosetLanes {
        /// From `fft`'s tables (`ωⁱ`, `ω⁻ⁱ` for `i < n/2`, the scale in bit-reversed order);
        /// `None` below 64 points or without AVX-512 IFMA.
        pub(crate) fn new(n: usize, forward: &[Fr], inverse: &[Fr], scale: &[Fr]) -> Option<Self> {
            if !super::has_lanes() {
                return None;
            }
            if n < 64
                || !n.is_power_of_two()
                || forward.len() != n / 2
                || inverse.len() != n / 2
                || scale.len() != n
            {
                return None;
            }
            let stage = |table: &[Fr], half: usize| {
                let stride = n / (2 * half);
                lanes_of((0..half).map(|i| r_limbs(table[i * stride])))
            };
            let halves: Vec<usize> = (3..n.trailing_zeros()).map(|b| 1usize << b).collect();
            let small = |table: &[Fr]| {
                [
                    r_limbs(table[0]),
                    r_limbs(table[n / 8]),
                    r_limbs(table[2 * n / 8]),
                    r_limbs(table[3 * n / 8]),
                    r_limbs(table[0]),
                    r_limbs(table[n / 4]),
                ]
            };
            Some(CosetLanes {
                n,
                inverse: halves.iter().rev().map(|h| stage(inverse, *h)).collect(),
                forward: halves.iter().map(|h| stage(forward, *h)).collect(),
                small_inverse: small(inverse),
                small_forward: small(forward),
                scale: lanes_of((0..n).map(|i| {
                    let (s, k, l) = (i / 64, (i / 8) % 8, i % 8);
                    r_limbs(scale[64 * s + 8 * l + k])
                })),
            })
        }

        /// Evaluations on `H` to evaluations on `g·H`, in place (as `fft::CosetFft::to_coset`).
        /// `v` must have the domain's `n` points (`CosetFft::to_coset` checks).
        pub(crate) fn to_coset(&self, v: &mut [Fr]) {
            // arkworks' internal form, read in this layout, is x/16: the transform is
            // linear, so the results come out as arkworks' internal form of theirs.
            let mut data = lanes_of(v.iter().map(|x| to52(x.0 .0)));
            // SAFETY: `new` found AVX-512F and IFMA on this CPU.
            unsafe { self.transform(&mut data) };
            for (chunk, l) in v.chunks_mut(8).zip(&data) {
                for (i, x) in chunk.iter_mut().enumerate() {
                    *x = Fr::new_unchecked(BigInt(to64(lane(l, i))));
                }
            }
        }

        #[target_feature(enable = "avx512f,avx512ifma")]
        fn transform(&self, data: &mut [Lanes8]) {
            let groups = self.n / 8;
            // Inverse transform, decimation in frequency, halves n/2 down to 8.
            for (s, twiddles) in self.inverse.iter().enumerate() {
                let half = self.n >> (s + 1);
                let span = half / 8;
                for block in (0..groups).step_by(2 * span) {
                    for (i, tw) in twiddles.iter().enumerate() {
                        let (lo, hi) = (block + i, block + i + span);
                        let (u, w) = dif(&load8(&data[lo]), &load8(&data[hi]), Some(&load8(tw)));
                        store8(&mut data[lo], &u);
                        store8(&mut data[hi], &w);
                    }
                }
            }
            // Halves 4, 2, 1; the scaling; halves 1, 2, 4: on 64 elements transposed.
            let inverse = self.small_inverse.map(|l| splat(&l));
            let forward = self.small_forward.map(|l| splat(&l));
            for (s, scale) in self.scale.chunks_exact(8).enumerate() {
                let mut t = [[_mm512_setzero_si512(); 5]; 8];
                for (k, row) in t.iter_mut().enumerate() {
                    *row = load8(&data[8 * s + k]);
                }
                transpose(&mut t);
                // Inverse: half 4 (twiddles ω^{-k·n/8}), half 2 (ω^{-k·n/4}), half 1 (1).
                for (half, tw) in [
                    (4usize, &inverse[..4]),
                    (2, &inverse[4..6]),
                    (1, &inverse[..1]),
                ] {
                    for k in 0..8 {
                        if k % (2 * half) < half {
                            let tw = (half > 1).then(|| &tw[k % half]);
                            (t[k], t[k + half]) = dif(&t[k], &t[k + half], tw);
                        }
                    }
                }
                for (k, row) in t.iter_mut().enumerate() {
                    *row = mul_r(row, &load8(&scale[k]));
                }
                // Forward: half 1, 2, 4.
                for (half, tw) in [
                    (1usize, &forward[..1]),
                    (2, &forward[4..6]),
                    (4, &forward[..4]),
                ] {
                    for k in 0..8 {
                        if k % (2 * half) < half {
                            let tw = (half > 1).then(|| &tw[k % half]);
                            (t[k], t[k + half]) = dit(&t[k], &t[k + half], tw);
                        }
                    }
                }
                transpose(&mut t);
                for (k, row) in t.iter().enumerate() {
                    store8(&mut data[8 * s + k], row);
                }
            }
            // Forward transform, decimation in time, halves 8 up to n/2.
            for (s, twiddles) in self.forward.iter().enumerate() {
                let half = 8 << s;
                let span = half / 8;
                for block in (0..groups).step_by(2 * span) {
                    for (i, tw) in twiddles.iter().enumerate() {
                        let (lo, hi) = (block + i, block + i + span);
                        let (u, w) = dit(&load8(&data[lo]), &load8(&data[hi]), Some(&load8(tw)));
                        store8(&mut data[lo], &u);
                        store8(&mut data[hi], &w);
                    }
                }
            }
            for group in data.iter_mut() {
                let v = reduce(&load8(group), &R);
                store8(group, &v);
            }
        }
    }

    /// The inverse transform's butterfly: `(u + w, (u - w)·tw)`, no multiplication for a
    /// twiddle of 1 (`None`). Inputs and outputs below 2r.
    #[inline]
    #[target_feature(enable = "avx512f,avx512ifma")]
    fn dif(u: &V, w: &V, tw: Option<&V>) -> (V, V) {
        let d = sub(u, w, &R2);
        let d = match tw {
            Some(tw) => mul_r(&d, tw),
            None => reduce(&d, &R2),
        };
        (reduce(&add(u, w), &R2), d)
    }

    /// The forward transform's butterfly: `(u + w·tw, u - w·tw)`, as [`dif`].
    #[inline]
    #[target_feature(enable = "avx512f,avx512ifma")]
    fn dit(u: &V, w: &V, tw: Option<&V>) -> (V, V) {
        let x = match tw {
            Some(tw) => mul_r(w, tw),
            None => *w,
        };
        (reduce(&add(u, &x), &R2), reduce(&sub(u, &x, &R2), &R2))
    }

    /// `a·b/2²⁶⁰ mod r` in Fr.
    #[inline]
    #[target_feature(enable = "avx512f,avx512ifma")]
    fn mul_r(a: &V, b: &V) -> V {
        mul_mod(a, b, &R, RINV)
    }

    /// Transposes eight rows of eight 64-bit lanes, limb by limb: row `k`, lane `l` goes to
    /// row `l`, lane `k`. Three rounds swap 1 × 1, 2 × 2 and 4 × 4 blocks between rows.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn transpose(rows: &mut [V; 8]) {
        let pick = |i: [i64; 8]| _mm512_setr_epi64(i[0], i[1], i[2], i[3], i[4], i[5], i[6], i[7]);
        let rounds = [
            (
                1usize,
                pick([0, 8, 2, 10, 4, 12, 6, 14]),
                pick([1, 9, 3, 11, 5, 13, 7, 15]),
            ),
            (
                2,
                pick([0, 1, 8, 9, 4, 5, 12, 13]),
                pick([2, 3, 10, 11, 6, 7, 14, 15]),
            ),
            (
                4,
                pick([0, 1, 2, 3, 8, 9, 10, 11]),
                pick([4, 5, 6, 7, 12, 13, 14, 15]),
            ),
        ];
        for (step, lo, hi) in rounds {
            for k in 0..8 {
                if k % (2 * step) < step {
                    let (first, second) = (rows[k], rows[k + step]);
                    for (j, (a, b)) in first.iter().zip(&second).enumerate() {
                        rows[k][j] = _mm512_permutex2var_epi64(*a, lo, *b);
                        rows[k + step][j] = _mm512_permutex2var_epi64(*a, hi, *b);
                    }
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use ark_bn254::Fq2;
        use ark_ff::{Field, Zero};

        /// The eight elements of `v`. (Safe to call: tests run it only where the CPU has
        /// AVX-512F.)
        fn lanes(v: &V) -> [Limbs; 8] {
            let mut l = [[0u64; 8]; 5];
            // SAFETY: callers checked the CPU for AVX-512F.
            unsafe { store8(&mut l, v) };
            std::array::from_fn(|i| lane(&l, i))
        }

        #[target_feature(enable = "avx512f")]
        fn load(values: &[Limbs; 8]) -> V {
            let mut l = [[0u64; 8]; 5];
            for (i, x) in values.iter().enumerate() {
                set_lane(&mut l, i, x);
            }
            load8(&l)
        }

        /// The batched list sums and weighted sums of `batch_add`, in lanes.
        #[test]
        fn lane_lists_sum_like_arkworks_points() {
            if !has_ifma() {
                eprintln!("no AVX-512 IFMA on this CPU: the portable path is tested instead");
                return;
            }
            use super::super::super::batch_add::tests::{check_lists, check_weighted};
            check_lists(LanePoints::<ark_bn254::g1::Config>::new());
            check_lists(LanePoints::<ark_bn254::g2::Config>::new());
            check_weighted(LanePoints::<ark_bn254::g1::Config>::new());
            check_weighted(LanePoints::<ark_bn254::g2::Config>::new());
        }

        fn has_ifma() -> bool {
            super::super::has_lanes()
        }

        /// Products, differences and inverses in the vector layout against arkworks, for
        /// random elements, 0, 1, p-1, and non-canonical inputs (x + p, which the products
        /// must accept).
        #[test]
        fn lane_arithmetic_matches_arkworks() {
            if !has_ifma() {
                eprintln!("no AVX-512 IFMA on this CPU: the portable path is tested instead");
                return;
            }
            // Full-size elements that look random.
            let mut xs: Vec<Fq> = (0..64u64)
                .map(|i| Fq::from(i + 7).pow([1000 + i]))
                .collect();
            xs[0] = Fq::from(0u64);
            xs[1] = Fq::from(1u64);
            xs[2] = -Fq::from(1u64);
            let plus_p = |l: Limbs| {
                let mut s = [0u64; 5];
                let mut c = 0;
                for j in 0..5 {
                    let v = l[j] + P[j] + c;
                    s[j] = v & MASK;
                    c = v >> 52;
                }
                s
            };
            for chunk in xs.chunks(8).collect::<Vec<_>>().windows(2) {
                let (a, b) = (chunk[0], chunk[1]);
                let al: [Limbs; 8] = std::array::from_fn(|l| limbs(a[l]));
                // Every other lane non-canonical.
                let bl: [Limbs; 8] = std::array::from_fn(|l| {
                    if l % 2 == 0 {
                        plus_p(limbs(b[l]))
                    } else {
                        limbs(b[l])
                    }
                });
                // SAFETY: the CPU has AVX-512F and IFMA (checked above).
                let (prod, diff) = unsafe {
                    let (va, vb) = (load(&al), load(&bl));
                    (
                        lanes(&reduce(&mul(&va, &vb), &P)),
                        lanes(&reduce(&reduce(&sub(&va, &vb, &P2), &P2), &P)),
                    )
                };
                for l in 0..8 {
                    assert_eq!(element(&prod[l]), a[l] * b[l], "product, lane {l}");
                    assert_eq!(element(&diff[l]), a[l] - b[l], "difference, lane {l}");
                }
                if b.iter().all(|x| *x != Fq::from(0u64)) {
                    let bl: [Limbs; 8] = std::array::from_fn(|l| limbs(b[l]));
                    // SAFETY: as above.
                    let inv = unsafe { lanes(&reduce(&invert_lanes(&load(&bl)), &P)) };
                    for l in 0..8 {
                        assert_eq!(element(&inv[l]), b[l].inverse().unwrap(), "inverse {l}");
                    }
                }
            }
            // Fq2: products, squares and inverses, the components taken from the same list
            // (so with zero, one and -1 parts).
            let fq2: Vec<Fq2> = (0..xs.len())
                .map(|i| Fq2::new(xs[i], xs[(i * 7 + 3) % xs.len()]))
                .collect();
            for chunk in fq2.chunks(8).collect::<Vec<_>>().windows(2) {
                let (a, b) = (chunk[0], chunk[1]);
                let load2 = |v: &[Fq2]| -> [V; 2] {
                    let c0: [Limbs; 8] = std::array::from_fn(|l| limbs(v[l].c0));
                    let c1: [Limbs; 8] = std::array::from_fn(|l| limbs(v[l].c1));
                    // SAFETY: the CPU has AVX-512F and IFMA (checked above).
                    unsafe { [load(&c0), load(&c1)] }
                };
                let read2 = |c: &[V; 2]| -> [Fq2; 8] {
                    // SAFETY: as above.
                    let (c0, c1) =
                        unsafe { (lanes(&reduce(&c[0], &P)), lanes(&reduce(&c[1], &P))) };
                    std::array::from_fn(|l| Fq2::new(element(&c0[l]), element(&c1[l])))
                };
                let (va, vb) = (load2(a), load2(b));
                // SAFETY: as above.
                let (prod, square) = unsafe { (read2(&cmul(&va, &vb)), read2(&csquare(&va))) };
                for l in 0..8 {
                    assert_eq!(prod[l], a[l] * b[l], "Fq2 product, lane {l}");
                    assert_eq!(square[l], a[l].square(), "Fq2 square, lane {l}");
                }
                if b.iter().all(|x| !x.is_zero()) {
                    // SAFETY: as above.
                    let inv = read2(&unsafe { cinvert(&vb) });
                    for l in 0..8 {
                        assert_eq!(inv[l], b[l].inverse().unwrap(), "Fq2 inverse {l}");
                    }
                }
            }
            for x in &xs {
                assert_eq!(element(&limbs(*x)), *x);
                if !x.is_zero() {
                    assert_eq!(element(&negate(&limbs(*x))), -*x);
                }
            }
        }
    }
}
