//! Attack story (issue 22's substitution): two honest providers serve the real Gemma 3
//! 270M; a cheater serves the generated tiny model under Gemma's name, claiming Gemma's
//! real digest in its ads and receipts (one test) or its own (the other). With
//! `VERIFY_RATE=1` every result is re-run by other providers of the model: the cheater is
//! caught on its first job, not accepted (nothing to pay), and given no more jobs; the
//! agent gets Gemma's answer from an honest provider in the same delegation; the honest
//! ones are never accused.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support;
use crate::support::gemma::{seed_gemma, GEMMA_MODEL};
use crate::support::ollama::{RealOllama, TestModel};
use crate::support::{DaemonProc, MeshSimProc};

/// The sha256 of Gemma 3 270M Q4_K_M's GGUF (its digest on every machine).
const GEMMA_DIGEST: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";

async fn provider(
    mesh: &MeshSimProc,
    dir: &std::path::Path,
    node: usize,
    ollama: &str,
    extra: &[(&str, &str)],
) -> DaemonProc {
    let mut env: Vec<(String, String)> = vec![
        ("AXL_API_URL".into(), mesh.nodes[node].1.clone()),
        ("EDGENT_ROLE".into(), "provider".into()),
        ("OLLAMA_URL".into(), ollama.into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    DaemonProc::start_owned(&dir.join(format!("node{node}")), env).await
}

fn outcomes(body: &Value) -> Vec<(String, String)> {
    body["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| {
            (
                a["provider"].as_str().unwrap().to_string(),
                a["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cheater_claiming_gemmas_digest_is_caught_on_its_first_job_and_paid_nothing() {
    substitution(Some(GEMMA_DIGEST)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cheater_with_its_own_digest_under_gemmas_name_is_caught_on_its_first_job() {
    substitution(None).await;
}

/// Two honest providers of the real Gemma, one cheater serving the tiny model under
/// Gemma's name (claiming `claim` as its digest, else the tiny model's own), cheaper so it
/// is tried first; a requester with `VERIFY_RATE=1`.
async fn substitution(claim: Option<&str>) {
    // Models unloaded after each run, so no ad says "loaded" and the ranking falls to the
    // price, where the cheater wins.
    let unload = [("OLLAMA_KEEP_ALIVE", "0")];
    let honest = RealOllama::start_seeded(&[], &unload, seed_gemma).await;
    let fake = RealOllama::start_with_env(&[(GEMMA_MODEL, TestModel::Tiny)], &unload).await;
    let mesh = MeshSimProc::start(4, 0);
    let dir = tempfile::tempdir().unwrap();
    let (a, b, cheater) = (
        mesh.nodes[1].0.clone(),
        mesh.nodes[2].0.clone(),
        mesh.nodes[3].0.clone(),
    );
    let _a = provider(&mesh, dir.path(), 1, &honest.url, &[]).await;
    let _b = provider(&mesh, dir.path(), 2, &honest.url, &[]).await;
    let mut lie = vec![("PRICE_USDC", "0.001")];
    if let Some(d) = claim {
        lie.push(("EDGENT_TEST_CLAIM_DIGEST", d));
    }
    let _cheater = provider(&mesh, dir.path(), 3, &fake.url, &lie).await;
    let requester = DaemonProc::start_owned(
        &dir.path().join("requester"),
        vec![
            ("AXL_API_URL".into(), mesh.nodes[0].1.clone()),
            ("EDGENT_ROLE".into(), "requester".into()),
            ("VERIFY_RATE".into(), "1".into()),
            ("DELEGATE_TIMEOUT_MS".into(), "900000".into()),
            ("DISCOVERY_WINDOW_MS".into(), "3000".into()),
            ("DISCOVERY_SETTLE_MS".into(), "2500".into()),
        ],
    )
    .await;
    support::eventually("the three ads", Duration::from_secs(60), || async {
        let st = requester.get("/status").await;
        (st["mesh_providers"].as_array()?.len() >= 3).then_some(())
    })
    .await;

    // 1. The cheater is tried first, and caught by the two honest providers; an honest one
    // answers in the same delegation.
    let (status, first) = requester.delegate(ask("The capital of France is")).await;
    assert_eq!(status, 200, "{first}\n{}", requester.log());
    let tried = outcomes(&first);
    assert_eq!(tried.len(), 2, "{first}");
    assert_eq!(tried[0], (cheater.clone(), "caught".to_string()), "{first}");
    assert_eq!(tried[1].1, "completed", "{first}");
    assert!([&a, &b].contains(&&tried[1].0), "{first}");
    let direct = honest_answer(&honest.url, "The capital of France is").await;
    assert_eq!(
        first["output"],
        json!(direct),
        "Gemma's answer, from an honest provider"
    );
    let job = requester
        .job(first["job_id"].as_str().unwrap())
        .await
        .expect("job");
    let checks = job["spot_checks"].as_array().expect("spot checks");
    assert_eq!(checks.len(), 2, "{job}");
    assert_eq!(checks[0]["provider"], json!(cheater));
    assert_eq!(checks[0]["verdict"], "caught", "{job}");
    assert_eq!(checks[0]["mode"], "rerun", "{job}");
    // The evidence: the cheater's signed receipt (naming the digest it claims) and both
    // checkers'.
    let receipts = checks[0]["receipts"].as_array().unwrap();
    assert_eq!(receipts.len(), 3, "{job}");
    assert_eq!(receipts[0]["signer"], json!(cheater));
    if let Some(d) = claim {
        assert_eq!(receipts[0]["model_digest"], d);
    } else {
        assert_ne!(receipts[0]["model_digest"], GEMMA_DIGEST);
    }
    let mut checkers: Vec<&str> = checks[0]["checkers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    checkers.sort();
    let mut honest_ids = vec![a.as_str(), b.as_str()];
    honest_ids.sort();
    assert_eq!(checkers, honest_ids, "{job}");
    assert_eq!(checks[1]["verdict"], "passed", "the honest answer: {job}");

    // 2. The cheater is given nothing more; the honest ones are never accused.
    let (status, second) = requester.delegate(ask("The largest ocean is")).await;
    assert_eq!(status, 200, "{second}");
    let tried = outcomes(&second);
    assert_eq!(tried.len(), 1, "{second}");
    assert!([&a, &b].contains(&&tried[0].0), "{second}");
    assert_eq!(tried[0].1, "completed", "{second}");

    let metrics = requester.metrics().await;
    assert!(
        metrics.contains("edgent_spot_checks_total{outcome=\"caught\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("edgent_spot_checks_total{outcome=\"passed\"} 2"),
        "{metrics}"
    );
    assert!(!metrics.contains("checker_caught"), "{metrics}");
    let st = requester.get("/status").await;
    assert_eq!(st["caught_providers"], json!([cheater]), "{st}");
    // The cheater ran its own first job and nothing else.
    assert_eq!(fake.requests_to("/api/generate"), 1, "{}", fake.log());
}

fn ask(prompt: &str) -> Value {
    json!({"model": GEMMA_MODEL, "prompt": prompt,
           "options": {"temperature": 0, "seed": 7, "num_predict": 8}})
}

/// Gemma's greedy answer straight from its Ollama.
async fn honest_answer(url: &str, prompt: &str) -> String {
    let r: Value = crate::support::http()
        .post(format!("{url}/api/generate"))
        .json(
            &json!({"model": GEMMA_MODEL, "prompt": prompt, "stream": false,
                      "options": {"temperature": 0, "seed": 7, "num_predict": 8}}),
        )
        .send()
        .await
        .expect("ollama")
        .json()
        .await
        .expect("json");
    r["response"].as_str().expect("response").to_string()
}
