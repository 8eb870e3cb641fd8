//! Interoperability with snarkjs, the reference implementation: Rust proofs verify with
//! `snarkjs groth16 verify`, snarkjs proofs verify in Rust, and the circuit's outputs computed
//! by snarkjs's own witness calculator equal the native commitments.
//!
//! Needs `npm ci` (snarkjs at node_modules/.bin/snarkjs); without it these tests fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use edgent::zk::{self, PublicSignals, SnarkjsProof, ZkError};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn snarkjs() -> PathBuf {
    let p = root().join("node_modules/.bin/snarkjs");
    assert!(
        p.exists(),
        "snarkjs not found at {}: run `npm ci` in {} before these tests",
        p.display(),
        root().display()
    );
    p
}

fn artifact(name: &str) -> PathBuf {
    root().join("circuits/artifacts").join(name)
}

/// Runs the snarkjs CLI; returns (success, stdout+stderr).
fn run_snarkjs(args: &[&Path]) -> (bool, String) {
    let out = Command::new(snarkjs())
        .args(args)
        .output()
        .expect("run snarkjs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn rust_proof_verifies_with_snarkjs_cli() {
    let dir = tempfile::tempdir().unwrap();
    let job = [0x42; 32];
    let key = [0x07; 32];
    let (proof, public) = zk::prove(b"hello from rust", &key, &job).unwrap();
    let proof_path = dir.path().join("proof.json");
    let public_path = dir.path().join("public.json");
    std::fs::write(&proof_path, proof.to_json()).unwrap();
    std::fs::write(&public_path, public.to_json()).unwrap();
    let vk = artifact("verification_key.json");
    let verify = Path::new("groth16");
    let (ok, text) = run_snarkjs(&[verify, Path::new("verify"), &vk, &public_path, &proof_path]);
    assert!(
        ok && text.contains("OK"),
        "snarkjs rejected a Rust proof:\n{text}"
    );

    // The same check fails for another job's public signals, so the pass above means something.
    let other = zk::commitments(b"hello from rust", &key, &[0x43; 32]).public_signals();
    std::fs::write(&public_path, other.to_json()).unwrap();
    let (ok, text) = run_snarkjs(&[verify, Path::new("verify"), &vk, &public_path, &proof_path]);
    assert!(
        !ok || !text.contains("OK!"),
        "snarkjs accepted a proof for another job:\n{text}"
    );
}

#[test]
fn snarkjs_proof_verifies_in_rust() {
    let dir = tempfile::tempdir().unwrap();
    let output = b"hello from snarkjs";
    let key = [0xc3; 32];
    let job = [0x99; 32];
    let input = dir.path().join("input.json");
    std::fs::write(
        &input,
        zk::circuit_inputs(output, &key, &job)
            .to_snarkjs_json()
            .to_string(),
    )
    .unwrap();
    let proof_path = dir.path().join("proof.json");
    let public_path = dir.path().join("public.json");
    let (ok, text) = run_snarkjs(&[
        Path::new("groth16"),
        Path::new("fullprove"),
        &input,
        &artifact("edgent.wasm"),
        &artifact("edgent_final.zkey"),
        &proof_path,
        &public_path,
    ]);
    assert!(ok, "snarkjs fullprove failed:\n{text}");
    let proof = SnarkjsProof::from_json(&std::fs::read_to_string(&proof_path).unwrap()).unwrap();
    let public = PublicSignals::from_json(&std::fs::read_to_string(&public_path).unwrap()).unwrap();
    zk::verify(&proof, &public).expect("Rust must accept snarkjs's proof");
    zk::verify_job(&proof, &public, output, &key, &job).unwrap();
    assert!(matches!(
        zk::verify_job(&proof, &public, output, &key, &[0x98; 32]),
        Err(ZkError::PublicSignalMismatch { .. })
    ));
}

/// snarkjs's witness calculator (not ours) computes the circuit's public outputs; they must
/// equal the native commitments for awkward inputs.
#[test]
fn snarkjs_circuit_outputs_equal_native_commitments() {
    let dir = tempfile::tempdir().unwrap();
    let long = vec![0xabu8; 100_000];
    let cases: Vec<(Vec<u8>, [u8; 32], [u8; 32])> = vec![
        (Vec::new(), [0x01; 32], [0x00; 32]),
        (long, [0x80; 32], [0xff; 32]),
        (b"ff key".to_vec(), [0xff; 32], [0x12; 32]),
    ];
    let mut inputs = Vec::new();
    for (i, (output, key, job)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("input{i}.json"));
        std::fs::write(
            &path,
            zk::circuit_inputs(output, key, job)
                .to_snarkjs_json()
                .to_string(),
        )
        .unwrap();
        inputs.push(path);
    }
    // One node process computes all witnesses with snarkjs's wtns.calculate and prints each
    // witness's public part (indices 1..=4).
    snarkjs(); // clear failure if npm ci was not run
    let script = r#"
        const snarkjs = require(process.argv[1] + "/node_modules/snarkjs");
        const fs = require("fs");
        (async () => {
            const wasm = process.argv[1] + "/circuits/artifacts/edgent.wasm";
            const out = [];
            for (const f of process.argv.slice(2)) {
                const input = JSON.parse(fs.readFileSync(f, "utf8"));
                const wtns = { type: "mem" };
                await snarkjs.wtns.calculate(input, wasm, wtns);
                const w = await snarkjs.wtns.exportJson(wtns);
                out.push(w.slice(1, 5).map((x) => x.toString()));
            }
            console.log(JSON.stringify(out));
            process.exit(0);
        })().catch((e) => { console.error(e); process.exit(1); });
    "#;
    let out = Command::new("node")
        .arg("-e")
        .arg(script)
        .arg(root())
        .args(&inputs)
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<Vec<String>> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got.len(), cases.len());
    for (i, ((output, key, job), public)) in cases.iter().zip(got).enumerate() {
        let want = zk::commitments(output, key, job)
            .public_signals()
            .to_decimal_strings();
        assert_eq!(public, want, "case {i}");
    }
}
