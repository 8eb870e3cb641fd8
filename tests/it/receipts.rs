//! Attack story: a provider whose signed receipt does not match the job (another model's
//! name, another digest, other sampling, a signature by another key, or no receipt at all)
//! is not accepted and not paid; the receipt is kept with the job as evidence. An honest
//! provider's receipt checks, and is kept on both sides.

use std::time::Duration;

use edgent::chain::FairStatus;
use edgent::harness::ollama_stub::{OllamaStub, StubBehaviour};
use serde_json::{json, Value};

use crate::support;
use crate::support::paid::{PaidWorld, FUND};
use crate::support::MeshSimProc;

/// A requester and a provider (payments off) whose receipts lie as `lie` says (`""`: an
/// honest one); the delegation's status and body, and the requester's job record.
async fn delegate_with_lie(lie: &str) -> (u16, Value, Value, Value) {
    let ollama = OllamaStub::start(StubBehaviour::default()).await.unwrap();
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().unwrap();
    let url = ollama.url();
    let mut p_env = vec![("OLLAMA_URL", url.as_str())];
    if !lie.is_empty() {
        p_env.push(("EDGENT_TEST_RECEIPT_LIE", lie));
    }
    let (requester, provider) = support::start_pair(&mesh, dir.path(), &p_env, &[]).await;
    let (status, body) = requester
        .delegate(json!({
            "model": "tinyllama",
            "prompt": "what did you run?",
            "options": {"seed": 7, "temperature": 0.7, "top_k": 20}
        }))
        .await;
    let rjob = requester.newest_job().await.expect("requester job");
    let id = rjob["job_id"].as_str().unwrap().to_string();
    let pjob = provider
        .job_in_state(&id, "completed", Duration::from_secs(20))
        .await;
    (status, body, rjob, pjob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_receipt_is_checked_and_kept_on_both_sides() {
    let (status, body, rjob, pjob) = delegate_with_lie("").await;
    assert_eq!(status, 200, "{body}");
    let receipt = &rjob["receipt"];
    assert_eq!(
        receipt, &pjob["receipt"],
        "the requester keeps what was signed"
    );
    assert_eq!(receipt["job_id"], rjob["job_id"]);
    assert_eq!(receipt["model"], json!("tinyllama"));
    assert_eq!(receipt["signer"], body["provider"]["node_id"]);
    let options: Value = serde_json::from_str(receipt["options_json"].as_str().unwrap()).unwrap();
    assert_eq!(options, json!({"seed": 7, "temperature": 0.7, "top_k": 20}));
    assert_eq!(receipt["signature"].as_str().unwrap().len(), 128);
    assert!(rjob.get("receipt_refused").is_none(), "{rjob}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_that_lies_is_refused_with_the_lie_kept_as_evidence() {
    for (lie, why) in [
        ("model", "model"),
        ("digest", "model_digest"),
        ("options", "options"),
        ("key", "signature"),
        ("none", "no signed receipt"),
    ] {
        let (status, body, rjob, _pjob) = delegate_with_lie(lie).await;
        assert_eq!(status, 502, "{lie}: {body}");
        assert_eq!(body["error"], json!("receipt_invalid"), "{lie}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(why),
            "{lie}: {body}"
        );
        assert_eq!(rjob["state"], json!("failed"), "{lie}: {rjob}");
        assert_eq!(
            rjob["error_code"],
            json!("receipt_invalid"),
            "{lie}: {rjob}"
        );
        assert!(
            rjob["output"].is_null(),
            "a refused result is not accepted: {rjob}"
        );
        assert!(
            rjob["receipt_refused"].as_str().unwrap().contains(why),
            "{lie}: {rjob}"
        );
        if lie != "none" {
            assert!(
                rjob["receipt"]["signature"].is_string(),
                "evidence kept: {rjob}"
            );
        }
        assert_eq!(
            rjob["attempts"][0]["outcome"],
            json!("bad_receipt"),
            "{rjob}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_provider_whose_receipt_names_another_model_is_not_paid() {
    let w = PaidWorld::new().await;
    let (requester, _provider) = w.start(&[("EDGENT_TEST_RECEIPT_LIE", "model")]).await;
    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "pay me anyway"}))
        .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"], json!("receipt_invalid"));
    let rjob = requester.newest_job().await.expect("job");
    let id = rjob["job_id"].as_str().unwrap().to_string();
    assert!(rjob["receipt_refused"].is_string(), "{rjob}");
    assert_eq!(rjob["payment"]["status"], json!("disputed"), "{rjob}");
    // The provider submits its output on chain all the same (escrow v4); the requester
    // disputes the submit within the window, so nothing reaches the provider but by the
    // arbiter's decision.
    support::until("the submit disputed", Duration::from_secs(60), || async {
        w.stake_status(&id).await == FairStatus::Disputed
    })
    .await;
    let (r, p, e) = w.balances().await;
    assert_eq!(p, 0, "the provider got nothing");
    assert_eq!(r + e, FUND);
}

/// The late path (issue 22, threat model line 40): a paid result that arrives after its
/// delegation gave up (here: the requester was killed while the provider ran, and
/// restarted) is held to the same receipt as a live one. A lying receipt is refused: the
/// result is not accepted, the provider's submit is disputed, and it is paid nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_paid_result_with_a_lying_receipt_is_not_paid() {
    let w = PaidWorld::new().await;
    w.ollama.set(|b| b.delay = Duration::from_secs(2));
    let (mut requester, provider) = w.start(&[("EDGENT_TEST_RECEIPT_LIE", "model")]).await;
    let url = format!("{}/delegate", requester.url);
    let call = tokio::spawn(async move {
        let body = json!({"model": "tinyllama", "prompt": "pay me late", "timeout_ms": 20000});
        let _ = reqwest::Client::new().post(url).json(&body).send().await;
    });
    let id = support::eventually("a job tasked", Duration::from_secs(30), || async {
        let j = requester.newest_job().await?;
        (j["state"] == json!("tasked")).then(|| j["job_id"].as_str().unwrap().to_string())
    })
    .await;
    requester.kill();
    let _ = call.await;
    requester.start_again().await;

    // The provider delivers to the restarted requester, which no delegation waits on.
    let rjob = support::eventually(
        "the late receipt refused",
        Duration::from_secs(30),
        || async {
            let j = requester.job(&id).await?;
            j["receipt_refused"].is_string().then_some(j)
        },
    )
    .await;
    assert!(
        rjob["receipt_refused"].as_str().unwrap().contains("model"),
        "{rjob}"
    );
    assert!(rjob["output"].is_null(), "not accepted: {rjob}");
    assert_eq!(rjob["payment"]["status"], json!("disputed"), "{rjob}");
    assert_eq!(
        rjob["receipt"]["model"],
        json!("tinyllama-other"),
        "the lie kept: {rjob}"
    );
    provider
        .job_in_state(&id, "completed", Duration::from_secs(20))
        .await;
    // The provider submits its output all the same; the requester disputes within the
    // window, so nothing reaches the provider but by the arbiter's decision.
    support::until("the submit disputed", Duration::from_secs(60), || async {
        w.stake_status(&id).await == FairStatus::Disputed
    })
    .await;
    let (r, p, e) = w.balances().await;
    assert_eq!(p, 0, "the provider got nothing");
    assert_eq!(r + e, FUND);
}
