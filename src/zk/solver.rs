//! The circuit's witness, computed natively from its constraints (`circuits/artifacts/edgent.r1cs`).
//!
//! Once per process a plan is made: starting from the constant 1 and the inputs, each
//! constraint `A·B = C` whose only unknown wire appears in `C` alone (and with a non-zero
//! coefficient) determines that wire, `w = (A·B - C')/k`, where `C'` is `C` without it.
//! Constraints are taken in file order, in repeated passes until none is left. Constraints with
//! no unknown left when reached (the bit checks, say) are checked after solving. A circuit
//! with a wire that no constraint determines this way (circom's `<--` hints) is refused when
//! the plan is made; `circuits/edgent.circom` has none.
//!
//! Every solved wire is forced by its constraint, so the witness is the one circom's own
//! witness program computes, at a fraction of the cost: a few thousand field operations.

use ark_bn254::Fr;
use ark_ff::{Field, One, Zero};

use super::error::ZkError;
use super::r1cs::{Lc, R1cs};

/// `w[wire] = (A·B - C)·inv`.
struct Step {
    wire: u32,
    a: Lc,
    b: Lc,
    c: Lc,
    inv: Fr,
}

/// A constraint whose wires are all known before it is reached: checked, not solved.
struct Check {
    index: usize,
    a: Lc,
    b: Lc,
    c: Lc,
}

/// The order in which a circuit's constraints determine its wires.
pub(crate) struct WitnessSolver {
    n_wires: usize,
    /// Wire of the first input (the public inputs, then the private ones, follow).
    first_input: usize,
    n_inputs: usize,
    steps: Vec<Step>,
    checks: Vec<Check>,
}

fn eval(lc: &Lc, w: &[Fr]) -> Fr {
    let mut sum = Fr::zero();
    for (wire, coeff) in lc {
        sum += w[*wire as usize] * coeff;
    }
    sum
}

/// `A·B - C`, skipping the product when a side is empty.
fn residue(a: &Lc, b: &Lc, c: &Lc, w: &[Fr]) -> Fr {
    let ab = if a.is_empty() || b.is_empty() {
        Fr::zero()
    } else {
        eval(a, w) * eval(b, w)
    };
    ab - eval(c, w)
}

impl WitnessSolver {
    /// Plans the solution of `r1cs`; fails if some wire is not determined.
    pub(crate) fn new(r1cs: R1cs) -> Result<Self, String> {
        let first_input = 1 + r1cs.n_pub_out;
        let n_inputs = r1cs.n_pub_in + r1cs.n_prv_in;
        let mut known = vec![false; r1cs.n_wires];
        known[0] = true;
        for k in &mut known[first_input..first_input + n_inputs] {
            *k = true;
        }
        let mut pending: Vec<(usize, _)> = r1cs.constraints.into_iter().enumerate().collect();
        let (mut steps, mut checks) = (Vec::new(), Vec::new());
        loop {
            let before = pending.len();
            let mut still = Vec::with_capacity(before);
            for (index, con) in pending {
                let unknown_in = |lc: &Lc| lc.iter().any(|(w, _)| !known[*w as usize]);
                let mut unknown_c = con.c.iter().filter(|(w, _)| !known[*w as usize]);
                let first = unknown_c.next().map(|(w, _)| *w);
                let ab_known = !unknown_in(&con.a) && !unknown_in(&con.b);
                match first {
                    None if ab_known => checks.push(Check {
                        index,
                        a: con.a,
                        b: con.b,
                        c: con.c,
                    }),
                    Some(wire)
                        if ab_known
                            && con.c.iter().all(|(w, _)| *w == wire || known[*w as usize]) =>
                    {
                        let k: Fr = con
                            .c
                            .iter()
                            .filter(|(w, _)| *w == wire)
                            .map(|(_, k)| *k)
                            .sum();
                        match k.inverse() {
                            Some(inv) => {
                                let c = con.c.into_iter().filter(|(w, _)| *w != wire).collect();
                                known[wire as usize] = true;
                                steps.push(Step {
                                    wire,
                                    a: con.a,
                                    b: con.b,
                                    c,
                                    inv,
                                });
                            }
                            None => still.push((index, con)),
                        }
                    }
                    _ => still.push((index, con)),
                }
            }
            pending = still;
            if pending.is_empty() || pending.len() == before {
                break;
            }
        }
        if let Some((index, _)) = pending.first() {
            return Err(format!(
                "{} constraints (the first is #{index}) determine no wire on their own: the \
                 circuit needs hints the native solver does not compute",
                pending.len()
            ));
        }
        if let Some(wire) = known.iter().position(|k| !k) {
            return Err(format!(
                "wire {wire} appears in no constraint that determines it"
            ));
        }
        Ok(WitnessSolver {
            n_wires: known.len(),
            first_input,
            n_inputs,
            steps,
            checks,
        })
    }

    /// Which wires are a function of the inputs at `positions` alone (positions as in
    /// [`solve`](Self::solve)'s `inputs`): the constant, those inputs, and every wire solved
    /// from them only. Such wires keep their values while those inputs do.
    pub(crate) fn fixed_by(&self, positions: std::ops::Range<usize>) -> Vec<bool> {
        let mut fixed = vec![false; self.n_wires];
        fixed[0] = true;
        for i in positions.filter(|i| *i < self.n_inputs) {
            fixed[self.first_input + i] = true;
        }
        // Steps come in the order they were solved: a step's inputs are decided before it.
        for s in &self.steps {
            let all = |lc: &Lc| lc.iter().all(|(w, _)| fixed[*w as usize]);
            fixed[s.wire as usize] = all(&s.a) && all(&s.b) && all(&s.c);
        }
        fixed
    }

    /// The full witness (the constant 1, the public outputs, the inputs, the rest) for
    /// `inputs`: the public ones, then the private ones, in the order the circuit's main
    /// component declares them. Fails, naming the constraint, if the inputs violate one.
    #[cfg(test)]
    pub(crate) fn solve(&self, inputs: &[Fr]) -> Result<Vec<Fr>, ZkError> {
        self.solve_given(inputs, None)
    }

    /// [`solve`](Self::solve), with the wires marked in `given.0` copied from the witness
    /// `given.1` instead of computed: wires [`fixed_by`](Self::fixed_by) inputs that are the
    /// same in both.
    pub(crate) fn solve_given(
        &self,
        inputs: &[Fr],
        given: Option<(&[bool], &[Fr])>,
    ) -> Result<Vec<Fr>, ZkError> {
        if inputs.len() != self.n_inputs {
            return Err(ZkError::Witness(format!(
                "{} inputs given, the circuit takes {}",
                inputs.len(),
                self.n_inputs
            )));
        }
        let mut w = vec![Fr::zero(); self.n_wires];
        w[0] = Fr::one();
        w[self.first_input..self.first_input + self.n_inputs].copy_from_slice(inputs);
        let given = given.filter(|(mask, values)| mask.len() == w.len() && values.len() == w.len());
        for s in &self.steps {
            let i = s.wire as usize;
            w[i] = match given {
                Some((mask, values)) if mask[i] => values[i],
                _ => residue(&s.a, &s.b, &s.c, &w) * s.inv,
            };
        }
        for c in &self.checks {
            if !residue(&c.a, &c.b, &c.c, &w).is_zero() {
                return Err(ZkError::Witness(format!(
                    "the inputs violate constraint #{}",
                    c.index
                )));
            }
        }
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::WitnessSolver;
    use crate::zk::circuit_inputs;
    use crate::zk::field::to_decimal;
    use crate::zk::prove::solver_inputs;
    use crate::zk::r1cs::read_r1cs;
    use std::path::Path;

    static R1CS: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/circuits/artifacts/edgent.r1cs"
    ));

    fn solver() -> WitnessSolver {
        WitnessSolver::new(read_r1cs(R1CS).unwrap()).unwrap()
    }

    /// Every wire of the native witness equals the one snarkjs computes with circom's own
    /// witness program (`edgent.wasm`). Needs `npm ci`.
    #[test]
    fn native_witness_equals_snarkjs_witness() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert!(
            root.join("node_modules/snarkjs").exists(),
            "snarkjs missing: run `npm ci` in {} first",
            root.display()
        );
        let long = vec![0x5au8; 70_000];
        let cases: [(&[u8], [u8; 32], [u8; 32]); 3] = [
            (b"", [0x00; 32], [0x00; 32]),
            (&long, [0xff; 32], [0x01; 32]),
            (b"Paris", [0x3c; 32], [0xfe; 32]),
        ];
        let inputs: Vec<String> = cases
            .iter()
            .map(|(o, k, j)| circuit_inputs(o, k, j).to_snarkjs_json().to_string())
            .collect();
        let script = r#"
            const snarkjs = require(process.argv[1] + "/node_modules/snarkjs");
            (async () => {
                const wasm = process.argv[1] + "/circuits/artifacts/edgent.wasm";
                const out = [];
                for (const input of process.argv.slice(2)) {
                    const wtns = { type: "mem" };
                    await snarkjs.wtns.calculate(JSON.parse(input), wasm, wtns);
                    out.push((await snarkjs.wtns.exportJson(wtns)).map((x) => x.toString()));
                }
                // Exit only once the pipe has taken all of it (stdout is asynchronous).
                process.stdout.write(JSON.stringify(out), () => process.exit(0));
            })().catch((e) => { console.error(e); process.exit(1); });
        "#;
        let out = std::process::Command::new("node")
            .arg("-e")
            .arg(script)
            .arg(root)
            .args(&inputs)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected: Vec<Vec<String>> = serde_json::from_slice(&out.stdout).unwrap();
        let solver = solver();
        for (i, ((o, k, j), want)) in cases.iter().zip(expected).enumerate() {
            let got: Vec<String> = solver
                .solve(&solver_inputs(&circuit_inputs(o, k, j)))
                .unwrap()
                .iter()
                .map(to_decimal)
                .collect();
            assert_eq!(got.len(), 743, "case {i}");
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn inputs_that_break_a_constraint_are_refused() {
        let mut inputs = solver_inputs(&circuit_inputs(b"x", &[1; 32], &[2; 32]));
        // A "bit" that is 2 violates its bit check.
        inputs[2] = ark_bn254::Fr::from(2u64);
        let err = solver().solve(&inputs).unwrap_err().to_string();
        assert!(err.contains("violate constraint #0"), "{err}");
        let err = solver().solve(&inputs[1..]).unwrap_err().to_string();
        assert!(err.contains("inputs given"), "{err}");
    }

    #[test]
    fn a_circuit_with_a_hint_is_refused() {
        use crate::zk::r1cs::{Constraint, R1cs};
        use ark_bn254::Fr;
        // x is an input; y appears only as y·y = x (a square root: a hint, not determined).
        let r1cs = R1cs {
            n_wires: 3,
            n_pub_out: 0,
            n_pub_in: 1,
            n_prv_in: 0,
            constraints: vec![Constraint {
                a: vec![(2, Fr::from(1u64))],
                b: vec![(2, Fr::from(1u64))],
                c: vec![(1, Fr::from(1u64))],
            }],
        };
        let err = WitnessSolver::new(r1cs).err().unwrap();
        assert!(err.contains("determine no wire"), "{err}");
    }
}
