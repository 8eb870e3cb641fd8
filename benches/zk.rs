//! Benchmark (not a test): the Rust prover and verifier against snarkjs on this machine.
//!
//! `cargo bench --bench zk` (needs `npm ci`). Proves and verifies one input in Rust, with
//! snarkjs in-process (warm: `groth16.fullProve` in a node loop with wasm and zkey already in
//! memory) and with the `snarkjs groth16 fullprove` / `verify` command lines, and prints the
//! ratios. Rust and snarkjs take turns (three warm rounds; Rust right before and after the
//! command-line runs), so each ratio compares figures taken under the same machine load. Peak
//! RSS of the prover and of the verifier is measured in child processes that do only that
//! (this binary re-executed), read from /proc/self/status (VmHWM).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use edgent::zk::{self, PublicSignals, SnarkjsProof};

const OUTPUT: &[u8] = b"Paris is the capital and largest city of France.";
const KEY: [u8; 32] = [0x3c; 32];
const JOB: [u8; 32] = [0x7e; 32];
const CHILD_ENV: &str = "EDGENT_ZK_BENCH_CHILD";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time_n(n: usize, mut f: impl FnMut()) -> f64 {
    median(
        (0..n)
            .map(|_| {
                let t = Instant::now();
                f();
                ms(t.elapsed())
            })
            .collect(),
    )
}

/// Child mode: do one thing, print peak RSS in KiB (for "prove", including `warm_up`'s tables).
fn child(mode: &str, dir: &Path) {
    match mode {
        "prove" => {
            let (p, s) = zk::prove(OUTPUT, &KEY, &JOB).expect("prove");
            std::fs::write(dir.join("proof.json"), p.to_json()).expect("write");
            std::fs::write(dir.join("public.json"), s.to_json()).expect("write");
        }
        "verify" => {
            let p =
                SnarkjsProof::from_json(&std::fs::read_to_string(dir.join("proof.json")).unwrap())
                    .unwrap();
            let s = PublicSignals::from_json(
                &std::fs::read_to_string(dir.join("public.json")).unwrap(),
            )
            .unwrap();
            zk::verify(&p, &s).expect("verify");
        }
        // For profilers: prove in a loop, nothing else.
        "prove-loop" => {
            for _ in 0..100 {
                zk::prove(OUTPUT, &KEY, &JOB).expect("prove");
            }
        }
        _ => panic!("unknown child mode {mode}"),
    }
    println!("{}", peak_rss_kib());
}

fn child_rss(mode: &str, dir: &Path) -> u64 {
    let out = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, mode)
        .env("EDGENT_ZK_BENCH_DIR", dir)
        .output()
        .expect("re-exec bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn main() {
    if let Ok(mode) = std::env::var(CHILD_ENV) {
        let dir = PathBuf::from(std::env::var("EDGENT_ZK_BENCH_DIR").unwrap());
        child(&mode, &dir);
        return;
    }
    // `cargo bench` passes `--bench`; nothing else to parse.
    let snarkjs = root().join("node_modules/.bin/snarkjs");
    assert!(
        snarkjs.exists(),
        "run `npm ci` first: {} is missing",
        snarkjs.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // --- Rust
    let t = Instant::now();
    zk::warm_up().unwrap();
    let warm_up = ms(t.elapsed());
    // What a provider daemon does at start: the proof parts fixed by its key.
    let t = Instant::now();
    zk::warm_up_for_key(&KEY).unwrap();
    let warm_key = ms(t.elapsed());
    let (proof, public) = zk::prove(OUTPUT, &KEY, &JOB).unwrap();
    let rust_verify = time_n(200, || zk::verify(&proof, &public).unwrap());
    let rust_commit = time_n(200, || {
        zk::commitments(OUTPUT, &KEY, &JOB);
    });
    // A new key every time: the key's parts are computed in each proof.
    let mut other = KEY;
    let rust_new_key = time_n(15, || {
        other[0] = other[0].wrapping_add(1);
        zk::prove(OUTPUT, &other, &JOB).unwrap();
    });
    zk::warm_up_for_key(&KEY).unwrap();
    let prove_rss = child_rss("prove", d);
    let verify_rss = child_rss("verify", d);

    // --- snarkjs in-process, warm
    let input = d.join("input.json");
    std::fs::write(
        &input,
        zk::circuit_inputs(OUTPUT, &KEY, &JOB)
            .to_snarkjs_json()
            .to_string(),
    )
    .unwrap();
    let script = r#"
        const root = process.argv[1], inputFile = process.argv[2];
        const snarkjs = require(root + "/node_modules/snarkjs");
        const fs = require("fs");
        (async () => {
            const input = JSON.parse(fs.readFileSync(inputFile, "utf8"));
            const wasm = { type: "mem", data: new Uint8Array(fs.readFileSync(root + "/circuits/artifacts/edgent.wasm")) };
            const zkey = { type: "mem", data: new Uint8Array(fs.readFileSync(root + "/circuits/artifacts/edgent_final.zkey")) };
            const vk = JSON.parse(fs.readFileSync(root + "/circuits/artifacts/verification_key.json", "utf8"));
            const med = (v) => v.sort((a, b) => a - b)[Math.floor(v.length / 2)];
            let r;
            for (let i = 0; i < 3; i++) r = await snarkjs.groth16.fullProve(input, wasm, zkey);
            const prove = [];
            for (let i = 0; i < 15; i++) {
                const t = process.hrtime.bigint();
                r = await snarkjs.groth16.fullProve(input, wasm, zkey);
                prove.push(Number(process.hrtime.bigint() - t) / 1e6);
            }
            for (let i = 0; i < 3; i++) await snarkjs.groth16.verify(vk, r.publicSignals, r.proof);
            const verify = [];
            for (let i = 0; i < 30; i++) {
                const t = process.hrtime.bigint();
                const ok = await snarkjs.groth16.verify(vk, r.publicSignals, r.proof);
                verify.push(Number(process.hrtime.bigint() - t) / 1e6);
                if (!ok) throw new Error("snarkjs verify failed");
            }
            console.log(JSON.stringify({ prove: med(prove), verify: med(verify), maxRssKiB: process.resourceUsage().maxRSS }));
            process.exit(0);
        })().catch((e) => { console.error(e); process.exit(1); });
    "#;
    // Median of 40 proofs with the provider's key, as a provider proves.
    let rust_prove_ms = || {
        time_n(40, || {
            zk::prove(OUTPUT, &KEY, &JOB).unwrap();
        })
    };
    // Rust and snarkjs take turns, three rounds, so that both see the same load on this
    // machine; each ratio compares one round's medians, and the median round is reported.
    let mut rounds = Vec::new();
    let mut js_rss = 0;
    for _ in 0..3 {
        let rust = rust_prove_ms();
        let out = Command::new("node")
            .args(["-e", script])
            .arg(root())
            .arg(&input)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let warm: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let js_prove = warm["prove"].as_f64().unwrap();
        let js_verify = warm["verify"].as_f64().unwrap();
        js_rss = js_rss.max(warm["maxRssKiB"].as_u64().unwrap_or(0));
        rounds.push((js_prove / rust, rust, js_prove, js_verify));
    }
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (_, rust_prove, js_prove, js_verify) = rounds[1];
    for (i, (ratio, rust, js, _)) in rounds.iter().enumerate() {
        println!("  round {i}: Rust {rust:.2} ms, snarkjs warm {js:.2} ms: {ratio:.1}x");
    }

    // --- snarkjs command line
    let art = |n: &str| root().join("circuits/artifacts").join(n);
    let rust_before = rust_prove_ms();
    let cli_prove = time_n(5, || {
        let st = Command::new(&snarkjs)
            .args(["groth16", "fullprove"])
            .args([&input, &art("edgent.wasm"), &art("edgent_final.zkey")])
            .args([d.join("p.json"), d.join("s.json")])
            .output()
            .unwrap();
        assert!(st.status.success());
    });
    let rust_after = rust_prove_ms();
    let rust_cli_round = (rust_before + rust_after) / 2.0;
    let cli_verify = time_n(3, || {
        let st = Command::new(&snarkjs)
            .args(["groth16", "verify"])
            .args([
                art("verification_key.json"),
                d.join("s.json"),
                d.join("p.json"),
            ])
            .output()
            .unwrap();
        assert!(st.status.success());
    });

    println!(
        "edgent zk benchmark ({} constraints circuit, medians, this machine)",
        738
    );
    println!("  Rust warm_up          {warm_up:9.2} ms   (once per process: key parsing, fixed-base tables, witness plan)");
    println!("  Rust warm_up_for_key  {warm_key:9.2} ms   (once per provider key: a first proof, which computes the key's parts)");
    println!("  Rust prove            {rust_prove:9.2} ms   (same key, as a provider proves; {rust_cli_round:.2} ms around the CLI runs)");
    println!("  Rust prove, new key   {rust_new_key:9.2} ms   (a different key every proof)");
    println!("  Rust verify           {rust_verify:9.2} ms");
    println!("  Rust commitments      {rust_commit:9.2} ms   (keccak256 + 2 Poseidon, native)");
    println!(
        "  snarkjs prove (warm)  {js_prove:9.2} ms   -> Rust is {:.1}x faster",
        js_prove / rust_prove
    );
    println!(
        "  snarkjs verify (warm) {js_verify:9.2} ms   -> Rust is {:.1}x faster",
        js_verify / rust_verify
    );
    println!(
        "  snarkjs fullprove CLI {cli_prove:9.2} ms   -> Rust is {:.0}x faster",
        cli_prove / rust_cli_round
    );
    println!(
        "  snarkjs verify CLI    {cli_verify:9.2} ms   -> Rust is {:.0}x faster",
        cli_verify / rust_verify
    );
    println!(
        "  peak RSS: Rust prover {:.1} MB, Rust verifier {:.1} MB, node (warm loop) {:.1} MB",
        prove_rss as f64 / 1024.0,
        verify_rss as f64 / 1024.0,
        js_rss as f64 / 1024.0
    );
}
