//! Multi-scalar multiplication against fixed bases (the proving key's queries).
//!
//! The bases never change, so each one is stored once with its multiples `2^(c·j)·P` for every
//! `c`-bit window `j` of a scalar. A product `Σ sᵢ·Pᵢ` then needs no doublings and a single
//! bucket reduction: every signed `c`-bit digit `d` of every scalar adds `±T[i][j]` to bucket
//! `|d|`, and the buckets are summed once at the end (`Σ k·bucket[k]`), instead of once per
//! window as in a plain Pippenger MSM. Scalars above `(r-1)/2` are negated first, so small
//! negative values (`-1`) cost as little as small positive ones. Every addition, into the
//! buckets and in their weighted sum, is affine and batched (see `batch_add`).

use std::ops::{Range, RangeInclusive};

use ark_bn254::Fr;
use ark_ec::short_weierstrass::{Affine, Projective, SWCurveConfig};
use ark_ec::{AdditiveGroup, AffineRepr, CurveGroup};
use ark_ff::{BigInt, BigInteger, PrimeField, Zero};

use super::batch_add::{add_given_inverse, invert_all, sum_lists, weighted_sum, Coord, PointList};
use super::ifma::{self, LaneCurve};

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
    /// `table[r * windows + j] = 2^(window·j) · base[rows[r]]`, affine; empty when `vector`
    /// holds the table.
    table: Vec<Affine<P>>,
    /// The same table in the layout of the vector path, where there is one.
    vector: Option<ifma::Table<P>>,
}

impl<P: LaneCurve> FixedBaseMsm<P> {
    /// Precomputes the window multiples of `bases` for `window`-bit digits (2 ≤ window ≤ 20),
    /// with the vector path where this CPU and curve have one (which then keeps the only
    /// copy of the table).
    pub(crate) fn new(bases: &[Affine<P>], window: usize) -> Self {
        let mut msm = Self::portable(bases, window);
        msm.vector = ifma::Table::new(&msm.table);
        if msm.vector.is_some() {
            msm.table = Vec::new();
        }
        msm
    }

    /// [`new`](Self::new) without the vector path.
    pub(crate) fn portable(bases: &[Affine<P>], window: usize) -> Self {
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
            vector: None,
        }
    }

    /// `Σ scalars[i] · bases[i]` (missing scalars count as zero).
    pub(crate) fn msm(&self, scalars: &[BigInt<4>]) -> Projective<P> {
        self.msm_windows(scalars, 0..self.windows)
    }

    /// The part of [`msm`](Self::msm) that comes from the scalars' digits in `windows`: the
    /// parts for disjoint ranges covering every window add up to the whole product, so two
    /// threads can share one product.
    pub(crate) fn msm_windows(
        &self,
        scalars: &[BigInt<4>],
        windows: Range<usize>,
    ) -> Projective<P> {
        let entries = self.digits(scalars, windows);
        let half = 1usize << (self.window - 1);
        // Bucket k-1 holds the points of digit k; Σ k·bucket[k-1].
        match &self.vector {
            Some(v) => v.bucket_sum(entries, half),
            None => bucket_sum(AffineBuckets::new(&self.table, half), entries, half),
        }
    }

    /// Windows per scalar.
    pub(crate) fn windows(&self) -> usize {
        self.windows
    }

    /// Every non-zero signed digit in `windows` of every scalar as an [`Entry`]: bucket
    /// `|d| - 1` gets `±T[row][window]`.
    fn digits(&self, scalars: &[BigInt<4>], windows: Range<usize>) -> Vec<Entry> {
        let c = self.window;
        let half = 1u64 << (c - 1);
        let full = 1u64 << c;
        let modulus = Fr::MODULUS;
        let mut half_modulus = modulus;
        half_modulus.div2();
        let mut entries = Vec::with_capacity(self.rows.len() * self.windows);
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
            let row = (r * self.windows) as u32;
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
                    if d != 0 && windows.contains(&j) {
                        entries.push(Entry::new((d - 1) as u32, row + j as u32, neg));
                    }
                }
                j += 1;
            }
        }
        entries
    }
}

/// One addition to do: bucket (high 32 bits), sign (bit 31), table index (low 31 bits).
#[derive(Clone, Copy)]
pub(crate) struct Entry(u64);

impl Entry {
    fn new(bucket: u32, point: u32, negate: bool) -> Self {
        Entry(u64::from(bucket) << 32 | u64::from(negate) << 31 | u64::from(point & 0x7fff_ffff))
    }
    /// The bucket to add to.
    pub(crate) fn bucket(self) -> usize {
        (self.0 >> 32) as usize
    }
    /// The table index of the point.
    pub(crate) fn index(self) -> usize {
        (self.0 & 0x7fff_ffff) as usize
    }
    /// Whether the point is added negated.
    pub(crate) fn negated(self) -> bool {
        self.0 & (1 << 31) != 0
    }
    /// The point to add, `±T[index]`.
    fn point<P: SWCurveConfig>(self, table: &[Affine<P>]) -> Affine<P> {
        let p = table[self.index()];
        if self.negated() {
            -p
        } else {
            p
        }
    }
    /// Its x coordinate (the same for both signs).
    fn x<P: SWCurveConfig>(self, table: &[Affine<P>]) -> P::BaseField {
        table[self.index()].x
    }
}

/// Additions per batch inversion: half the buckets, within these bounds. Large enough that the
/// inversion's share is small, small enough that most entries (three in four) find their
/// bucket free; the others wait for the next round. (Measured with the vector lanes, where the
/// inversion weighs more: half the buckets is 5% faster than a quarter, and half up to 512 no
/// faster than up to 256.)
const BATCH: RangeInclusive<usize> = 64..=256;

/// Fewer left-over entries than this, or entries piling onto few buckets, are summed per
/// bucket (see [`add_leftovers`]) instead of in another round.
const LAST_ROUND: usize = 64;

/// Buckets that [`rounds`] adds entries into, in batches of additions that share one field
/// inversion: arkworks points ([`AffineBuckets`]) or the vector layout of `ifma`.
pub(crate) trait Buckets {
    /// The buckets as a list of points, for the leftovers and the weighted sum.
    type List: PointList;
    /// Adds the entry's point to its bucket at once when that needs no batch (an empty
    /// bucket, a doubling, a cancellation), else queues the addition for the batch and
    /// returns `true`.
    fn add_or_queue(&mut self, e: Entry) -> bool;
    /// Additions queued.
    fn queued(&self) -> usize;
    /// Does the queued additions (into distinct buckets).
    fn apply(&mut self);
    /// Hints that the entry's point and bucket will be read soon.
    fn prefetch(&self, _e: Entry) {}
    /// The buckets (after the rounds).
    fn list(&mut self) -> &mut Self::List;
    /// Appends the entry's point (`±table[index]`) to a list of the buckets' kind.
    fn push_entry(&self, list: &mut Self::List, e: Entry);
    /// The buckets, given up.
    fn into_list(self) -> Self::List;
}

/// `Σ (k+1)·bucket[k]` where every entry adds its point to its bucket: the batched
/// [`rounds`], the entries left over (see [`add_leftovers`]), then the weighted sum.
pub(crate) fn bucket_sum<B: Buckets>(
    mut buckets: B,
    entries: Vec<Entry>,
    n_buckets: usize,
) -> Projective<<B::List as PointList>::Curve> {
    let left = rounds(&mut buckets, entries, n_buckets);
    add_leftovers(&mut buckets, left);
    weighted_sum(buckets.into_list())
}

/// How many entries ahead [`rounds`] prefetches.
const PREFETCH_AHEAD: usize = 8;

/// Adds the entries' points into their buckets in rounds: an entry whose bucket already has
/// an addition in the current batch waits for the next round. Returns the entries left over
/// for [`add_leftovers`].
pub(crate) fn rounds<B: Buckets>(
    buckets: &mut B,
    mut entries: Vec<Entry>,
    n_buckets: usize,
) -> Vec<Entry> {
    // The batch each bucket was last put in (0: none).
    let mut in_batch = vec![0u32; n_buckets];
    let mut batch_id = 1u32;
    let batch_size = (n_buckets / 2).clamp(*BATCH.start(), *BATCH.end());
    let mut deferred = Vec::new();
    while entries.len() >= LAST_ROUND {
        for (k, &e) in entries.iter().enumerate() {
            if let Some(ahead) = entries.get(k + PREFETCH_AHEAD) {
                buckets.prefetch(*ahead);
            }
            let b = e.bucket();
            if in_batch[b] == batch_id {
                deferred.push(e);
                continue;
            }
            if buckets.add_or_queue(e) {
                in_batch[b] = batch_id;
                if buckets.queued() == batch_size {
                    buckets.apply();
                    batch_id += 1;
                }
            }
        }
        buckets.apply();
        batch_id += 1;
        // Entries piling onto a few buckets (every scalar 1 lands in the first) would take a
        // round, and an inversion, each: once a round leaves half its entries, stop.
        let stuck = deferred.len() * 2 > entries.len();
        entries.clear();
        std::mem::swap(&mut entries, &mut deferred);
        if stuck {
            break;
        }
    }
    entries
}

/// Buckets of arkworks affine points; the batch's `dx = p.x - bucket.x` are inverted together.
struct AffineBuckets<'a, P: SWCurveConfig> {
    table: &'a [Affine<P>],
    affine: Vec<Affine<P>>,
    batch: Vec<Entry>,
    dx: Vec<P::BaseField>,
    prefix: Vec<P::BaseField>,
}

impl<'a, P: SWCurveConfig<BaseField: Coord>> AffineBuckets<'a, P> {
    fn new(table: &'a [Affine<P>], n_buckets: usize) -> Self {
        AffineBuckets {
            table,
            affine: vec![Affine::<P>::identity(); n_buckets],
            batch: Vec::new(),
            dx: Vec::new(),
            prefix: Vec::new(),
        }
    }
}

impl<P: SWCurveConfig<BaseField: Coord>> Buckets for AffineBuckets<'_, P> {
    type List = Vec<Affine<P>>;

    fn add_or_queue(&mut self, e: Entry) -> bool {
        let bucket = &mut self.affine[e.bucket()];
        if bucket.is_zero() {
            *bucket = e.point(self.table);
            return false;
        }
        // The sign does not change x.
        let d = e.x(self.table) - bucket.x;
        if d.is_zero() {
            // Doubling or cancellation: rare, done at once with a full addition.
            *bucket = (Projective::from(*bucket) + e.point(self.table)).into_affine();
            return false;
        }
        self.batch.push(e);
        self.dx.push(d);
        true
    }

    fn queued(&self) -> usize {
        self.batch.len()
    }

    fn apply(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        invert_all(&mut self.dx, &mut self.prefix);
        for (e, inv_d) in self.batch.iter().zip(self.dx.iter()) {
            let p = &self.table[e.index()];
            let py = if e.negated() { -p.y } else { p.y };
            let q = &mut self.affine[e.bucket()];
            *q = add_given_inverse(q, p.x, py, inv_d);
        }
        self.batch.clear();
        self.dx.clear();
    }

    fn list(&mut self) -> &mut Vec<Affine<P>> {
        &mut self.affine
    }

    fn push_entry(&self, list: &mut Vec<Affine<P>>, e: Entry) {
        list.push(e.point(self.table));
    }

    fn into_list(self) -> Vec<Affine<P>> {
        self.affine
    }
}

/// Adds the entries left after the rounds: each bucket with its entries is one list for
/// [`sum_lists`], so a pile of `n` entries on one bucket takes `⌈log₂(n+1)⌉` batched rounds.
fn add_leftovers<B: Buckets>(buckets: &mut B, mut entries: Vec<Entry>) {
    if entries.is_empty() {
        return;
    }
    entries.sort_unstable_by_key(|e| e.bucket());
    let mut points = buckets.list().empty(entries.len() * 2);
    let mut lens = Vec::new();
    let mut ids = Vec::new();
    for group in entries.chunk_by(|a, b| a.bucket() == b.bucket()) {
        let b = group[0].bucket();
        let before = points.len();
        points.push_from(buckets.list(), b);
        for e in group {
            buckets.push_entry(&mut points, *e);
        }
        lens.push(points.len() - before);
        ids.push(b);
    }
    let sums = sum_lists(points, lens);
    for (k, b) in ids.into_iter().enumerate() {
        buckets.list().set_from(b, &sums, k);
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
    use super::{FixedBaseMsm, LaneCurve};
    use ark_bn254::{Fr, G1Affine, G1Projective, G2Affine};
    use ark_ec::short_weierstrass::{Affine, Projective};
    use ark_ec::{CurveGroup, PrimeGroup, VariableBaseMSM};
    use ark_ff::{Field, PrimeField};

    /// A full-size scalar that looks random (no RNG dependency needed).
    fn scalar(i: u64) -> Fr {
        Fr::from(i + 7).pow([1000 + i])
    }

    /// The table for `bases`: with the vector path where this CPU has one, or without.
    fn table<P: LaneCurve>(bases: &[Affine<P>], window: usize, vector: bool) -> FixedBaseMsm<P> {
        if vector {
            FixedBaseMsm::new(bases, window)
        } else {
            FixedBaseMsm::portable(bases, window)
        }
    }

    /// `n` multiples of `P`'s generator, the one at `zero_at` replaced by the identity.
    fn multiples<P: LaneCurve>(n: u64, zero_at: usize) -> Vec<Affine<P>> {
        let g = Projective::<P>::generator();
        let mut bases: Vec<Affine<P>> = (0..n).map(|i| (g * scalar(i)).into_affine()).collect();
        bases[zero_at] = Affine::identity();
        bases
    }

    fn check<P: LaneCurve>(bases: Vec<Affine<P>>, window: usize, vector: bool) {
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
        let table = table(&bases, window, vector);
        let big: Vec<_> = scalars.iter().map(|s| s.into_bigint()).collect();
        let expected = Projective::<P>::msm(&bases, &scalars).expect("lengths");
        assert_eq!(table.msm(&big).into_affine(), expected.into_affine());
        // Split by windows, the parts add up to the whole.
        let mid = table.windows() / 2;
        let parts = table.msm_windows(&big, 0..mid) + table.msm_windows(&big, mid..table.windows());
        assert_eq!(parts.into_affine(), expected.into_affine());
        assert_ne!(table.msm_windows(&big, 0..mid), expected);
        // Fewer scalars than bases: the missing ones count as zero.
        let expected = Projective::<P>::msm(&bases[..5], &scalars[..5]).expect("lengths");
        assert_eq!(table.msm(&big[..5]).into_affine(), expected.into_affine());
    }

    #[test]
    fn fixed_base_msm_matches_arkworks_g1() {
        let bases: Vec<G1Affine> = multiples(40, 3);
        for w in [3, 7, 10, 13] {
            check(bases.clone(), w, true);
            check(bases.clone(), w, false);
        }
    }

    /// Enough entries for the batched rounds, with the cases they treat apart: many scalars
    /// of 1 on one bucket, the same base twice with the same scalar (a doubling in a bucket)
    /// and with opposite scalars (a bucket that empties).
    #[test]
    fn batched_additions_handle_doubling_cancellation_and_piles() {
        let g = G1Projective::generator();
        let distinct: Vec<G1Affine> = (0..8).map(|i| (g * scalar(i)).into_affine()).collect();
        let mut bases = Vec::new();
        let mut scalars = Vec::new();
        for k in 0..40u64 {
            let p = distinct[(k % 8) as usize];
            // Twice the same: every digit doubles a bucket.
            bases.extend([p, p]);
            scalars.extend([scalar(k), scalar(k)]);
            // Opposite scalars: every digit empties a bucket.
            bases.extend([p, p]);
            scalars.extend([scalar(k + 1000), -scalar(k + 1000)]);
            // Scalars of 1 all land in the first bucket.
            bases.extend([p, p]);
            scalars.extend([Fr::from(1u64), Fr::from(1u64)]);
        }
        let big: Vec<_> = scalars.iter().map(|s| s.into_bigint()).collect();
        let expected = G1Projective::msm(&bases, &scalars).expect("lengths");
        for vector in [true, false] {
            let table = table(&bases, 6, vector);
            assert_eq!(table.msm(&big).into_affine(), expected.into_affine());
        }
    }

    #[test]
    fn fixed_base_msm_matches_arkworks_g2() {
        let bases: Vec<G2Affine> = multiples(20, 1);
        check(bases.clone(), 9, true);
        check(bases, 9, false);
    }
}
