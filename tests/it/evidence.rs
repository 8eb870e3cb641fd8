//! Attack story (issue 22 item 4; threat model lines 42-44): evidence of a caught cheater
//! over the mesh. A node that caught a cheater sends its direct peers the signed receipts;
//! a receiver excludes the accused only when its own run (on a provider that is neither
//! accuser, accused nor checker) sides with the checkers. A signed accusation of an honest
//! provider is not acted on; forged or mismatched evidence is dropped and counted.

use std::time::Duration;

use edgent::protocol::receipt::{output_hash, prompt_hash, ReceiptBody, ReceiptSigner};
use edgent::protocol::{Evidence, Message, Receipt};
use serde_json::{json, Map, Value};

use crate::support;
use crate::support::evil::{evil_on, node_key};
use crate::support::gemma::{seed_gemma, GEMMA_MODEL};
use crate::support::ollama::{RealOllama, TestModel};
use crate::support::{DaemonProc, MeshSimProc};

const GEMMA_DIGEST: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";
const WITHIN: Duration = Duration::from_secs(300);
const PROMPT: &str = "The capital of France is";

fn options() -> Map<String, Value> {
    json!({"temperature": 0, "seed": 7, "num_predict": 8})
        .as_object()
        .cloned()
        .unwrap()
}

async fn daemon(
    mesh: &MeshSimProc,
    dir: &std::path::Path,
    node: usize,
    env: &[(&str, &str)],
) -> DaemonProc {
    let mut all: Vec<(String, String)> = vec![("AXL_API_URL".into(), mesh.nodes[node].1.clone())];
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    DaemonProc::start_owned(&dir.join(format!("node{node}")), all).await
}

async fn providers_seen(d: &DaemonProc, n: usize) {
    support::eventually("the ads", Duration::from_secs(60), || async {
        let st = d.get("/status").await;
        (st["mesh_providers"].as_array()?.len() >= n).then_some(())
    })
    .await;
}

/// A true accusation: requester R1 (`VERIFY_RATE=1`) catches a cheater serving the tiny
/// model under Gemma's name and digest; R2, which never gave it a job, receives the
/// evidence, re-runs the job on the one honest provider that was not a checker, and
/// excludes the cheater.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_true_accusation_is_confirmed_by_the_receivers_own_run_and_the_cheater_excluded() {
    let unload = [("OLLAMA_KEEP_ALIVE", "0")];
    let honest = RealOllama::start_seeded(&[], &unload, seed_gemma).await;
    let fake = RealOllama::start_with_env(&[(GEMMA_MODEL, TestModel::Tiny)], &unload).await;
    let mesh = MeshSimProc::start(6, 0);
    let dir = tempfile::tempdir().unwrap();
    let p = [
        ("EDGENT_ROLE", "provider"),
        ("OLLAMA_URL", honest.url.as_str()),
    ];
    let _a = daemon(&mesh, dir.path(), 1, &p).await;
    let _b = daemon(&mesh, dir.path(), 2, &p).await;
    let _c = daemon(&mesh, dir.path(), 3, &p).await;
    let cheater = mesh.nodes[4].0.clone();
    let _x = daemon(
        &mesh,
        dir.path(),
        4,
        &[
            ("EDGENT_ROLE", "provider"),
            ("OLLAMA_URL", fake.url.as_str()),
            ("PRICE_USDC", "0.001"),
            ("EDGENT_TEST_CLAIM_DIGEST", GEMMA_DIGEST),
        ],
    )
    .await;
    let r1 = daemon(
        &mesh,
        dir.path(),
        0,
        &[
            ("EDGENT_ROLE", "requester"),
            ("VERIFY_RATE", "1"),
            ("DELEGATE_TIMEOUT_MS", "900000"),
            ("DISCOVERY_WINDOW_MS", "3000"),
            ("DISCOVERY_SETTLE_MS", "2500"),
        ],
    )
    .await;
    let r2 = daemon(&mesh, dir.path(), 5, &[("EDGENT_ROLE", "requester")]).await;
    providers_seen(&r1, 4).await;
    providers_seen(&r2, 4).await;

    let (status, body) = r1
        .delegate(json!({"model": GEMMA_MODEL, "prompt": PROMPT, "options": options()}))
        .await;
    assert_eq!(status, 200, "{body}\n{}", r1.log());
    assert_eq!(body["attempts"][0]["provider"], json!(cheater), "{body}");
    assert_eq!(body["attempts"][0]["outcome"], "caught", "{body}");

    let st = support::eventually("R2 acts on the evidence", WITHIN, || async {
        let st = r2.get("/status").await;
        (st["evidence_confirmed"] == 1).then_some(st)
    })
    .await;
    assert_eq!(
        st["caught_providers"],
        json!([cheater]),
        "{st}\n{}",
        r2.log()
    );
    assert_eq!(st["evidence_unconfirmed"], json!([]), "{st}");
    assert_eq!(st["evidence_dropped"], 0, "{st}");
    // R2's run went to the honest provider that was not a checker, never to the cheater.
    assert_eq!(fake.requests_to("/api/generate"), 1, "{}", fake.log());
}

/// A receipt signed by a made-up checker that says it ran the job and got `output`.
fn liar_receipt(seed: u8, honest: &Receipt, output: &str) -> Receipt {
    let mut body: ReceiptBody = honest.body.clone();
    body.output_hash = output_hash(output);
    body.job_id = format!("0x{}", "ee".repeat(32));
    ReceiptSigner::from_seed(&[seed; 32]).sign(body)
}

/// A false accusation: a hostile node sends R an evidence against an honest provider,
/// carrying that provider's real signed receipt of a job R gave it, and two made-up
/// checkers' signed receipts of another output. Every signature checks, so R re-runs the
/// job on the other honest provider, which agrees with the accused: nobody is excluded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_accusation_of_an_honest_provider_is_not_acted_on() {
    let honest = RealOllama::start_seeded(&[], &[], seed_gemma).await;
    let mesh = MeshSimProc::start(4, 0);
    let dir = tempfile::tempdir().unwrap();
    let p = [
        ("EDGENT_ROLE", "provider"),
        ("OLLAMA_URL", honest.url.as_str()),
    ];
    let _a = daemon(&mesh, dir.path(), 1, &p).await;
    let _b = daemon(&mesh, dir.path(), 2, &p).await;
    let r = daemon(
        &mesh,
        dir.path(),
        0,
        &[
            ("EDGENT_ROLE", "requester"),
            ("VERIFY_RATE", "0"),
            ("VERIFY_FIRST", "0"),
        ],
    )
    .await;
    providers_seen(&r, 2).await;
    let (status, body) = r
        .delegate(json!({"model": GEMMA_MODEL, "prompt": PROMPT, "options": options()}))
        .await;
    assert_eq!(status, 200, "{body}");
    let accused = body["attempts"][0]["provider"]
        .as_str()
        .unwrap()
        .to_string();
    let job = r.job(body["job_id"].as_str().unwrap()).await.expect("job");
    let receipt: Receipt = serde_json::from_value(job["receipt"].clone()).expect("receipt");

    let evil = evil_on(&mesh, &[3]).await;
    let ev = Evidence {
        accused: edgent::axl::PeerKey::from_hex(&accused).unwrap(),
        model: GEMMA_MODEL.into(),
        model_digest: receipt.body.model_digest.clone(),
        options: Some(options()),
        prompt: PROMPT.into(),
        messages: None,
        checker_receipts: vec![
            liar_receipt(21, &receipt, " Lyon."),
            liar_receipt(22, &receipt, " Lyon."),
        ],
        accused_receipt: receipt,
    };
    evil.send(0, &node_key(&mesh, 0), &Message::Evidence(Box::new(ev)))
        .await
        .expect("send");
    let st = support::eventually("R settles the evidence", WITHIN, || async {
        let st = r.get("/status").await;
        (st["evidence_unconfirmed"].as_array()?.len() == 1).then_some(st)
    })
    .await;
    assert_eq!(
        st["evidence_unconfirmed"][0]["accused"],
        json!(accused),
        "{st}"
    );
    assert_eq!(st["caught_providers"], json!([]), "{st}\n{}", r.log());
    assert_eq!(st["evidence_confirmed"], 0, "{st}");
    assert_eq!(st["evidence_dropped"], 0, "{st}");
}

/// Receipts of a made-up job, signed by made-up keys: the accused's says `accused_out`.
fn made_up(accused_out: &str) -> Evidence {
    let run = |seed: u8, out: &str| {
        ReceiptSigner::from_seed(&[seed; 32]).sign(ReceiptBody {
            job_id: format!("0x{}", "07".repeat(32)),
            model: "nobody-serves-this".into(),
            model_digest: "ab".repeat(32),
            options_json: r#"{"temperature":0}"#.into(),
            prompt_hash: prompt_hash("hi", None),
            output_hash: output_hash(out),
            tool_calls_hash: String::new(),
            time_ms: 1_000_000,
            signer: String::new(),
        })
    };
    Evidence {
        accused: ReceiptSigner::from_seed(&[1; 32]).public(),
        model: "nobody-serves-this".into(),
        model_digest: "ab".repeat(32),
        options: json!({"temperature": 0}).as_object().cloned(),
        prompt: "hi".into(),
        messages: None,
        accused_receipt: run(1, accused_out),
        checker_receipts: vec![run(2, "hello"), run(3, "hello")],
    }
}

/// Forged evidence (a receipt altered after signing) and mismatched evidence (another
/// prompt than its receipts ran) are dropped and counted; nobody is excluded or even kept
/// as accused. A well-signed one sent after them is kept (unconfirmed: nobody serves its
/// model), so the drops are the checks', not a lost message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_mismatched_evidence_is_dropped_and_counted() {
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().unwrap();
    let r = daemon(&mesh, dir.path(), 0, &[("EDGENT_ROLE", "requester")]).await;
    let evil = evil_on(&mesh, &[1]).await;
    let to = node_key(&mesh, 0);
    let mut forged = made_up("nonsense");
    forged.accused_receipt.body.output_hash = output_hash("hello");
    let mut mismatched = made_up("nonsense");
    mismatched.prompt = "another prompt".into();
    for ev in [forged, mismatched] {
        evil.send(0, &to, &Message::Evidence(Box::new(ev)))
            .await
            .expect("send");
    }
    support::eventually("two drops", WITHIN, || async {
        (r.get("/status").await["evidence_dropped"] == 2).then_some(())
    })
    .await;
    evil.send(0, &to, &Message::Evidence(Box::new(made_up("nonsense"))))
        .await
        .expect("send");
    let st = support::eventually("the signed one kept", WITHIN, || async {
        let st = r.get("/status").await;
        (st["evidence_unconfirmed"].as_array()?.len() == 1).then_some(st)
    })
    .await;
    assert_eq!(st["evidence_dropped"], 2, "{st}");
    assert_eq!(st["caught_providers"], json!([]), "{st}");
    assert_eq!(st["evidence_confirmed"], 0, "{st}");
}
