//! The Groth16 prover: committed `.zkey` (parsed once), witness from the circuit's WebAssembly,
//! and snarkjs's variant of the R1CS-to-QAP witness map.

use std::sync::OnceLock;

use ark_bn254::{Bn254, Fr};
use ark_ff::{BigInt, PrimeField};
use ark_groth16::r1cs_to_qap::{evaluate_constraint, LibsnarkReduction, R1CSToQAP};
use ark_groth16::Groth16;
use ark_poly::EvaluationDomain;
use ark_relations::gr1cs::{ConstraintSystemRef, Matrix, SynthesisError};

use super::commitments::{circuit_inputs, commitments};
use super::error::ZkError;
use super::snarkjs::{PublicSignals, SnarkjsProof, NUM_PUBLIC_SIGNALS};
use super::witness::{self, Input};
use super::zkey::{read_zkey, ZkeyProver};

static ZKEY: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/circuits/artifacts/edgent_final.zkey"
));

/// The committed proving key, parsed on first use and kept for the life of the process.
fn prover_key() -> Result<&'static ZkeyProver, ZkError> {
    static KEY: OnceLock<Result<ZkeyProver, String>> = OnceLock::new();
    KEY.get_or_init(|| read_zkey(ZKEY))
        .as_ref()
        .map_err(|e| ZkError::key("committed proving key", e.clone()))
}

/// Proves that `output` and `provider_key` are behind the commitments of
/// [`super::commitments`] for `job_id`, with the committed proving key. Returns the proof and
/// its public signals in snarkjs form.
///
/// CPU-bound for a few milliseconds on one core: from async code call it inside
/// `tokio::task::spawn_blocking`.
pub fn prove(
    output: &[u8],
    provider_key: &[u8; 32],
    job_id: &[u8; 32],
) -> Result<(SnarkjsProof, PublicSignals), ZkError> {
    let key = prover_key()?;

    let ci = circuit_inputs(output, provider_key, job_id);
    let big = |v: u128| BigInt([v as u64, (v >> 64) as u64, 0, 0]);
    let inputs = [
        Input {
            name: "outputHashBits",
            values: ci
                .output_hash_bits
                .iter()
                .map(|b| BigInt::from(u64::from(*b)))
                .collect(),
        },
        Input {
            name: "keyHi",
            values: vec![big(ci.key.0)],
        },
        Input {
            name: "keyLo",
            values: vec![big(ci.key.1)],
        },
        Input {
            name: "jobIdHi",
            values: vec![big(ci.job_id.0)],
        },
        Input {
            name: "jobIdLo",
            values: vec![big(ci.job_id.1)],
        },
    ];
    let witness = witness::calculate(&inputs)?;
    if witness.len() != key.n_vars {
        return Err(ZkError::Witness(format!(
            "witness has {} elements, the proving key expects {}",
            witness.len(),
            key.n_vars
        )));
    }

    // The witness's public part must be what the native computation says; a difference would
    // mean the circuit and this module disagree, and the requester would reject the proof.
    let mut public = [Fr::from(0u64); NUM_PUBLIC_SIGNALS];
    public.copy_from_slice(&witness[1..=NUM_PUBLIC_SIGNALS]);
    let public = PublicSignals::from_elements(public);
    let expected = commitments(output, provider_key, job_id).public_signals();
    if public != expected {
        return Err(ZkError::Witness(
            "the circuit's public signals differ from the native commitments".into(),
        ));
    }

    let (r, s) = (random_scalar()?, random_scalar()?);
    let proof = Groth16::<Bn254, CircomReduction>::create_proof_with_reduction_and_matrices(
        &key.pk,
        r,
        s,
        &key.matrices,
        key.num_inputs,
        key.num_constraints,
        &witness,
    )
    .map_err(|e| ZkError::Proving(e.to_string()))?;
    Ok((SnarkjsProof::from_ark(proof), public))
}

/// A uniformly random scalar from the operating system's generator (64 bytes reduced, so the
/// bias is negligible).
fn random_scalar() -> Result<Fr, ZkError> {
    let mut bytes = [0u8; 64];
    getrandom::fill(&mut bytes)
        .map_err(|e| ZkError::Proving(format!("no randomness from the OS: {e}")))?;
    Ok(Fr::from_le_bytes_mod_order(&bytes))
}

/// snarkjs's witness map. arkworks computes H's coefficients from (AB - C)/Z over the
/// evaluation domain; snarkjs's `.zkey` instead holds the H query in Lagrange form over the
/// odd points of a domain twice as large, so the prover evaluates AB - C on that coset.
/// (Adapted from ark-circom's `CircomReduction`, MIT/Apache-2.0, without rayon.)
pub(crate) struct CircomReduction;

impl R1CSToQAP for CircomReduction {
    #[allow(clippy::type_complexity)]
    fn instance_map_with_evaluation<F: PrimeField, D: EvaluationDomain<F>>(
        cs: ConstraintSystemRef<F>,
        t: &F,
    ) -> Result<(Vec<F>, Vec<F>, Vec<F>, F, usize, usize), SynthesisError> {
        LibsnarkReduction::instance_map_with_evaluation::<F, D>(cs, t)
    }

    fn witness_map_from_matrices<F: PrimeField, D: EvaluationDomain<F>>(
        matrices: &[Matrix<F>],
        num_inputs: usize,
        num_constraints: usize,
        full_assignment: &[F],
    ) -> Result<Vec<F>, SynthesisError> {
        let (a_rows, b_rows) = match matrices {
            [a, b, ..] => (a, b),
            _ => return Err(SynthesisError::Unsatisfiable),
        };
        let domain =
            D::new(num_constraints + num_inputs).ok_or(SynthesisError::PolynomialDegreeTooLarge)?;
        let size = domain.size();
        let mut a = vec![F::zero(); size];
        let mut b = vec![F::zero(); size];
        for i in 0..num_constraints {
            a[i] = evaluate_constraint(&a_rows[i], full_assignment);
            b[i] = evaluate_constraint(&b_rows[i], full_assignment);
        }
        a[num_constraints..num_constraints + num_inputs]
            .clone_from_slice(&full_assignment[..num_inputs]);
        let mut c: Vec<F> = a.iter().zip(&b).map(|(a, b)| *a * b).collect();
        // The public-input rows have no B, so their C is zero.
        for v in &mut c[num_constraints..] {
            *v = F::zero();
        }

        let coset = D::new(2 * size)
            .ok_or(SynthesisError::PolynomialDegreeTooLarge)?
            .element(1);
        for v in [&mut a, &mut b, &mut c] {
            domain.ifft_in_place(v);
            D::distribute_powers_and_mul_by_const(v, coset, F::one());
            domain.fft_in_place(v);
        }
        let mut ab = domain.mul_polynomials_in_evaluation_domain(&a, &b);
        for (x, c) in ab.iter_mut().zip(c) {
            *x -= c;
        }
        Ok(ab)
    }

    fn h_query_scalars<F: PrimeField, D: EvaluationDomain<F>>(
        max_power: usize,
        t: F,
        _: F,
        delta_inverse: F,
    ) -> Result<Vec<F>, SynthesisError> {
        // Only used by the generator, which we never run (the keys come from snarkjs).
        let mut scalars: Vec<F> = (0..2 * max_power + 1)
            .map(|i| delta_inverse * t.pow([i as u64]))
            .collect();
        let domain = D::new(scalars.len()).ok_or(SynthesisError::PolynomialDegreeTooLarge)?;
        domain.ifft_in_place(&mut scalars);
        Ok(scalars.into_iter().skip(1).step_by(2).collect())
    }
}
