//! `edgent zk prove` / `edgent zk verify`, driven through `edgent::zk::cli::run`.

use edgent::zk::cli::{run, ZkCmd};
use edgent::zk::{self, PublicSignals};

#[test]
fn prove_then_verify_files() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("output.txt");
    std::fs::write(&output, b"an answer worth paying for").unwrap();
    let proof = dir.path().join("proof.json");
    let public = dir.path().join("public.json");
    let key_hex = "ab".repeat(32);
    let job_hex = format!("0x{}", "01".repeat(32));
    run(ZkCmd::Prove {
        output_file: output.clone(),
        provider_key: key_hex.clone(),
        job_id: job_hex.clone(),
        proof_out: proof.clone(),
        public_out: public.clone(),
    })
    .unwrap();

    let signals = PublicSignals::from_json(&std::fs::read_to_string(&public).unwrap()).unwrap();
    assert_eq!(
        signals,
        zk::commitments(b"an answer worth paying for", &[0xab; 32], &[0x01; 32]).public_signals()
    );
    run(ZkCmd::Verify {
        proof: proof.clone(),
        public: public.clone(),
        key: None,
    })
    .unwrap();

    // Against another key: refused.
    let other = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/circuits/testdata/other_verification_key.json"
    ));
    let err = run(ZkCmd::Verify {
        proof: proof.clone(),
        public: public.clone(),
        key: Some(other),
    })
    .unwrap_err();
    assert!(format!("{err:#}").contains("does not verify"), "{err:#}");

    // Another job's public signals: refused.
    let wrong = zk::commitments(b"an answer worth paying for", &[0xab; 32], &[0x02; 32]);
    std::fs::write(&public, wrong.public_signals().to_json()).unwrap();
    let err = run(ZkCmd::Verify {
        proof: proof.clone(),
        public: public.clone(),
        key: None,
    })
    .unwrap_err();
    assert!(format!("{err:#}").contains("does not verify"), "{err:#}");

    // Truncated proof file: a parse error naming the file.
    let text = std::fs::read_to_string(&proof).unwrap();
    std::fs::write(&proof, &text[..text.len() / 2]).unwrap();
    let err = run(ZkCmd::Verify {
        proof: proof.clone(),
        public,
        key: None,
    })
    .unwrap_err();
    assert!(format!("{err:#}").contains("proof.json"), "{err:#}");
}

#[test]
fn bad_hex_arguments_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("o");
    std::fs::write(&output, b"x").unwrap();
    for (key, job) in [
        ("zz".repeat(32), "00".repeat(32)),
        ("ab".repeat(31), "00".repeat(32)),
        ("ab".repeat(32), "00".repeat(33)),
    ] {
        let err = run(ZkCmd::Prove {
            output_file: output.clone(),
            provider_key: key,
            job_id: job,
            proof_out: dir.path().join("p.json"),
            public_out: dir.path().join("q.json"),
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("--"), "{err:#}");
    }
}
