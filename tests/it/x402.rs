//! The x402 messages edgent sends validate against the official x402 Python models (PyPI
//! `x402`, pinned in tests/python/requirements.txt): the `PaymentRequired` of a
//! `payment_request`, its `PaymentRequirements`, and the `SettleResponse` of a
//! `payment_confirmed`. The Python is the test venv's
//! ([`crate::support::python::test_python`]).

use std::process::Command;

use alloy::primitives::Address;
use edgent::axl::PeerKey;
use edgent::paid::x402;
use edgent::protocol::JobId;
use serde_json::json;

use crate::support::python::test_python;

#[test]
fn payment_required_and_settle_response_validate_against_the_x402_models() {
    let terms = x402::Terms {
        job: JobId([7; 32]),
        provider: PeerKey([3; 32]),
        chain_id: 84532,
        asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
            .parse::<Address>()
            .unwrap(),
        amount: 10_000,
        pay_to: "0x90f79bf6eb2c4f870365e785982e1f101e93b906".into(),
        escrow: "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512".into(),
        capture_deadline: 1_900_000_000,
    };
    let pr = x402::payment_required(&terms, 600);
    let settle = x402::settle_response(
        &format!("0x{}", "ab".repeat(32)),
        84532,
        "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc"
            .parse()
            .unwrap(),
        Some(10_000),
    );
    let sent = json!({
        "payment_required": pr,
        "payment_requirements": pr.accepts[0],
        "settle_response": settle,
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x402.json");
    std::fs::write(&file, serde_json::to_vec(&sent).unwrap()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/x402_models.py");
    let python = test_python();
    let out = Command::new(&python)
        .arg(script)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); set EDGENT_TEST_PYTHON",
                python.display()
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "x402 models refused edgent's messages (python: {}; `pip install -r tests/python/requirements.txt`):\n{stdout}{stderr}",
        python.display()
    );
    assert_eq!(stdout.matches("ok   ").count(), 3, "{stdout}");

    // The check is not vacuous: a SettleResponse without its network is refused.
    let mut broken = sent.clone();
    broken["settle_response"]
        .as_object_mut()
        .unwrap()
        .remove("network");
    std::fs::write(&file, serde_json::to_vec(&broken).unwrap()).unwrap();
    let out = Command::new(&python)
        .arg(script)
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL settle_response"));
}
