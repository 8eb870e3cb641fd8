//! G1 bucket additions eight at a time with AVX-512 IFMA (52-bit multiply-add), on the x86_64
//! CPUs that have it: field elements in radix 2⁵² and Montgomery form with R = 2²⁶⁰, one
//! vector lane per addition. A multiplication costs about 3 ns per lane here, against 16 ns
//! for arkworks' 64-bit limb product. Elsewhere (aarch64, older x86) [`Table::new`] returns
//! `None` and `msm` keeps its portable path; the results are the same point either way.
//!
//! The layout: a table point is its x limbs then its y limbs, each coordinate canonical
//! (below p) in the R = 2²⁶⁰ form. Between operations a value may be any multiple of p
//! larger (the bounds are in the comments); multiplications take inputs below 4p and return
//! values below 2p, so only the stored coordinates are reduced.

use ark_bn254::G1Affine;

#[cfg(not(target_arch = "x86_64"))]
use super::msm::{Buckets, Entry};

/// A G1 table in the vector layout, or nothing where this CPU cannot use one.
pub(crate) struct Table {
    #[cfg(target_arch = "x86_64")]
    points: Vec<[u64; 10]>,
    #[cfg(not(target_arch = "x86_64"))]
    never: std::convert::Infallible,
}

impl Table {
    /// The table's points in the vector layout, if this CPU has AVX-512 IFMA (and no point is
    /// the identity, which fixed-base tables never hold).
    pub(crate) fn new(points: &[G1Affine]) -> Option<Table> {
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

    /// Buckets for [`msm`](super::msm)'s rounds of additions over this table.
    pub(crate) fn buckets(&self, n_buckets: usize) -> VectorBuckets<'_> {
        #[cfg(target_arch = "x86_64")]
        {
            x86::VectorBuckets::new(&self.points, n_buckets)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = n_buckets;
            match self.never {}
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::VectorBuckets;

/// Never built: no vector path on this architecture.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) enum VectorBuckets<'a> {
    #[doc(hidden)]
    _Never(std::convert::Infallible, std::marker::PhantomData<&'a ()>),
}

#[cfg(not(target_arch = "x86_64"))]
impl VectorBuckets<'_> {
    /// Never called.
    pub(crate) fn into_affine(self) -> Vec<G1Affine> {
        match self {
            VectorBuckets::_Never(never, _) => match never {},
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
impl Buckets for VectorBuckets<'_> {
    fn add_or_queue(&mut self, _e: Entry) -> bool {
        match *self {
            VectorBuckets::_Never(never, _) => match never {},
        }
    }
    fn queued(&self) -> usize {
        match *self {
            VectorBuckets::_Never(never, _) => match never {},
        }
    }
    fn apply(&mut self) {
        match *self {
            VectorBuckets::_Never(never, _) => match never {},
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use ark_bn254::{Fq, G1Affine, G1Projective};
    use ark_ec::{AffineRepr, CurveGroup};
    use ark_ff::{BigInt, MontFp, PrimeField};

    use super::super::inverse::fq_inverse;
    use super::super::msm::{Buckets, Entry};

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

    const P: Limbs = to52(<Fq as PrimeField>::MODULUS.0);
    const P2: Limbs = to52([
        <Fq as PrimeField>::MODULUS.0[0] << 1,
        <Fq as PrimeField>::MODULUS.0[1] << 1 | <Fq as PrimeField>::MODULUS.0[0] >> 63,
        <Fq as PrimeField>::MODULUS.0[2] << 1 | <Fq as PrimeField>::MODULUS.0[1] >> 63,
        <Fq as PrimeField>::MODULUS.0[3] << 1 | <Fq as PrimeField>::MODULUS.0[2] >> 63,
    ]);
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
    fn element(l: &Limbs) -> Fq {
        Fq::new_unchecked(BigInt(to64(*l))) * INV_SIXTEEN
    }

    /// `p - y` for canonical non-zero `y`.
    fn negate(y: &Limbs) -> Limbs {
        let mut out = [0u64; 5];
        let mut borrow = 0i64;
        for j in 0..5 {
            let d = P[j] as i64 - y[j] as i64 + borrow;
            borrow = d >> 52;
            out[j] = (d as u64) & MASK;
        }
        out
    }

    fn point(p: &[u64; 10], negated: bool) -> G1Affine {
        let (x, y) = (element(&first(p)), element(&second(p)));
        let p = G1Affine::new_unchecked(x, y);
        if negated {
            -p
        } else {
            p
        }
    }

    fn first(p: &[u64; 10]) -> Limbs {
        [p[0], p[1], p[2], p[3], p[4]]
    }

    fn second(p: &[u64; 10]) -> Limbs {
        [p[5], p[6], p[7], p[8], p[9]]
    }

    fn layout(p: &G1Affine) -> [u64; 10] {
        let (x, y) = (limbs(p.x), limbs(p.y));
        [x[0], x[1], x[2], x[3], x[4], y[0], y[1], y[2], y[3], y[4]]
    }

    pub(super) fn table(points: &[G1Affine]) -> Option<super::Table> {
        if !(is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512ifma")) {
            return None;
        }
        if points.iter().any(|p| p.is_zero()) {
            return None;
        }
        Some(super::Table {
            points: points.iter().map(layout).collect(),
        })
    }

    /// The buckets of one MSM in the vector layout; the batch's additions run eight at a time.
    pub(crate) struct VectorBuckets<'a> {
        table: &'a [[u64; 10]],
        buckets: Vec<[u64; 10]>,
        filled: Vec<bool>,
        batch: Vec<Entry>,
        groups: Vec<Group>,
    }

    /// What the first pass over a batch keeps for the second, per eight additions.
    #[derive(Clone, Copy)]
    struct Group {
        /// The buckets' offsets in `buckets` (in 64-bit words).
        offsets: __m512i,
        px: V,
        py: V,
        bx: V,
        by: V,
        dx: V,
        /// The product of the earlier groups' `dx`.
        before: V,
    }

    impl<'a> VectorBuckets<'a> {
        pub(super) fn new(table: &'a [[u64; 10]], n_buckets: usize) -> Self {
            VectorBuckets {
                table,
                buckets: vec![[0; 10]; n_buckets],
                filled: vec![false; n_buckets],
                batch: Vec::new(),
                groups: Vec::new(),
            }
        }

        /// The buckets as arkworks points (the identity for an empty bucket).
        pub(crate) fn into_affine(self) -> Vec<G1Affine> {
            self.buckets
                .iter()
                .zip(&self.filled)
                .map(|(b, filled)| {
                    if *filled {
                        point(b, false)
                    } else {
                        G1Affine::identity()
                    }
                })
                .collect()
        }
    }

    impl Buckets for VectorBuckets<'_> {
        fn add_or_queue(&mut self, e: Entry) -> bool {
            let b = e.bucket();
            let p = &self.table[e.index()];
            if !self.filled[b] {
                let mut placed = *p;
                if e.negated() {
                    placed[5..].copy_from_slice(&negate(&second(p)));
                }
                self.buckets[b] = placed;
                self.filled[b] = true;
                return false;
            }
            if p[..5] == self.buckets[b][..5] {
                // Doubling or cancellation: rare, done at once with a full addition.
                let sum = (G1Projective::from(point(&self.buckets[b], false))
                    + point(p, e.negated()))
                .into_affine();
                if sum.is_zero() {
                    self.filled[b] = false;
                } else {
                    self.buckets[b] = layout(&sum);
                }
                return false;
            }
            self.batch.push(e);
            true
        }

        fn queued(&self) -> usize {
            self.batch.len()
        }

        fn apply(&mut self) {
            if self.batch.is_empty() {
                return;
            }
            // SAFETY: a `Table` (so these buckets) exists only where `table` found AVX-512F
            // and IFMA on this CPU. Every entry's point and bucket index is within `table`
            // and `buckets` (the MSM made them so), and the batch's buckets are distinct.
            unsafe { apply_batch(self.table, &mut self.buckets, &self.batch, &mut self.groups) };
            self.batch.clear();
        }
    }

    /// `bucket += ±point` for every entry of the batch, eight lanes at a time: a first pass
    /// gathers the points and multiplies up the differences of x, one inversion (of eight
    /// lanes, in arkworks) covers them all, and a second pass finishes the additions.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and IFMA; every entry's index must be within `table` and
    /// its bucket within `buckets`; the entries' buckets must be distinct.
    #[target_feature(enable = "avx512f,avx512ifma")]
    unsafe fn apply_batch(
        table: &[[u64; 10]],
        buckets: &mut [[u64; 10]],
        batch: &[Entry],
        groups: &mut Vec<Group>,
    ) {
        let m = batch.len();
        groups.clear();
        let table_ptr = table.as_ptr().cast::<i64>();
        let mut acc = splat(&ONE);
        for g in 0..m.div_ceil(8) {
            // Lanes past the batch's end repeat its first entry; their results are not stored.
            let mut point_offsets = [0i64; 8];
            let mut bucket_offsets = [0i64; 8];
            let mut negated = 0u8;
            for lane in 0..8 {
                let e = batch.get(g * 8 + lane).unwrap_or(&batch[0]);
                point_offsets[lane] = e.index() as i64 * 10;
                bucket_offsets[lane] = e.bucket() as i64 * 10;
                negated |= u8::from(e.negated()) << lane;
            }
            let point_offsets = _mm512_loadu_si512(point_offsets.as_ptr().cast());
            let offsets = _mm512_loadu_si512(bucket_offsets.as_ptr().cast());
            let buckets_ptr = buckets.as_ptr().cast::<i64>();
            let px = gather(table_ptr, point_offsets, 0);
            let py = gather(table_ptr, point_offsets, 5);
            let bx = gather(buckets_ptr, offsets, 0);
            let by = gather(buckets_ptr, offsets, 5);
            let py = blend(negated, &py, &sub(&splat(&ZERO), &py, &P));
            // p.x ≠ b.x (checked before queuing), both below p: dx in (0, 2p).
            let dx = sub(&px, &bx, &P);
            groups.push(Group {
                offsets,
                px,
                py,
                bx,
                by,
                dx,
                before: acc,
            });
            acc = mul(&acc, &dx);
        }
        let mut inv = invert_lanes(&acc);
        let buckets_ptr = buckets.as_mut_ptr().cast::<i64>();
        for (g, group) in groups.iter().enumerate().rev() {
            let inv_dx = mul(&inv, &group.before);
            inv = mul(&inv, &group.dx);
            let dy = sub(&group.py, &group.by, &P);
            let lambda = mul(&dy, &inv_dx);
            // x3 = λ² - b.x - p.x: λ² below 2p, so the sum is in (0, 4p).
            let x3 = sub(
                &sub(&mul(&lambda, &lambda), &group.bx, &P2),
                &group.px,
                &ZERO,
            );
            let x3 = reduce(&reduce(&x3, &P2), &P);
            // y3 = λ·(b.x - x3) - b.y: in (0, 3p).
            let y3 = sub(&mul(&lambda, &sub(&group.bx, &x3, &P)), &group.by, &P);
            let y3 = reduce(&reduce(&y3, &P2), &P);
            let live = m - g * 8;
            let mask: __mmask8 = if live >= 8 { 0xff } else { (1u8 << live) - 1 };
            for j in 0..5 {
                _mm512_mask_i64scatter_epi64::<8>(buckets_ptr.add(j), mask, group.offsets, x3[j]);
                _mm512_mask_i64scatter_epi64::<8>(
                    buckets_ptr.add(5 + j),
                    mask,
                    group.offsets,
                    y3[j],
                );
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
            *limb = _mm512_i64gather_epi64::<8>(offsets, base.add(first + j));
        }
        v
    }

    /// The inverses of the eight lanes (all non-zero, below 2p), in this layout: one
    /// inversion for the eight, in arkworks. The lanes' canonical limbs read as arkworks'
    /// internal form are the elements 16·x; `(16·x)⁻¹·256` is kept internally as
    /// `x⁻¹·2²⁶⁰`, which is `x⁻¹` in this layout.
    #[target_feature(enable = "avx512f,avx512ifma")]
    fn invert_lanes(a: &V) -> V {
        let a = reduce(a, &P);
        let mut lanes = [[0u64; 8]; 5];
        for (j, limb) in a.iter().enumerate() {
            // SAFETY: a 64-byte store into an array of eight u64.
            unsafe { _mm512_storeu_si512(lanes[j].as_mut_ptr().cast(), *limb) };
        }
        let elements: [Fq; 8] = std::array::from_fn(|l| {
            Fq::new_unchecked(BigInt(to64([
                lanes[0][l],
                lanes[1][l],
                lanes[2][l],
                lanes[3][l],
                lanes[4][l],
            ])))
        });
        let mut before = [Fq::new_unchecked(BigInt([0; 4])); 8];
        let mut total = SIXTEEN * INV_SIXTEEN;
        for (b, e) in before.iter_mut().zip(&elements) {
            *b = total;
            total *= e;
        }
        // The product of non-zero elements is non-zero.
        let mut inv = fq_inverse(&total).unwrap_or_default() * TWO_FIFTY_SIX;
        for l in (0..8).rev() {
            let lane = to52((inv * before[l]).0 .0);
            inv *= elements[l];
            for j in 0..5 {
                lanes[j][l] = lane[j];
            }
        }
        let mut out = [_mm512_setzero_si512(); 5];
        for (j, limb) in out.iter_mut().enumerate() {
            // SAFETY: a 64-byte load from an array of eight u64.
            *limb = unsafe { _mm512_loadu_si512(lanes[j].as_ptr().cast()) };
        }
        out
    }

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

    /// Montgomery product `a·b/2²⁶⁰ mod p` of inputs below 4p, below 2p. Each of the five
    /// steps adds `a·bᵢ` and the multiple `m·p` that clears the lowest limb, then drops it;
    /// the limbs may pass 2⁵² (never 2⁶⁴) until the final carry.
    #[inline]
    #[target_feature(enable = "avx512f,avx512ifma")]
    fn mul(a: &V, b: &V) -> V {
        let z = _mm512_setzero_si512();
        let p = splat(&P);
        let pinv = _mm512_set1_epi64(PINV as i64);
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

    #[cfg(test)]
    mod tests {
        use super::*;
        use ark_ff::{Field, Zero};

        fn lanes(v: &V) -> [Limbs; 8] {
            let mut out = [[0u64; 5]; 8];
            for (j, limb) in v.iter().enumerate() {
                let mut lane = [0u64; 8];
                // SAFETY: a 64-byte store into an array of eight u64.
                unsafe { _mm512_storeu_si512(lane.as_mut_ptr().cast(), *limb) };
                for l in 0..8 {
                    out[l][j] = lane[l];
                }
            }
            out
        }

        #[target_feature(enable = "avx512f")]
        fn load(values: &[Limbs; 8]) -> V {
            let mut v = [_mm512_setzero_si512(); 5];
            for (j, limb) in v.iter_mut().enumerate() {
                let lane: [u64; 8] = std::array::from_fn(|l| values[l][j]);
                // SAFETY: a 64-byte load from an array of eight u64.
                *limb = unsafe { _mm512_loadu_si512(lane.as_ptr().cast()) };
            }
            v
        }

        fn has_ifma() -> bool {
            is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512ifma")
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
            for x in &xs {
                assert_eq!(element(&limbs(*x)), *x);
                if !x.is_zero() {
                    assert_eq!(element(&negate(&limbs(*x))), -*x);
                }
            }
        }
    }
}
