//! Attack story (issue 22's substitution): two honest providers serve the real Gemma 3
//! 270M; two cheaters serve the generated tiny model under Gemma's name, one claiming
//! Gemma's real digest in its ads and receipts, one its own. With `VERIFY_RATE=1` every
//! result is re-run by two other providers of the model: each cheater is caught on its
//! first job, not accepted (nothing to pay), and given no more jobs; the agent gets
//! Gemma's answer from an honest provider in the same delegation; the honest ones are
//! never accused.

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
async fn cheaters_serving_another_model_under_gemmas_name_are_caught_on_their_first_job() {
    // Models unloaded after each run, so no ad says "loaded" and the ranking falls to the
    // price, where the cheaters win.
    let unload = [("OLLAMA_KEEP_ALIVE", "0")];
    let honest = RealOllama::start_seeded(&[], &unload, seed_gemma).await;
    let fake = RealOllama::start_with_env(&[(GEMMA_MODEL, TestModel::Tiny)], &unload).await;
    let mesh = MeshSimProc::start(5, 0);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (mesh.nodes[1].0.clone(), mesh.nodes[2].0.clone());
    let (claims, own) = (mesh.nodes[3].0.clone(), mesh.nodes[4].0.clone());
    let _a = provider(&mesh, dir.path(), 1, &honest.url, &[]).await;
    let _b = provider(&mesh, dir.path(), 2, &honest.url, &[]).await;
    // The cheaters are cheaper, so they are tried first. The one claiming Gemma's digest
    // first; the one with its own digest joins later (two cheaters of one fake model
    // would vouch for each other when one checks the other: see docs/threat-model.md).
    let cheap = ("PRICE_USDC", "0.001");
    let _claims = provider(
        &mesh,
        dir.path(),
        3,
        &fake.url,
        &[cheap, ("EDGENT_TEST_CLAIM_DIGEST", GEMMA_DIGEST)],
    )
    .await;
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
    let knows = |who: String| {
        let requester = &requester;
        async move {
            support::eventually("the provider's ad", Duration::from_secs(60), || {
                let who = who.clone();
                async move {
                    let st = requester.get("/status").await;
                    st["mesh_providers"]
                        .as_array()?
                        .iter()
                        .any(|p| p["node_id"] == json!(who))
                        .then_some(())
                }
            })
            .await
        }
    };
    for who in [&a, &b, &claims] {
        knows(who.clone()).await;
    }

    // 1. The cheater claiming Gemma's digest is tried first and caught by A and B.
    let (status, first) = requester.delegate(ask("The capital of France is")).await;
    assert_eq!(status, 200, "{first}\n{}", requester.log());
    let tried = outcomes(&first);
    assert_eq!(tried.len(), 2, "{first}");
    assert_eq!(tried[0], (claims.clone(), "caught".to_string()), "{first}");
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
    assert_eq!(checks[0]["provider"], json!(claims));
    assert_eq!(checks[0]["verdict"], "caught", "{job}");
    assert_eq!(checks[0]["mode"], "rerun", "{job}");
    // The evidence: the cheater's signed receipt (claiming Gemma's digest) and both
    // checkers'.
    let receipts = checks[0]["receipts"].as_array().unwrap();
    assert_eq!(receipts.len(), 3, "{job}");
    assert_eq!(receipts[0]["signer"], json!(claims));
    assert_eq!(receipts[0]["model_digest"], GEMMA_DIGEST);
    assert_eq!(checks[1]["verdict"], "passed", "the honest answer: {job}");

    // 2. A cheater with its own digest joins, cheapest: caught on its first job too.
    let _own = provider(&mesh, dir.path(), 4, &fake.url, &[cheap]).await;
    knows(own.clone()).await;
    let (status, second) = requester.delegate(ask("The largest ocean is")).await;
    assert_eq!(status, 200, "{second}");
    let tried = outcomes(&second);
    assert_eq!(tried.len(), 2, "{second}");
    assert_eq!(tried[0], (own.clone(), "caught".to_string()), "{second}");
    assert_eq!(tried[1].1, "completed", "{second}");

    // 3. The cheaters are given nothing more; the honest ones are never accused.
    let (status, third) = requester.delegate(ask("The sun is a")).await;
    assert_eq!(status, 200, "{third}");
    let tried = outcomes(&third);
    assert_eq!(tried.len(), 1, "{third}");
    assert!([&a, &b].contains(&&tried[0].0), "{third}");
    assert_eq!(tried[0].1, "completed", "{third}");

    let metrics = requester.metrics().await;
    assert!(
        metrics.contains("edgent_spot_checks_total{outcome=\"caught\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("edgent_spot_checks_total{outcome=\"passed\"} 3"),
        "{metrics}"
    );
    assert!(!metrics.contains("checker_caught"), "{metrics}");
    // The cheaters ran their own first job each and nothing else.
    assert_eq!(fake.requests_to("/api/generate"), 2, "{}", fake.log());
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
