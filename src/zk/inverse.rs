//! Modular inversion in BN254's base field by Bernstein–Yang "safegcd" with 62-bit batches of
//! divsteps, after libsecp256k1's `modinv64` (variable-time variant). The batched additions of
//! `msm` need one inversion per batch; this one takes about a quarter of the time of
//! arkworks' binary extended Euclid.
//!
//! Variable time, like the arkworks inversion it replaces: the values inverted are
//! differences of curve points' coordinates, not keys.

use ark_bn254::{Fq, Fq2};
use ark_ff::{BigInt, PrimeField, Zero};

const M62: u64 = u64::MAX >> 2;

/// A number as five signed 62-bit limbs, least significant first.
type Signed62 = [i64; 5];

/// The modulus in signed-62 form.
const MODULUS: Signed62 = to_signed62(Fq::MODULUS.0);

/// `MODULUS⁻¹ mod 2⁶²`.
const MODULUS_INV62: u64 = {
    // Newton's iteration doubles the correct low bits each step: 1 → 2 → … → 64.
    let m = Fq::MODULUS.0[0];
    let mut x = 1u64;
    let mut i = 0;
    while i < 6 {
        x = x.wrapping_mul(2u64.wrapping_sub(m.wrapping_mul(x)));
        i += 1;
    }
    x & M62
};

const fn to_signed62(a: [u64; 4]) -> Signed62 {
    [
        (a[0] & M62) as i64,
        ((a[0] >> 62 | a[1] << 2) & M62) as i64,
        ((a[1] >> 60 | a[2] << 4) & M62) as i64,
        ((a[2] >> 58 | a[3] << 6) & M62) as i64,
        (a[3] >> 56) as i64,
    ]
}

/// Back from signed-62 form; the limbs must be normalised (in `[0, 2⁶²)`, value below 2²⁵⁶).
fn from_signed62(v: Signed62) -> [u64; 4] {
    let v = v.map(|x| x as u64);
    [
        v[0] | v[1] << 62,
        v[1] >> 2 | v[2] << 60,
        v[2] >> 4 | v[3] << 58,
        v[3] >> 6 | v[4] << 56,
    ]
}

/// The 2×2 transition matrix of 62 divsteps, scaled by 2⁶².
struct Trans {
    u: i64,
    v: i64,
    q: i64,
    r: i64,
}

/// 62 divsteps on the low bits of `f` and `g`: the new `eta` and the transition matrix.
fn divsteps_62(mut eta: i64, f0: u64, g0: u64) -> (i64, Trans) {
    let (mut u, mut v, mut q, mut r) = (1u64, 0u64, 0u64, 1u64);
    let (mut f, mut g) = (f0, g0);
    let mut i = 62u32;
    loop {
        // A sentinel bit stops the count of zeros at i.
        let zeros = (g | (u64::MAX << i)).trailing_zeros();
        g >>= zeros;
        u <<= zeros;
        v <<= zeros;
        eta -= i64::from(zeros);
        i -= zeros;
        if i == 0 {
            break;
        }
        let w;
        if eta < 0 {
            // Negate eta and replace (f, g) with (g, -f).
            eta = -eta;
            (f, g) = (g, f.wrapping_neg());
            (u, q) = (q, u.wrapping_neg());
            (v, r) = (r, v.wrapping_neg());
            // Cancel up to 6 bits of g, and no more than i or eta + 1.
            let limit = (eta + 1).min(i64::from(i)) as u32;
            let m = (u64::MAX >> (64 - limit)) & 63;
            w = f
                .wrapping_mul(g)
                .wrapping_mul(f.wrapping_mul(f).wrapping_sub(2))
                & m;
        } else {
            // Cancel up to 4 bits of g.
            let limit = (eta + 1).min(i64::from(i)) as u32;
            let m = (u64::MAX >> (64 - limit)) & 15;
            let w0 = f.wrapping_add(((f.wrapping_add(1)) & 4) << 1);
            w = w0.wrapping_neg().wrapping_mul(g) & m;
        }
        g = g.wrapping_add(f.wrapping_mul(w));
        q = q.wrapping_add(u.wrapping_mul(w));
        r = r.wrapping_add(v.wrapping_mul(w));
    }
    (
        eta,
        Trans {
            u: u as i64,
            v: v as i64,
            q: q as i64,
            r: r as i64,
        },
    )
}

/// `[d, e] ← t·[d, e] / 2⁶² mod MODULUS`, keeping both in `(-2·MODULUS, MODULUS)`.
fn update_de(d: &mut Signed62, e: &mut Signed62, t: &Trans) {
    let (u, v, q, r) = (t.u, t.v, t.q, t.r);
    let sd = d[4] >> 63;
    let se = e[4] >> 63;
    let mut md = (u & sd) + (v & se);
    let mut me = (q & sd) + (r & se);
    let mut cd = i128::from(u) * i128::from(d[0]) + i128::from(v) * i128::from(e[0]);
    let mut ce = i128::from(q) * i128::from(d[0]) + i128::from(r) * i128::from(e[0]);
    // Choose md, me so that the low 62 bits of t·[d, e] + MODULUS·[md, me] vanish.
    md -= (MODULUS_INV62
        .wrapping_mul(cd as u64)
        .wrapping_add(md as u64)
        & M62) as i64;
    me -= (MODULUS_INV62
        .wrapping_mul(ce as u64)
        .wrapping_add(me as u64)
        & M62) as i64;
    cd += i128::from(MODULUS[0]) * i128::from(md);
    ce += i128::from(MODULUS[0]) * i128::from(me);
    cd >>= 62;
    ce >>= 62;
    for i in 1..5 {
        cd += i128::from(u) * i128::from(d[i])
            + i128::from(v) * i128::from(e[i])
            + i128::from(MODULUS[i]) * i128::from(md);
        ce += i128::from(q) * i128::from(d[i])
            + i128::from(r) * i128::from(e[i])
            + i128::from(MODULUS[i]) * i128::from(me);
        d[i - 1] = (cd as u64 & M62) as i64;
        e[i - 1] = (ce as u64 & M62) as i64;
        cd >>= 62;
        ce >>= 62;
    }
    d[4] = cd as i64;
    e[4] = ce as i64;
}

/// `[f, g] ← t·[f, g] / 2⁶²` over their first `len` limbs.
fn update_fg(len: usize, f: &mut Signed62, g: &mut Signed62, t: &Trans) {
    let (u, v, q, r) = (t.u, t.v, t.q, t.r);
    let mut cf = i128::from(u) * i128::from(f[0]) + i128::from(v) * i128::from(g[0]);
    let mut cg = i128::from(q) * i128::from(f[0]) + i128::from(r) * i128::from(g[0]);
    cf >>= 62;
    cg >>= 62;
    for i in 1..len {
        cf += i128::from(u) * i128::from(f[i]) + i128::from(v) * i128::from(g[i]);
        cg += i128::from(q) * i128::from(f[i]) + i128::from(r) * i128::from(g[i]);
        f[i - 1] = (cf as u64 & M62) as i64;
        g[i - 1] = (cg as u64 & M62) as i64;
        cf >>= 62;
        cg >>= 62;
    }
    f[len - 1] = cf as i64;
    g[len - 1] = cg as i64;
}

/// Brings `r` from `(-2·MODULUS, MODULUS)` to `[0, MODULUS)`, negated first if `sign < 0`.
fn normalize(r: &mut Signed62, sign: i64) {
    let add_modulus = |r: &mut Signed62| {
        let cond = r[4] >> 63;
        for (x, m) in r.iter_mut().zip(MODULUS) {
            *x += m & cond;
        }
    };
    let carry = |r: &mut Signed62| {
        for i in 0..4 {
            r[i + 1] += r[i] >> 62;
            r[i] &= M62 as i64;
        }
    };
    add_modulus(r);
    let neg = sign >> 63;
    for x in r.iter_mut() {
        *x = (*x ^ neg) - neg;
    }
    carry(r);
    add_modulus(r);
    carry(r);
}

/// `x⁻¹ mod MODULUS` of a canonical integer `0 < x < MODULUS`.
fn modinv(x: [u64; 4]) -> [u64; 4] {
    let mut d: Signed62 = [0; 5];
    let mut e: Signed62 = [1, 0, 0, 0, 0];
    let mut f = MODULUS;
    let mut g = to_signed62(x);
    let mut len = 5;
    let mut eta = -1i64;
    loop {
        let (new_eta, t) = divsteps_62(eta, f[0] as u64, g[0] as u64);
        eta = new_eta;
        update_de(&mut d, &mut e, &t);
        update_fg(len, &mut f, &mut g, &t);
        if g[0] == 0 && g[1..len].iter().all(|x| *x == 0) {
            break;
        }
        // Shorten f and g once their top limbs are both 0 or -1.
        let (fn_, gn) = (f[len - 1], g[len - 1]);
        if len > 1 && (fn_ ^ (fn_ >> 63)) | (gn ^ (gn >> 63)) == 0 {
            f[len - 2] |= ((fn_ as u64) << 62) as i64;
            g[len - 2] |= ((gn as u64) << 62) as i64;
            len -= 1;
        }
    }
    // g is 0 and f is ±1 (the gcd); d is ±x⁻¹.
    normalize(&mut d, f[len - 1]);
    from_signed62(d)
}

/// The inverse of `x` in the base field, `None` for zero.
pub(crate) fn fq_inverse(x: &Fq) -> Option<Fq> {
    if x.is_zero() {
        return None;
    }
    // x is stored as x·R (Montgomery form). The integer inverse of x·R is x⁻¹·R⁻¹; a Montgomery
    // product with R³ (the element whose form is R³) gives x⁻¹·R, the form of x⁻¹.
    let r3 = Fq::from_bigint(Fq::R2)?;
    Some(Fq::new_unchecked(BigInt(modinv(x.0 .0))) * r3)
}

/// The inverse of `x` in the quadratic extension (`u² = -1`), `None` for zero.
pub(crate) fn fq2_inverse(x: &Fq2) -> Option<Fq2> {
    // (a + bu)⁻¹ = (a - bu) / (a² + b²).
    let norm = x.c0 * x.c0 + x.c1 * x.c1;
    let t = fq_inverse(&norm)?;
    Some(Fq2::new(x.c0 * t, -(x.c1 * t)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_ff::{Field, One};

    #[test]
    fn inverses_match_arkworks() {
        let mut values = vec![
            Fq::one(),
            -Fq::one(),
            Fq::from(2u64),
            Fq::from(u64::MAX),
            -Fq::from(u64::MAX),
            Fq::from(2u64).pow([200]),
            Fq::from(2u64).pow([253]),
        ];
        let mut x = Fq::from(7u64);
        for i in 0..2000u64 {
            x = x * x + Fq::from(i);
            values.push(x);
        }
        for v in values {
            let inv = fq_inverse(&v).unwrap();
            assert_eq!(Some(inv), v.inverse(), "{v}");
            assert_eq!(inv * v, Fq::one());
        }
        assert_eq!(fq_inverse(&Fq::zero()), None);
    }

    #[test]
    fn extension_inverses_match_arkworks() {
        let mut x = Fq2::new(Fq::from(3u64), Fq::from(5u64));
        for i in 0..300u64 {
            x = x * x + Fq2::new(Fq::from(i), Fq::zero());
            assert_eq!(fq2_inverse(&x), x.inverse());
        }
        let pure = Fq2::new(Fq::zero(), Fq::from(9u64));
        assert_eq!(fq2_inverse(&pure), pure.inverse());
        assert_eq!(fq2_inverse(&Fq2::zero()), None);
    }
}
