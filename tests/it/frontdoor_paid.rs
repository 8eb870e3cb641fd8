//! User story: an agent that speaks Ollama's API (the official `ollama` Python client) gets
//! a paid answer streamed through the front door. anvil with MockUSDC and EdgentEscrow,
//! `edgent mesh-sim`, a requester and a provider daemon, and the real Ollama behind the
//! provider. The stream still ends in a verified proof and a release; an agent that hangs
//! up mid-stream ends the job `cancelled` with its stake declined and every unit of USDC
//! where it belongs.

use std::time::Duration;

use edgent::chain::FairStatus;
use serde_json::json;

use crate::support::ollama::{agent, RealOllama, TestModel, TINY_MODEL};
use crate::support::paid::{payment_becomes, PaidWorld, FUND, PRICE};
use crate::support::DaemonProc;

const WITHIN: Duration = Duration::from_secs(30);

/// Options under which the tiny model streams for about two seconds (see tests/frontdoor.rs).
const LONG_STREAM: &str = r#"{"seed": 3, "temperature": 1.5, "top_k": 2, "num_predict": 5000}"#;

/// The paid pair: the requester sends every generation to the mesh (it has no Ollama of
/// its own), the provider runs the real Ollama.
async fn paid_front_door(w: &PaidWorld, ollama: &RealOllama) -> (DaemonProc, DaemonProc) {
    w.start_with(
        &[
            ("EDGENT_OFFLOAD", "always"),
            ("OLLAMA_URL", "http://127.0.0.1:9"),
        ],
        &[("OLLAMA_URL", &ollama.url)],
    )
    .await
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_answer_streamed_to_an_ollama_client_verifies_and_releases() {
    let w = PaidWorld::new().await;
    let ollama = RealOllama::start(&[(TINY_MODEL, TestModel::Tiny)]).await;
    let (requester, provider) = paid_front_door(&w, &ollama).await;

    let got = agent(
        "agent_ollama.py",
        env(&[
            ("EDGENT_URL", &requester.url),
            ("MODEL", TINY_MODEL),
            ("NUM_PREDICT", "300"),
        ]),
    )
    .await;
    assert_eq!(got["headers"]["x-edgent-ran-on"], "mesh", "{got}");
    let job = got["headers"]["x-edgent-job"].as_str().expect("job header");
    let parts = got["parts"].as_array().unwrap();
    assert!(parts.len() >= 3, "streamed in pieces: {got}");
    let text: String = parts.iter().map(|p| p.as_str().unwrap_or("")).collect();

    // The last line came once the proof checked, and says so with the payment.
    let last = &got["raw_last"];
    assert_eq!(last["done"], true, "{got}");
    assert_eq!(last["edgent"]["job_id"], json!(job), "{last}");
    assert_eq!(last["edgent"]["proof_verified"], true, "{last}");
    assert_eq!(last["edgent"]["payment"]["amount_units"], PRICE, "{last}");
    let status = last["edgent"]["payment"]["status"].as_str().unwrap();
    assert!(["verified", "released"].contains(&status), "{last}");

    // The streamed text is the output the provider proved and was paid for.
    let pjob = payment_becomes(&provider, job, "released", WITHIN).await;
    assert_eq!(pjob["output"], json!(text));
    let rjob = payment_becomes(&requester, job, "released", WITHIN).await;
    assert_eq!(rjob["state"], "completed");
    assert_eq!(rjob["payment"]["proof_verified"], true);
    assert_eq!(w.stake_status(job).await, FairStatus::Released);
    assert_eq!(w.balances().await, (FUND - PRICE, PRICE, 0));
    w.assert_conserved(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_agent_that_hangs_up_is_refunded_to_the_unit() {
    let w = PaidWorld::new().await;
    let ollama = RealOllama::start(&[(TINY_MODEL, TestModel::Tiny)]).await;
    let (requester, provider) = paid_front_door(&w, &ollama).await;

    let got = agent(
        "agent_hangup.py",
        env(&[
            ("EDGENT_URL", &requester.url),
            ("MODEL", TINY_MODEL),
            ("LINES", "3"),
            ("OPTIONS", LONG_STREAM),
        ]),
    )
    .await;
    assert_eq!(got["headers"]["x-edgent-ran-on"], "mesh", "{got}");
    assert_eq!(got["lines"].as_array().unwrap().len(), 3, "{got}");
    let job = got["headers"]["x-edgent-job"].as_str().unwrap();

    // The provider stops and declines its stake: the requester is refunded in that
    // same transaction, and nobody is paid for the cut-short answer.
    let pjob = provider.job_in_state(job, "cancelled", WITHIN).await;
    assert_eq!(pjob["error_code"], "cancelled", "{pjob}");
    let pjob = payment_becomes(&provider, job, "refunded", WITHIN).await;
    assert!(pjob["payment"]["tx_hash"].as_str().is_some(), "{pjob}");
    let rjob = requester.job_in_state(job, "cancelled", WITHIN).await;
    assert_eq!(rjob["error_code"], "cancelled", "{rjob}");
    assert_eq!(w.stake_status(job).await, FairStatus::Declined);
    assert_eq!(w.balances().await, (FUND, 0, 0));
    w.assert_conserved(0).await;

    // Past the stake's deadline the requester's watcher finds the stake ended and records
    // the refund; nothing moves again.
    w.advance(3_600).await;
    payment_becomes(&requester, job, "refunded", WITHIN).await;
    assert_eq!(w.balances().await, (FUND, 0, 0));
}
