//! The Groth16 prover: the committed `.zkey` and `.r1cs` (parsed once), the witness solved
//! natively (`solver`), snarkjs's variant of the R1CS-to-QAP witness map (`fft`), and the
//! multi-scalar multiplications on fixed-base tables (`msm`), with the terms fixed by the
//! provider key kept between proofs.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use ark_bn254::{g1, g2, Bn254, Fr, G1Affine, G1Projective, G2Affine, G2Projective};
use ark_ec::CurveGroup;
use ark_ff::{BigInt, PrimeField, Zero};
use ark_groth16::Proof;
use ark_relations::gr1cs::Matrix;

use super::commitments::{circuit_inputs, keccak256, poseidon_of_halves, CircuitInputs};
use super::error::ZkError;
use super::fft::CosetFft;
use super::msm::FixedBaseMsm;
use super::r1cs::read_r1cs;
use super::snarkjs::{PublicSignals, SnarkjsProof, NUM_PUBLIC_SIGNALS};
use super::solver::WitnessSolver;
use super::zkey::{read_zkey, ZkeyProver};

static ZKEY: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/circuits/artifacts/edgent_final.zkey"
));

static R1CS: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/circuits/artifacts/edgent.r1cs"
));

/// Window widths (bits) of the fixed-base tables. Wider windows mean fewer additions per
/// scalar but more buckets to sum and a smaller table; these sizes keep all five tables
/// near 8 MB. (Measured: 8 or 9 bits for B in G2 is slower.)
const WINDOW_H: usize = 11;
const WINDOW_WITNESS: usize = 10;

/// The committed proving key with its fixed-base tables, ready to prove.
struct ProverKey {
    alpha_g1: G1Affine,
    beta_g1: G1Affine,
    beta_g2: G2Affine,
    /// A query (one point per variable, the constant 1 first), then δ₁.
    a: FixedBaseMsm<g1::Config>,
    /// B query in G1, then δ₁.
    b_g1: FixedBaseMsm<g1::Config>,
    /// B query in G2, then δ₂.
    b_g2: FixedBaseMsm<g2::Config>,
    /// L query (one point per private variable), then δ₁.
    l: FixedBaseMsm<g1::Config>,
    /// H query (one point per evaluation-domain element).
    h: FixedBaseMsm<g1::Config>,
    matrices: Vec<Matrix<Fr>>,
    /// The witness map's transforms.
    fft: CosetFft,
    /// Computes the witness from the inputs.
    solver: WitnessSolver,
    /// Which wires the provider key alone decides.
    fixed: Vec<bool>,
    /// Their terms for the last key proved with.
    key_terms: Mutex<Option<KeyTerms>>,
    num_inputs: usize,
    num_constraints: usize,
}

impl ProverKey {
    fn new(z: ZkeyProver, solver: WitnessSolver) -> Result<Self, String> {
        let fft = CosetFft::new(z.num_constraints + z.num_inputs)
            .filter(|f| f.size() == z.pk.h_query.len())
            .ok_or("the H query does not match the circuit's evaluation domain")?;
        let pk = z.pk;
        let plus = |query: &[G1Affine]| [query, &[pk.delta_g1]].concat();
        // The tables take a few hundred milliseconds to build; two threads halve that.
        let ((a, b_g1), (b_g2, (l, h))) = std::thread::scope(|scope| {
            let other = scope.spawn(|| {
                (
                    FixedBaseMsm::new(
                        &[&pk.b_g2_query[..], &[pk.vk.delta_g2]].concat(),
                        WINDOW_WITNESS,
                    ),
                    (
                        FixedBaseMsm::new(&plus(&pk.l_query), WINDOW_WITNESS),
                        FixedBaseMsm::new(&pk.h_query, WINDOW_H),
                    ),
                )
            });
            let mine = (
                FixedBaseMsm::new(&plus(&pk.a_query), WINDOW_WITNESS),
                FixedBaseMsm::new(&plus(&pk.b_g1_query), WINDOW_WITNESS),
            );
            (mine, join(other))
        });
        Ok(ProverKey {
            alpha_g1: pk.vk.alpha_g1,
            beta_g1: pk.beta_g1,
            beta_g2: pk.vk.beta_g2,
            a,
            b_g1,
            b_g2,
            l,
            h,
            matrices: z.matrices,
            fft,
            fixed: solver.fixed_by(KEY_INPUTS),
            key_terms: Mutex::new(None),
            solver,
            num_inputs: z.num_inputs,
            num_constraints: z.num_constraints,
        })
    }

    /// The cached terms of the provider key with these halves, if they are the ones cached.
    fn terms_for(&self, provider: [Fr; 2]) -> Option<KeyTerms> {
        let slot = self.key_terms.lock().ok()?;
        slot.as_ref().filter(|t| t.key == provider).cloned()
    }
}

/// Joins a scoped thread, passing a panic on to the caller (a panic there is a bug in this
/// module, not bad input).
fn join<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    match h.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Parses the committed proving key and constraint system and builds the tables.
fn load() -> Result<ProverKey, String> {
    let zkey = read_zkey(ZKEY)?;
    let r1cs = read_r1cs(R1CS).map_err(|e| format!("edgent.r1cs: {e}"))?;
    if r1cs.n_wires != zkey.n_vars || r1cs.constraints.len() != zkey.num_constraints {
        return Err(format!(
            "edgent.r1cs ({} wires, {} constraints) is not the circuit of the proving key \
             ({} variables, {} constraints)",
            r1cs.n_wires,
            r1cs.constraints.len(),
            zkey.n_vars,
            zkey.num_constraints
        ));
    }
    let solver = WitnessSolver::new(r1cs).map_err(|e| format!("edgent.r1cs: {e}"))?;
    ProverKey::new(zkey, solver)
}

/// The committed proving key, parsed and tabulated on first use and kept for the life of the
/// process.
fn prover_key() -> Result<&'static ProverKey, ZkError> {
    static KEY: OnceLock<Result<ProverKey, String>> = OnceLock::new();
    KEY.get_or_init(load)
        .as_ref()
        .map_err(|e| ZkError::key("committed proving key", e.clone()))
}

/// Does the prover's one-time work now: parses the committed proving key and constraint
/// system, plans the witness solver and builds the fixed-base tables (about 8 MB, a few
/// hundred milliseconds). Optional: [`prove`] does it on first use; a daemon calls this at
/// start so that its first proof is as fast as the others.
pub fn warm_up() -> Result<(), ZkError> {
    prover_key().map(|_| ())
}

/// [`warm_up`], then a first proof with `provider_key` (discarded), which computes the parts
/// of a proof that depend on the key alone: later proofs with that key skip them. A provider
/// calls this at start with its own key.
pub fn warm_up_for_key(provider_key: &[u8; 32]) -> Result<(), ZkError> {
    prove(b"", provider_key, &[0; 32]).map(|_| ())
}

/// Proves that `output` and `provider_key` are behind the commitments of
/// [`super::commitments`] for `job_id`, with the committed proving key. Returns the proof and
/// its public signals in snarkjs form.
///
/// CPU-bound for a few milliseconds on two cores: from async code call it inside
/// `tokio::task::spawn_blocking`.
pub fn prove(
    output: &[u8],
    provider_key: &[u8; 32],
    job_id: &[u8; 32],
) -> Result<(SnarkjsProof, PublicSignals), ZkError> {
    prove_with(prover_key()?, output, provider_key, job_id)
}

fn prove_with(
    key: &ProverKey,
    output: &[u8],
    provider_key: &[u8; 32],
    job_id: &[u8; 32],
) -> Result<(SnarkjsProof, PublicSignals), ZkError> {
    let ci = circuit_inputs(output, provider_key, job_id);
    let inputs = solver_inputs(&ci);
    let provider = [inputs[KEY_INPUTS.start], inputs[KEY_INPUTS.start + 1]];
    let known = key.terms_for(provider);
    // One element per variable of the proving key: `load` checked the two agree. With the
    // key's terms known, the wires the key fixes come from the proof that computed them.
    let given = known.as_ref().map(|t| (&key.fixed[..], &t.witness[..]));
    let witness = key.solver.solve_given(&inputs, given)?;

    // The witness's public part must be what the native computation says; a difference would
    // mean the circuit and this module disagree, and the requester would reject the proof.
    // The wallet commitment of a known key was checked with the proof that computed its terms.
    let mut public = [Fr::from(0u64); NUM_PUBLIC_SIGNALS];
    public.copy_from_slice(&witness[1..=NUM_PUBLIC_SIGNALS]);
    let wallet = match &known {
        Some(t) => t.witness[WALLET_COMMITMENT_WIRE],
        None => poseidon_of_halves(provider_key),
    };
    let expected = [
        poseidon_of_halves(&keccak256(output)),
        wallet,
        Fr::from(ci.job_id.0),
        Fr::from(ci.job_id.1),
    ];
    if public != expected {
        return Err(ZkError::Witness(
            "the circuit's public signals differ from the native commitments".into(),
        ));
    }

    let (r, s) = (random_scalar()?, random_scalar()?);
    let proof = create_proof(key, r, s, witness, provider, known)?;
    Ok((
        SnarkjsProof::from_ark(proof),
        PublicSignals::from_elements(public),
    ))
}

/// The solver's inputs: the public ones, then the private ones, in the order
/// `edgent.circom` declares them.
pub(crate) fn solver_inputs(ci: &CircuitInputs) -> Vec<Fr> {
    let mut inputs = Vec::with_capacity(2 + ci.output_hash_bits.len() + 2);
    inputs.extend([Fr::from(ci.job_id.0), Fr::from(ci.job_id.1)]);
    inputs.extend(ci.output_hash_bits.iter().map(|b| Fr::from(u64::from(*b))));
    inputs.extend([Fr::from(ci.key.0), Fr::from(ci.key.1)]);
    inputs
}

/// Where the provider key's two halves sit among the solver's inputs: after the job id's two
/// halves and the 256 bits of the output hash (see [`solver_inputs`]).
const KEY_INPUTS: Range<usize> = 258..260;

/// The wire of `walletCommitment`: after the constant 1 and `outputCommitment`.
const WALLET_COMMITMENT_WIRE: usize = 2;

/// The terms of A, B (in G1 and G2) and L that come from the wires fixed by the provider key
/// (its two halves and the wallet commitment's Poseidon, about half the circuit), for one key.
/// A provider proves with one key: these are computed with its first proof (or by
/// [`warm_up_for_key`]) and its later proofs' MSMs skip those wires.
#[derive(Clone)]
struct KeyTerms {
    key: [Fr; 2],
    /// The witness of the proof that computed them: its wires fixed by the key (the wallet
    /// commitment's Poseidon) serve every later proof with the key.
    witness: Arc<Vec<Fr>>,
    a: G1Projective,
    b_g1: G1Projective,
    b_g2: G2Projective,
    l: G1Projective,
}

/// The parts of a proof, as numbered in [`create_proof`], in the order the threads take them
/// (largest first); parts 6 to 9 only when the key's terms are not known yet.
const ORDER: [usize; 10] = [0, 1, 6, 2, 7, 3, 8, 9, 4, 5];

/// Parts of a proof that are always computed (the first six).
const PER_PROOF_PARTS: usize = 6;

/// What one part of a proof computes.
enum Part {
    G1(G1Projective),
    G2(G2Projective),
    /// A, and `s·A` once it is complete.
    A(G1Projective, G1Projective),
}

/// Groth16 with snarkjs's witness map and the multi-scalar multiplications on the key's
/// fixed-base tables: H (after the witness map), then B in G2, L, A and B in G1 over the wires
/// the provider key does not fix; when the key's terms are not known yet, the same four over
/// the wires it fixes. Two threads (this one and one more) take the parts from a shared
/// counter, largest first, so a thread slowed by other work on its core takes fewer. B in G1,
/// the smallest, comes last in two halves (low and high digit windows), so that the two
/// threads finish close together. The blinding terms `r·δ`, `s·δ` and `-rs·δ` are one more
/// base of the A, B and L tables.
fn create_proof(
    key: &ProverKey,
    r: Fr,
    s: Fr,
    witness: Vec<Fr>,
    provider: [Fr; 2],
    known: Option<KeyTerms>,
) -> Result<Proof<Bn254>, ZkError> {
    let w: Vec<BigInt<4>> = witness.iter().map(|x| x.into_bigint()).collect();
    // Each wire's scalar in the per-proof MSMs (`varying`) or the key's (`fixed`); zero
    // scalars cost nothing.
    let only = |fixed: bool| -> Vec<BigInt<4>> {
        w.iter()
            .zip(&key.fixed)
            .map(|(v, f)| if *f == fixed { *v } else { BigInt::zero() })
            .collect()
    };
    let varying = only(false);
    let fixed = if known.is_some() {
        Vec::new()
    } else {
        only(true)
    };
    let with = |scalars: &[BigInt<4>], last: Fr| {
        let mut v = Vec::with_capacity(scalars.len() + 1);
        v.extend_from_slice(scalars);
        v.push(last.into_bigint());
        v
    };
    // B in G2 and in G1 take the same scalars.
    let b_scalars = with(&varying, s);
    let b_mid = key.b_g1.windows() / 2;
    let part = |i: usize| -> Result<Part, ZkError> {
        Ok(match i {
            0 => {
                let h = witness_map(key, &witness)?;
                let h: Vec<BigInt<4>> = h.iter().map(|x| x.into_bigint()).collect();
                Part::G1(key.h.msm(&h))
            }
            1 => Part::G2(key.b_g2.msm(&b_scalars)),
            2 => Part::G1(key.l.msm(&with(&varying[key.num_inputs..], -(r * s)))),
            // With the key's terms known, A and B₁ are complete here and their products with
            // s and r (which enter C) are made at once, not after the other parts.
            3 => {
                let a = key.a.msm(&with(&varying, r)) + key.alpha_g1;
                match &known {
                    Some(t) => {
                        let a = a + t.a;
                        Part::A(a, a * s)
                    }
                    None => Part::A(a, G1Projective::zero()),
                }
            }
            4 => {
                let b = key.b_g1.msm_windows(&b_scalars, 0..b_mid) + key.beta_g1;
                Part::G1(match &known {
                    Some(t) => (b + t.b_g1) * r,
                    None => b,
                })
            }
            5 => {
                let b = key.b_g1.msm_windows(&b_scalars, b_mid..key.b_g1.windows());
                Part::G1(if known.is_some() { b * r } else { b })
            }
            // No blinding term: the δ base is past the end of these scalars, so it counts zero.
            6 => Part::G2(key.b_g2.msm(&fixed)),
            7 => Part::G1(key.l.msm(&fixed[key.num_inputs..])),
            8 => Part::G1(key.a.msm(&fixed)),
            _ => Part::G1(key.b_g1.msm(&fixed)),
        })
    };
    let parts = if known.is_some() {
        PER_PROOF_PARTS
    } else {
        ORDER.len()
    };
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::with_capacity(parts);
        loop {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let Some(&i) = ORDER.iter().filter(|i| **i < parts).nth(n) else {
                return done;
            };
            done.push((i, part(i)));
        }
    };
    let (mut results, theirs) = std::thread::scope(|scope| {
        let other = scope.spawn(work);
        let mine = work();
        (mine, join(other))
    });
    results.extend(theirs);

    let mut g1 = [G1Projective::zero(); ORDER.len()];
    let mut g2 = [G2Projective::zero(); ORDER.len()];
    let mut s_a = G1Projective::zero();
    for (i, result) in results {
        match result? {
            Part::G1(p) => g1[i] = p,
            Part::G2(p) => g2[i] = p,
            Part::A(a, sa) => (g1[i], s_a) = (a, sa),
        }
    }

    // A = α + Σ wᵢ·Aᵢ + r·δ;  B = β + Σ wᵢ·Bᵢ + s·δ;  C = s·A + r·B₁ - rs·δ + Σ wⱼ·Lⱼ + Σ hₖ·Hₖ.
    let (terms, g_a, s_a, r_b1) = match known {
        Some(t) => (t, g1[3], s_a, g1[4] + g1[5]),
        None => {
            let t = KeyTerms {
                key: provider,
                witness: Arc::new(witness),
                b_g2: g2[6],
                l: g1[7],
                a: g1[8],
                b_g1: g1[9],
            };
            if let Ok(mut slot) = key.key_terms.lock() {
                *slot = Some(t.clone());
            }
            let g_a = g1[3] + t.a;
            let r_b1 = (g1[4] + g1[5] + t.b_g1) * r;
            (t, g_a, g_a * s, r_b1)
        }
    };
    let g2_b = g2[1] + terms.b_g2 + key.beta_g2;
    let g_c = s_a + r_b1 + g1[0] + g1[2] + terms.l;
    let ac = G1Projective::normalize_batch(&[g_a, g_c]);
    Ok(Proof {
        a: ac[0],
        b: g2_b.into_affine(),
        c: ac[1],
    })
}

/// A uniformly random scalar from the operating system's generator (64 bytes reduced, so the
/// bias is negligible).
fn random_scalar() -> Result<Fr, ZkError> {
    let mut bytes = [0u8; 64];
    getrandom::fill(&mut bytes)
        .map_err(|e| ZkError::Proving(format!("no randomness from the OS: {e}")))?;
    Ok(Fr::from_le_bytes_mod_order(&bytes))
}

/// snarkjs's witness map: `A·B - C` on the coset of the evaluation domain that the `.zkey`'s
/// H query is written for (see `fft`). The rows past the constraints are the public inputs'
/// (their A is the input, their B and C zero), then zero padding.
fn witness_map(key: &ProverKey, witness: &[Fr]) -> Result<Vec<Fr>, ZkError> {
    let (a_rows, b_rows) = match &key.matrices[..] {
        [a, b, ..] => (a, b),
        _ => {
            return Err(ZkError::Proving(
                "the proving key has no A and B matrices".into(),
            ))
        }
    };
    let n = key.fft.size();
    let eval = |row: &[(Fr, usize)]| -> Fr { row.iter().map(|(k, i)| *k * witness[*i]).sum() };
    let mut a = vec![Fr::zero(); n];
    let mut b = vec![Fr::zero(); n];
    let mut c = vec![Fr::zero(); n];
    for i in 0..key.num_constraints {
        a[i] = eval(&a_rows[i]);
        b[i] = eval(&b_rows[i]);
        c[i] = a[i] * b[i];
    }
    a[key.num_constraints..key.num_constraints + key.num_inputs]
        .copy_from_slice(&witness[..key.num_inputs]);
    for v in [&mut a, &mut b, &mut c] {
        key.fft.to_coset(v);
    }
    for ((a, b), c) in a.iter_mut().zip(&b).zip(&c) {
        *a = *a * b - c;
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_fixes_the_wallet_commitment_and_not_the_rest() {
        let key = prover_key().unwrap();
        let fixed = &key.fixed;
        // Wire 1 is outputCommitment, 2 walletCommitment, 3 and 4 the job id.
        assert_eq!(&fixed[..5], &[true, false, true, false, false]);
        let inputs = 5..5 + 256;
        assert!(
            fixed[inputs].iter().all(|f| !f),
            "no hash bit is fixed by the key"
        );
        assert!(fixed[261] && fixed[262], "the key's halves");
        // One of the two Poseidon hashes: close to half of the wires.
        let n = fixed.iter().filter(|f| **f).count();
        assert!((200..300).contains(&n), "{n} fixed wires");
    }

    /// Proofs under two keys, switching back and forth: the key terms are recomputed on each
    /// switch and reused otherwise, and every proof verifies.
    #[test]
    fn key_terms_follow_the_key() {
        // A key of its own: other tests prove concurrently with the shared one.
        let key = load().unwrap();
        let keys = [[0x11u8; 32], [0x22; 32], [0x22; 32], [0x11; 32]];
        for (i, k) in keys.iter().enumerate() {
            let job = [i as u8; 32];
            let (proof, public) = prove_with(&key, b"answer", k, &job).unwrap();
            crate::zk::verify_job(&proof, &public, b"answer", k, &job).unwrap();
            let cached = key.key_terms.lock().unwrap().clone().unwrap();
            let inputs = solver_inputs(&circuit_inputs(b"", k, &job));
            assert_eq!(cached.key[..], inputs[KEY_INPUTS]);
        }
    }
}
