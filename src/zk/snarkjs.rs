//! Proofs and public signals in snarkjs's JSON form (`proof.json`, `public.json`).
//!
//! Both types validate while they deserialise: every number must be a canonical decimal
//! below its field's modulus, every point must be on the curve and in the prime-order
//! subgroup, and the shape must be exactly snarkjs's. So a value of these types that came off
//! the wire is well formed, and only the pairing check is left to [`super::verify`].

use ark_bn254::{Bn254, Fq, Fq2, Fr, G1Affine, G2Affine};
use ark_ec::AffineRepr;
use ark_groth16::Proof;
use serde::{Deserialize, Serialize};

use super::error::ZkError;
use super::field::{from_decimal, to_be32, to_decimal};

/// Number of public signals: `[outputCommitment, walletCommitment, jobIdHi, jobIdLo]`.
pub const NUM_PUBLIC_SIGNALS: usize = 4;

/// A Groth16 proof over BN254, serialised exactly as snarkjs writes `proof.json`:
/// `{"pi_a": [x, y, "1"], "pi_b": [[x0, x1], [y0, y1], ["1", "0"]], "pi_c": [x, y, "1"],
/// "protocol": "groth16", "curve": "bn128"}` with decimal strings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawProof", into = "RawProof")]
pub struct SnarkjsProof {
    proof: Proof<Bn254>,
}

/// The public signals of a proof, serialised as snarkjs writes `public.json`: a JSON array of
/// four decimal strings, `[outputCommitment, walletCommitment, jobIdHi, jobIdLo]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct PublicSignals {
    elements: [Fr; NUM_PUBLIC_SIGNALS],
}

/// The names of the public signals, in order.
pub const PUBLIC_SIGNAL_NAMES: [&str; NUM_PUBLIC_SIGNALS] =
    ["outputCommitment", "walletCommitment", "jobIdHi", "jobIdLo"];

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProof {
    pi_a: [String; 3],
    pi_b: [[String; 2]; 3],
    pi_c: [String; 3],
    protocol: String,
    curve: String,
}

impl SnarkjsProof {
    /// Wraps an arkworks proof.
    #[cfg(feature = "prover")]
    pub(crate) fn from_ark(proof: Proof<Bn254>) -> Self {
        SnarkjsProof { proof }
    }

    /// The arkworks proof inside.
    pub(crate) fn as_ark(&self) -> &Proof<Bn254> {
        &self.proof
    }

    /// Parses snarkjs `proof.json` text; a clear [`ZkError::Malformed`] for anything else.
    pub fn from_json(text: &str) -> Result<Self, ZkError> {
        serde_json::from_str(text).map_err(|e| {
            tracing::debug!(error = %e, "malformed snarkjs proof");
            ZkError::malformed("proof", e.to_string())
        })
    }

    /// The proof as the eight 32-byte big-endian words a Solidity verifier exported by
    /// snarkjs takes (`snarkjs zkey export soliditycalldata`'s order): `a.x, a.y, b.x.c1,
    /// b.x.c0, b.y.c1, b.y.c0, c.x, c.y`. This is what `EdgentEscrow.submit` carries.
    pub fn solidity_words(&self) -> [[u8; 32]; 8] {
        let p = &self.proof;
        [
            to_be32(&p.a.x),
            to_be32(&p.a.y),
            to_be32(&p.b.x.c1),
            to_be32(&p.b.x.c0),
            to_be32(&p.b.y.c1),
            to_be32(&p.b.y.c0),
            to_be32(&p.c.x),
            to_be32(&p.c.y),
        ]
    }

    /// This proof as snarkjs `proof.json` text (pretty-printed like snarkjs).
    pub fn to_json(&self) -> String {
        // Serialising strings and arrays cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

impl PublicSignals {
    pub(crate) fn from_elements(elements: [Fr; NUM_PUBLIC_SIGNALS]) -> Self {
        PublicSignals { elements }
    }

    pub(crate) fn elements(&self) -> &[Fr; NUM_PUBLIC_SIGNALS] {
        &self.elements
    }

    /// The signals as decimal strings, in order.
    pub fn to_decimal_strings(&self) -> Vec<String> {
        self.elements.iter().map(to_decimal).collect()
    }

    /// Parses snarkjs `public.json` text; a clear [`ZkError::Malformed`] for anything else.
    pub fn from_json(text: &str) -> Result<Self, ZkError> {
        serde_json::from_str(text).map_err(|e| {
            tracing::debug!(error = %e, "malformed snarkjs public signals");
            ZkError::malformed("public signals", e.to_string())
        })
    }

    /// These signals as snarkjs `public.json` text.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

impl TryFrom<Vec<String>> for PublicSignals {
    type Error = ZkError;

    fn try_from(v: Vec<String>) -> Result<Self, ZkError> {
        if v.len() != NUM_PUBLIC_SIGNALS {
            return Err(ZkError::malformed(
                "public signals",
                format!("expected {NUM_PUBLIC_SIGNALS} signals, got {}", v.len()),
            ));
        }
        let mut elements = [Fr::from(0u64); NUM_PUBLIC_SIGNALS];
        for (i, s) in v.iter().enumerate() {
            elements[i] = from_decimal::<Fr>(s).map_err(|e| {
                ZkError::malformed("public signals", format!("{}: {e}", PUBLIC_SIGNAL_NAMES[i]))
            })?;
        }
        Ok(PublicSignals { elements })
    }
}

impl From<PublicSignals> for Vec<String> {
    fn from(p: PublicSignals) -> Self {
        p.to_decimal_strings()
    }
}

impl TryFrom<RawProof> for SnarkjsProof {
    type Error = ZkError;

    fn try_from(raw: RawProof) -> Result<Self, ZkError> {
        if raw.protocol != "groth16" {
            return Err(ZkError::malformed(
                "proof",
                format!("protocol is {:?}, expected \"groth16\"", raw.protocol),
            ));
        }
        if raw.curve != "bn128" {
            return Err(ZkError::malformed(
                "proof",
                format!("curve is {:?}, expected \"bn128\"", raw.curve),
            ));
        }
        let a = g1_from_strings("pi_a", &raw.pi_a)?;
        let b = g2_from_strings("pi_b", &raw.pi_b)?;
        let c = g1_from_strings("pi_c", &raw.pi_c)?;
        Ok(SnarkjsProof {
            proof: Proof { a, b, c },
        })
    }
}

impl From<SnarkjsProof> for RawProof {
    fn from(p: SnarkjsProof) -> Self {
        RawProof {
            pi_a: g1_to_strings(&p.proof.a),
            pi_b: g2_to_strings(&p.proof.b),
            pi_c: g1_to_strings(&p.proof.c),
            protocol: "groth16".into(),
            curve: "bn128".into(),
        }
    }
}

fn fq(what: &'static str, s: &str) -> Result<Fq, ZkError> {
    from_decimal::<Fq>(s).map_err(|e| ZkError::malformed(what, e))
}

/// A G1 point from snarkjs's projective triple `[x, y, "1"]` (affine, the only form snarkjs
/// writes for a finite point). The point at infinity is refused: no valid proof has one.
pub(crate) fn g1_from_strings(what: &'static str, p: &[String; 3]) -> Result<G1Affine, ZkError> {
    if p[2] != "1" {
        return Err(ZkError::malformed(
            what,
            "third coordinate must be \"1\" (affine point)",
        ));
    }
    let point = G1Affine::new_unchecked(fq(what, &p[0])?, fq(what, &p[1])?);
    if !point.is_on_curve() {
        return Err(ZkError::malformed(what, "point is not on the curve"));
    }
    // BN254's G1 has cofactor 1: on the curve means in the subgroup.
    Ok(point)
}

/// A G2 point from snarkjs's `[[x0, x1], [y0, y1], ["1", "0"]]`.
pub(crate) fn g2_from_strings(
    what: &'static str,
    p: &[[String; 2]; 3],
) -> Result<G2Affine, ZkError> {
    if p[2][0] != "1" || p[2][1] != "0" {
        return Err(ZkError::malformed(
            what,
            "third coordinate must be [\"1\", \"0\"] (affine point)",
        ));
    }
    let x = Fq2::new(fq(what, &p[0][0])?, fq(what, &p[0][1])?);
    let y = Fq2::new(fq(what, &p[1][0])?, fq(what, &p[1][1])?);
    let point = G2Affine::new_unchecked(x, y);
    if !point.is_on_curve() {
        return Err(ZkError::malformed(what, "point is not on the curve"));
    }
    if !point.is_in_correct_subgroup_assuming_on_curve() {
        return Err(ZkError::malformed(
            what,
            "point is not in the prime-order subgroup",
        ));
    }
    Ok(point)
}

fn g1_to_strings(p: &G1Affine) -> [String; 3] {
    match p.xy() {
        Some((x, y)) => [to_decimal(&x), to_decimal(&y), "1".into()],
        None => ["0".into(), "1".into(), "0".into()],
    }
}

fn g2_to_strings(p: &G2Affine) -> [[String; 2]; 3] {
    match p.xy() {
        Some((x, y)) => [
            [to_decimal(&x.c0), to_decimal(&x.c1)],
            [to_decimal(&y.c0), to_decimal(&y.c1)],
            ["1".into(), "0".into()],
        ],
        None => [
            ["0".into(), "0".into()],
            ["1".into(), "0".into()],
            ["0".into(), "0".into()],
        ],
    }
}
