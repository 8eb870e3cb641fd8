//! iden3's binary container, shared by circom's `.r1cs` and snarkjs's `.zkey`: a 4-byte magic,
//! a version (u32), a section count (u32), then sections `(id u32, length u64, bytes)`, all
//! little-endian.

use ark_bn254::{Fq, Fq2, G1Affine, G2Affine};
use ark_ec::short_weierstrass::{Affine, SWCurveConfig};
use ark_ff::{BigInt, PrimeField, Zero};

/// Parse results inside this module and its readers: the error is a plain description.
pub(crate) type R<T> = Result<T, String>;

/// A file's sections, by id (the first of each id wins; ids above 15 are ignored).
pub(crate) struct Sections<'a> {
    bytes: &'a [u8],
    sections: [Option<(usize, usize)>; 16],
}

impl<'a> Sections<'a> {
    /// Reads the header and the section table of a file that must start with `magic`.
    pub(crate) fn parse(bytes: &'a [u8], magic: &[u8; 4]) -> R<Self> {
        let mut c = Cursor { buf: bytes, pos: 0 };
        if c.take(4)? != magic {
            return Err(format!(
                "not a {} file (bad magic)",
                String::from_utf8_lossy(magic)
            ));
        }
        let _version = c.u32()?;
        let n_sections = c.u32()?;
        let mut sections = [None; 16];
        for _ in 0..n_sections {
            let id = c.u32()? as usize;
            let len = usize::try_from(c.u64()?).map_err(|_| "section too long")?;
            let start = c.pos;
            c.take(len)?;
            if id < sections.len() && sections[id].is_none() {
                sections[id] = Some((start, len));
            }
        }
        Ok(Sections { bytes, sections })
    }

    /// A cursor over section `id`, which must exist.
    pub(crate) fn section(&self, id: usize) -> R<Cursor<'a>> {
        let (start, len) = self
            .sections
            .get(id)
            .copied()
            .flatten()
            .ok_or_else(|| format!("section {id} missing"))?;
        Ok(Cursor {
            buf: &self.bytes[..start + len],
            pos: start,
        })
    }
}

/// Reads little-endian values from a section; reading past its end is an error.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| format!("truncated at byte {}", self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// A u32.
    pub(crate) fn u32(&mut self) -> R<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A u64.
    pub(crate) fn u64(&mut self) -> R<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A 256-bit number (32 bytes).
    pub(crate) fn bigint(&mut self) -> R<BigInt<4>> {
        let b = self.take(32)?;
        let mut limbs = [0u64; 4];
        for (l, chunk) in limbs.iter_mut().zip(b.chunks_exact(8)) {
            let mut a = [0u8; 8];
            a.copy_from_slice(chunk);
            *l = u64::from_le_bytes(a);
        }
        Ok(BigInt(limbs))
    }

    /// An Fq coordinate in Montgomery form.
    pub(crate) fn fq(&mut self) -> R<Fq> {
        let b = self.bigint()?;
        if b >= Fq::MODULUS {
            return Err("base-field element out of range".into());
        }
        Ok(Fq::new_unchecked(b))
    }

    /// A G1 point (Montgomery coordinates; `(0, 0)` is the identity), checked on the curve.
    pub(crate) fn g1(&mut self) -> R<G1Affine> {
        let (x, y) = (self.fq()?, self.fq()?);
        on_curve(x, y, "G1")
    }

    /// A G2 point, checked on the curve.
    pub(crate) fn g2(&mut self) -> R<G2Affine> {
        let x = Fq2::new(self.fq()?, self.fq()?);
        let y = Fq2::new(self.fq()?, self.fq()?);
        on_curve(x, y, "G2")
    }
}

/// `(x, y)` as a point of `P` (`(0, 0)` is the identity), refused unless on the curve
/// (`what` names the group). On-curve only: the subgroup check over every B2 point would
/// cost a noticeable start-up time, and the embedded key is pinned by
/// circuits/manifest.sha256.
fn on_curve<P: SWCurveConfig>(x: P::BaseField, y: P::BaseField, what: &str) -> R<Affine<P>> {
    if x.is_zero() && y.is_zero() {
        return Ok(Affine::identity());
    }
    let p = Affine::new_unchecked(x, y);
    if !p.is_on_curve() {
        return Err(format!("{what} point not on the curve"));
    }
    Ok(p)
}
