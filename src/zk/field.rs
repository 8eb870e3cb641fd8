//! Conversions between bytes, decimal strings (snarkjs's notation) and BN254 field elements.

use ark_ff::{BigInteger, PrimeField};

/// Longest decimal we accept: both BN254 moduli have 77 digits.
const MAX_DECIMAL_DIGITS: usize = 77;

/// Parses a canonical decimal string (digits only, no sign, no leading zeros, below the
/// field's modulus) into a field element. Anything else is refused rather than reduced, so
/// two different strings never mean the same element.
pub(crate) fn from_decimal<F: PrimeField>(s: &str) -> Result<F, String> {
    if s.is_empty() {
        return Err("empty number".into());
    }
    if s.len() > MAX_DECIMAL_DIGITS {
        return Err(format!("number has {} digits, too long", s.len()));
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not a decimal number"));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(format!("{s:?} has leading zeros"));
    }
    let n = num_bigint::BigUint::parse_bytes(s.as_bytes(), 10)
        .ok_or_else(|| format!("{s:?} is not a decimal number"))?;
    let big = F::BigInt::try_from(n).map_err(|()| format!("{s} is not below the field modulus"))?;
    F::from_bigint(big).ok_or_else(|| format!("{s} is not below the field modulus"))
}

/// A field element as snarkjs writes it: a decimal string.
pub(crate) fn to_decimal<F: PrimeField>(f: &F) -> String {
    let n: num_bigint::BigUint = f.into_bigint().into();
    n.to_str_radix(10)
}

/// A field element as 32 big-endian bytes.
pub(crate) fn to_be32<F: PrimeField>(f: &F) -> [u8; 32] {
    let be = f.into_bigint().to_bytes_be();
    let mut out = [0u8; 32];
    out[32 - be.len()..].copy_from_slice(&be);
    out
}

/// The element whose big-endian encoding is `bytes` (callers pass 16 bytes, always in range).
pub(crate) fn from_be_bytes<F: PrimeField>(bytes: &[u8]) -> F {
    F::from_be_bytes_mod_order(bytes)
}

/// Splits 32 bytes into the two 128-bit halves the circuit uses: bytes 0..16 and 16..32,
/// each read big-endian.
pub(crate) fn halves(bytes: &[u8; 32]) -> (u128, u128) {
    let mut hi = [0u8; 16];
    let mut lo = [0u8; 16];
    hi.copy_from_slice(&bytes[..16]);
    lo.copy_from_slice(&bytes[16..]);
    (u128::from_be_bytes(hi), u128::from_be_bytes(lo))
}
