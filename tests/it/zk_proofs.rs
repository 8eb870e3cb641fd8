//! The Groth16 proof in Rust alone: valid proofs verify; every kind of wrong proof, wrong
//! statement and malformed JSON is refused with an error (never a panic).

use edgent::zk::{self, PublicSignals, SnarkjsProof, VerifyingKey, ZkError};

const JOB: [u8; 32] = [0x11; 32];
const KEY: [u8; 32] = [0xa5; 32];
const OUTPUT: &[u8] = b"The capital of France is Paris.";

fn job(n: u8) -> [u8; 32] {
    let mut j = [0u8; 32];
    j[0] = 0xee;
    j[31] = n;
    j
}

fn proof() -> (SnarkjsProof, PublicSignals) {
    zk::prove(OUTPUT, &KEY, &JOB).expect("prove")
}

fn other_key() -> VerifyingKey {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/circuits/testdata/other_verification_key.json"
    ))
    .unwrap();
    VerifyingKey::from_snarkjs_json(&text).unwrap()
}

#[test]
fn a_valid_proof_verifies() {
    let (p, public) = proof();
    zk::verify(&p, &public).expect("valid proof must verify");
    zk::verify_job(&p, &public, OUTPUT, &KEY, &JOB).expect("valid proof for this job");
    // And survives a round trip through snarkjs JSON, as it travels on the wire.
    let p2 = SnarkjsProof::from_json(&p.to_json()).unwrap();
    let public2 = PublicSignals::from_json(&public.to_json()).unwrap();
    assert_eq!(p2, p);
    assert_eq!(public2, public);
    zk::verify(&p2, &public2).unwrap();
}

#[test]
fn public_signals_are_the_native_commitments_and_job_id() {
    let (_, public) = proof();
    let c = zk::commitments(OUTPUT, &KEY, &JOB);
    let s = public.to_decimal_strings();
    assert_eq!(s[0], c.output_commitment_decimal());
    assert_eq!(s[1], c.wallet_commitment_decimal());
    assert_eq!(s[2], u128::from_be_bytes([0x11; 16]).to_string());
    assert_eq!(s[3], u128::from_be_bytes([0x11; 16]).to_string());
    assert_eq!(public, c.public_signals());
}

#[test]
fn circuit_outputs_equal_native_commitments_for_edge_inputs() {
    let long = vec![0x5au8; 1 << 20];
    let cases: [(&[u8], [u8; 32]); 3] = [
        (b"", KEY),
        (&long, [0x01; 32]),
        (b"all-ones key", [0xff; 32]),
    ];
    for (i, (output, key)) in cases.iter().enumerate() {
        let job_id = job(i as u8);
        let (p, public) = zk::prove(output, key, &job_id).unwrap();
        assert_eq!(
            public,
            zk::commitments(output, key, &job_id).public_signals(),
            "case {i}"
        );
        zk::verify_job(&p, &public, output, key, &job_id).unwrap();
    }
}

#[test]
fn commitments_have_the_documented_shape() {
    let c = zk::commitments(b"", &[0xff; 32], &JOB);
    let hex = c.output_hash_hex();
    assert!(hex.starts_with("0x") && hex.len() == 66, "{hex}");
    assert_eq!(hex, format!("0x{}", hex::encode(c.output_commitment)));
    // A different output, key or job changes what it should change and nothing else.
    let d = zk::commitments(b"x", &[0xff; 32], &job(9));
    assert_ne!(c.output_commitment, d.output_commitment);
    assert_eq!(c.wallet_commitment, d.wallet_commitment);
    let e = zk::commitments(b"", &[0xfe; 32], &JOB);
    assert_eq!(c.output_commitment, e.output_commitment);
    assert_ne!(c.wallet_commitment, e.wallet_commitment);
    // keccak256 is Ethereum's: keccak256("") is c5d2…a470.
    assert_eq!(
        hex::encode(zk::keccak256(b"")),
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    );
}

#[test]
fn changed_output_is_rejected() {
    let (p, public) = proof();
    let err =
        zk::verify_job(&p, &public, b"The capital of France is Lyon.", &KEY, &JOB).unwrap_err();
    assert!(
        matches!(
            err,
            ZkError::PublicSignalMismatch {
                signal: "outputCommitment",
                ..
            }
        ),
        "{err}"
    );
    // Claiming the other output's commitment with this proof fails the pairing check.
    let forged = zk::commitments(b"The capital of France is Lyon.", &KEY, &JOB).public_signals();
    assert!(matches!(
        zk::verify(&p, &forged),
        Err(ZkError::InvalidProof)
    ));
}

#[test]
fn another_provider_key_is_rejected() {
    let (p, public) = proof();
    let other = [0x5a; 32];
    let err = zk::verify_job(&p, &public, OUTPUT, &other, &JOB).unwrap_err();
    assert!(
        matches!(
            err,
            ZkError::PublicSignalMismatch {
                signal: "walletCommitment",
                ..
            }
        ),
        "{err}"
    );
    let forged = zk::commitments(OUTPUT, &other, &JOB).public_signals();
    assert!(matches!(
        zk::verify(&p, &forged),
        Err(ZkError::InvalidProof)
    ));
}

#[test]
fn another_job_id_is_rejected() {
    let (p, public) = proof();
    for other in [
        job(1),
        {
            let mut j = JOB;
            j[31] ^= 1; // only the low half differs
            j
        },
        {
            let mut j = JOB;
            j[0] ^= 1; // only the high half differs
            j
        },
    ] {
        let err = zk::verify_job(&p, &public, OUTPUT, &KEY, &other).unwrap_err();
        assert!(matches!(err, ZkError::PublicSignalMismatch { .. }), "{err}");
        let forged = zk::commitments(OUTPUT, &KEY, &other).public_signals();
        assert!(
            matches!(zk::verify(&p, &forged), Err(ZkError::InvalidProof)),
            "a proof for one job must not verify for another"
        );
    }
}

#[test]
fn tampered_proof_elements_are_rejected() {
    let (p, public) = proof();
    let (q, _) = zk::prove(b"another output", &KEY, &JOB).unwrap();
    let pj: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
    let qj: serde_json::Value = serde_json::from_str(&q.to_json()).unwrap();
    // Swap in a valid curve point from another proof: well formed, but the check fails.
    for field in ["pi_a", "pi_b", "pi_c"] {
        let mut t = pj.clone();
        t[field] = qj[field].clone();
        let tampered = SnarkjsProof::from_json(&t.to_string()).unwrap();
        assert!(
            matches!(zk::verify(&tampered, &public), Err(ZkError::InvalidProof)),
            "{field}"
        );
    }
    // Change one digit of a coordinate: no longer on the curve, refused while parsing.
    let mut t = pj.clone();
    let x = t["pi_a"][0].as_str().unwrap().to_string();
    let last = x.chars().last().unwrap();
    let digit = if last == '0' { '1' } else { '0' };
    t["pi_a"][0] = format!("{}{digit}", &x[..x.len() - 1]).into();
    let err = SnarkjsProof::from_json(&t.to_string()).unwrap_err();
    assert!(matches!(err, ZkError::Malformed { .. }), "{err}");
}

#[test]
fn a_proof_checked_against_another_key_is_rejected() {
    let (p, public) = proof();
    assert!(matches!(
        zk::verify_with_key(&other_key(), &p, &public),
        Err(ZkError::InvalidProof)
    ));
    zk::verify_with_key(VerifyingKey::committed().unwrap(), &p, &public).unwrap();
}

/// A named way to break a proof's JSON.
type Mutation = Box<dyn Fn(&mut serde_json::Value)>;

#[test]
fn garbage_and_truncated_proof_json_give_clear_errors() {
    let (p, public) = proof();
    let text = p.to_json();
    for cut in 0..text.len() {
        let err = SnarkjsProof::from_json(&text[..cut]).unwrap_err();
        assert!(
            matches!(err, ZkError::Malformed { what: "proof", .. }),
            "{err}"
        );
    }
    let ptext = public.to_json();
    for cut in 0..ptext.len() {
        assert!(PublicSignals::from_json(&ptext[..cut]).is_err());
    }
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let fq_modulus =
        "21888242871839275222246405745257275088696311157297823662689037894645226208583";
    let mutations: Vec<(&str, Mutation)> = vec![
        ("garbage", Box::new(|v| *v = serde_json::json!("garbage"))),
        ("null", Box::new(|v| *v = serde_json::Value::Null)),
        ("protocol", Box::new(|v| v["protocol"] = "plonk".into())),
        ("curve", Box::new(|v| v["curve"] = "bls12381".into())),
        (
            "short pi_a",
            Box::new(|v| {
                v["pi_a"].as_array_mut().unwrap().pop();
            }),
        ),
        (
            "long pi_c",
            Box::new(|v| v["pi_c"].as_array_mut().unwrap().push("1".into())),
        ),
        ("number not string", Box::new(|v| v["pi_a"][0] = 5.into())),
        (
            "modulus",
            Box::new(move |v| v["pi_a"][0] = fq_modulus.into()),
        ),
        ("huge", Box::new(|v| v["pi_a"][1] = "9".repeat(200).into())),
        ("negative", Box::new(|v| v["pi_c"][0] = "-1".into())),
        ("hex", Box::new(|v| v["pi_c"][0] = "0x01".into())),
        (
            "leading zero",
            Box::new(|v| {
                let s = format!("0{}", v["pi_a"][0].as_str().unwrap());
                v["pi_a"][0] = s.into();
            }),
        ),
        ("projective z", Box::new(|v| v["pi_a"][2] = "2".into())),
        (
            "infinity",
            Box::new(|v| v["pi_a"] = serde_json::json!(["0", "1", "0"])),
        ),
        (
            "pi_b not nested",
            Box::new(|v| v["pi_b"] = serde_json::json!(["1", "2", "3"])),
        ),
        ("pi_b off curve", Box::new(|v| v["pi_b"][0][0] = "1".into())),
        (
            "missing pi_c",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("pi_c");
            }),
        ),
    ];
    for (name, mutate) in mutations {
        let mut t = v.clone();
        mutate(&mut t);
        let err = SnarkjsProof::from_json(&t.to_string()).unwrap_err();
        assert!(matches!(err, ZkError::Malformed { .. }), "{name}: {err}");
        assert!(!err.to_string().is_empty());
    }
    let fr_modulus =
        "21888242871839275222246405745257275088548364400416034343698204186575808495617";
    for bad in [
        "[]".to_string(),
        r#"["1","2","3"]"#.to_string(),
        r#"["1","2","3","4","5"]"#.to_string(),
        format!(r#"["{fr_modulus}","2","3","4"]"#),
        r#"["1","2","3",""]"#.to_string(),
        r#"[1,2,3,4]"#.to_string(),
        "{}".to_string(),
    ] {
        let err = PublicSignals::from_json(&bad).unwrap_err();
        assert!(
            matches!(
                err,
                ZkError::Malformed {
                    what: "public signals",
                    ..
                }
            ),
            "{bad}: {err}"
        );
    }
}
