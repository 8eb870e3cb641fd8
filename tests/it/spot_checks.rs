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
    // One catch is one dispute in the cheater's history.
    let history = st["provider_history"].as_array().expect("provider_history");
    let entry = history
        .iter()
        .find(|h| h["node_id"] == json!(cheater))
        .expect("the cheater's history");
    assert_eq!(entry["disputes"], 1, "{entry}");
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

/// Attack story (issue 22, threat model line 38): a lying checker. Two honest providers
/// serve the real Gemma; a third node claims Gemma's digest but serves the tiny model, and
/// costs more, so it is never the job's provider, only a checker, where it answers the
/// re-run with other text. When it is the first checker, its run disagrees with the honest
/// provider's; the third run (the other honest provider's) settles it: only the liar, in
/// the minority, is accused and excluded; the honest providers never are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_checker_is_outvoted_by_the_third_run_and_only_it_is_accused() {
    let unload = [("OLLAMA_KEEP_ALIVE", "0")];
    let honest = RealOllama::start_seeded(&[], &unload, seed_gemma).await;
    let fake = RealOllama::start_with_env(&[(GEMMA_MODEL, TestModel::Tiny)], &unload).await;
    let mesh = MeshSimProc::start(4, 0);
    let dir = tempfile::tempdir().unwrap();
    let (a, b, liar) = (
        mesh.nodes[1].0.clone(),
        mesh.nodes[2].0.clone(),
        mesh.nodes[3].0.clone(),
    );
    let cheap = [("PRICE_USDC", "0.001")];
    let _a = provider(&mesh, dir.path(), 1, &honest.url, &cheap).await;
    let _b = provider(&mesh, dir.path(), 2, &honest.url, &cheap).await;
    let _liar = provider(
        &mesh,
        dir.path(),
        3,
        &fake.url,
        &[
            ("PRICE_USDC", "0.0011"),
            ("EDGENT_TEST_CLAIM_DIGEST", GEMMA_DIGEST),
        ],
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
    support::eventually("the three ads", Duration::from_secs(60), || async {
        let st = requester.get("/status").await;
        (st["mesh_providers"].as_array()?.len() >= 3).then_some(())
    })
    .await;

    // Every job is checked; the checkers are shuffled, so the liar is the first checker
    // of a job with probability 1/2: ask until it was (at most 12 jobs, 1 in 4096 to
    // miss), then once more.
    let prompts = [
        "The capital of France is",
        "The largest ocean is",
        "Water boils at",
        "The first planet from the sun is",
        "The tallest mountain is",
        "The chemical symbol for gold is",
        "The longest river is",
        "The capital of Japan is",
        "The speed of light is",
        "The author of Hamlet is",
        "The smallest prime is",
        "The opposite of hot is",
    ];
    let mut verdicts: Vec<String> = Vec::new();
    let mut caught_at = None;
    for (i, prompt) in prompts.iter().enumerate() {
        let (status, body) = requester.delegate(ask(prompt)).await;
        assert_eq!(status, 200, "{body}\n{}", requester.log());
        let tried = outcomes(&body);
        assert_eq!(tried.len(), 1, "an honest provider answers: {body}");
        assert!([&a, &b].contains(&&tried[0].0), "{body}");
        assert_eq!(tried[0].1, "completed", "{body}");
        assert_eq!(
            body["output"],
            json!(honest_answer(&honest.url, prompt).await),
            "{body}"
        );
        let job = requester
            .job(body["job_id"].as_str().unwrap())
            .await
            .expect("job");
        let check = &job["spot_checks"][0];
        let verdict = check["verdict"].as_str().unwrap().to_string();
        let checkers: Vec<&str> = check["checkers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        if checkers.first() == Some(&liar.as_str()) {
            // The liar disagreed; the other honest provider ran third and agreed with the
            // provider: the liar is the minority.
            assert_eq!(verdict, "checker_caught", "{job}");
            assert_eq!(checkers.len(), 2, "{job}");
            assert!([&a, &b].contains(&&checkers[1].to_string()), "{job}");
            assert_eq!(check["receipts"].as_array().unwrap().len(), 3, "{job}");
            caught_at = Some(i);
        } else {
            assert_eq!(verdict, "passed", "{job}");
            assert_eq!(checkers.len(), 1, "{job}");
        }
        verdicts.push(verdict);
        if caught_at.is_some() {
            break;
        }
    }
    let caught_at = caught_at.expect("the liar was a first checker within 12 jobs");
    let st = requester.get("/status").await;
    assert_eq!(st["caught_providers"], json!([liar]), "{st}");

    // From then on the liar checks nothing: the other honest provider is the checker.
    let (status, body) = requester.delegate(ask("The colour of the sky is")).await;
    assert_eq!(status, 200, "{body}");
    let job = requester
        .job(body["job_id"].as_str().unwrap())
        .await
        .expect("job");
    assert_eq!(job["spot_checks"][0]["verdict"], "passed", "{job}");
    assert_ne!(job["spot_checks"][0]["checkers"][0], json!(liar), "{job}");

    let metrics = requester.metrics().await;
    assert!(
        metrics.contains("edgent_spot_checks_total{outcome=\"checker_caught\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "edgent_spot_checks_total{{outcome=\"passed\"}} {}",
            caught_at + 1
        )),
        "{metrics}"
    );
    assert!(
        !metrics.contains("outcome=\"caught\""),
        "nobody honest accused: {metrics}"
    );
    // The liar ran exactly the one re-run it lied about.
    assert_eq!(fake.requests_to("/api/generate"), 1, "{}", fake.log());
    assert_eq!(verdicts.len(), caught_at + 1);
}

/// Attack story (threat model line 39): in a paid mesh, whose providers refuse tasks
/// without a stake, the spot check still runs, because each check run is a paid job to
/// its checker. With `VERIFY_RATE=1`, a cheaper cheater (the tiny model under Gemma's name,
/// claiming Gemma's digest) is tried first; its result is re-run by the two honest
/// providers, each staked and paid its price once its proof checks; the cheater is caught
/// and paid nothing (its submit disputed); the next honest provider answers and its own
/// check is paid too. USDC is conserved to the unit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_paid_mesh_the_checkers_are_paid_and_the_cheater_is_caught_and_paid_nothing() {
    use crate::support::paid::{PaidWorld, FUND, PRICE};
    use edgent::chain::FairStatus;

    let unload = [("OLLAMA_KEEP_ALIVE", "0")];
    let honest = RealOllama::start_seeded(&[], &unload, seed_gemma).await;
    let fake = RealOllama::start_with_env(&[(GEMMA_MODEL, TestModel::Tiny)], &unload).await;
    let w = PaidWorld::of_nodes(4).await;
    // Nodes 1 and 2 are honest (accounts 3 and 4), node 3 the cheater (account 5).
    const CHEAT_PRICE: u64 = 9_000;
    let start = |node: usize, account: usize, url: &str, price: &str, extra: &[(&str, &str)]| {
        let mut env = w.provider_env_at(node, account, url, price);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let dir = w.dir.path().join(format!("node{node}"));
        async move { DaemonProc::start_owned(&dir, env).await }
    };
    let mut r_env = w.requester_env();
    r_env.push(("VERIFY_RATE".into(), "1".into()));
    r_env.push(("DISCOVERY_WINDOW_MS".into(), "3000".into()));
    r_env.push(("DISCOVERY_SETTLE_MS".into(), "2500".into()));
    let requester = DaemonProc::start_owned(&w.dir.path().join("requester"), r_env).await;
    let _a = start(1, 3, &honest.url, "0.01", &[]).await;
    let _b = start(2, 4, &honest.url, "0.01", &[]).await;
    let _cheater = start(
        3,
        5,
        &fake.url,
        "0.009",
        &[("EDGENT_TEST_CLAIM_DIGEST", GEMMA_DIGEST)],
    )
    .await;
    let (a, b, cheater) = (
        w.mesh.nodes[1].0.clone(),
        w.mesh.nodes[2].0.clone(),
        w.mesh.nodes[3].0.clone(),
    );
    support::eventually("the three ads", Duration::from_secs(60), || async {
        let st = requester.get("/status").await;
        (st["mesh_providers"].as_array()?.len() >= 3).then_some(())
    })
    .await;

    let mut body = ask("The capital of France is");
    body["timeout_ms"] = json!(600_000);
    body["max_price"] = json!("0.05");
    let (status, answer) = requester.delegate(body).await;
    assert_eq!(status, 200, "{answer}\n{}", requester.log());
    let tried = outcomes(&answer);
    assert_eq!(tried.len(), 2, "{answer}");
    assert_eq!(
        tried[0],
        (cheater.clone(), "caught".to_string()),
        "{answer}"
    );
    assert_eq!(tried[1].1, "completed", "{answer}");
    assert!([&a, &b].contains(&&tried[1].0), "{answer}");
    assert_eq!(
        answer["output"],
        json!(honest_answer(&honest.url, "The capital of France is").await)
    );

    // The cheater's check: two paid runs, one per honest provider, at their price.
    let cheat_job = answer["attempts"][0]["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let rec = requester.job(&cheat_job).await.expect("the cheater's job");
    let check = &rec["spot_checks"][0];
    assert_eq!(check["verdict"], "caught", "{rec}");
    assert_eq!(check["cost_units"], json!(2 * PRICE), "{rec}");
    let runs: Vec<String> = check["check_jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j.as_str().unwrap().to_string())
        .collect();
    assert_eq!(runs.len(), 2, "{rec}");
    assert_eq!(rec["payment"]["status"], json!("disputed"), "{rec}");
    // The honest answer's own check: one paid run by the other honest provider.
    let done = requester
        .job(answer["job_id"].as_str().unwrap())
        .await
        .expect("the answer's job");
    let check = &done["spot_checks"][0];
    assert_eq!(check["verdict"], "passed", "{done}");
    assert_eq!(check["cost_units"], json!(PRICE), "{done}");
    let mut all_runs = runs.clone();
    all_runs.extend(
        check["check_jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j.as_str().unwrap().to_string()),
    );
    assert_eq!(all_runs.len(), 3, "{done}");

    // Every check run is a paid job, released to its checker once its proof checked.
    for id in &all_runs {
        support::until(
            "the check run released",
            Duration::from_secs(60),
            || async { w.stake_status(id).await == FairStatus::Released },
        )
        .await;
    }
    support::until("the answer released", Duration::from_secs(60), || async {
        w.stake_status(answer["job_id"].as_str().unwrap()).await == FairStatus::Released
    })
    .await;
    // The cheater submits its output all the same; the requester disputes it.
    support::until(
        "the cheater's submit disputed",
        Duration::from_secs(60),
        || async { w.stake_status(&cheat_job).await == FairStatus::Disputed },
    )
    .await;

    let usdc = |i: usize| w.usdc_of(w.wallet(i));
    let (pa, pb, pc) = (usdc(3).await, usdc(4).await, usdc(5).await);
    assert_eq!(pc, 0, "the cheater got nothing");
    assert_eq!(pa + pb, 4 * PRICE, "three check runs and the answer");
    let r = w.usdc_of(w.requester_wallet).await;
    let escrow = w.usdc_of(w.deployment.escrow).await;
    assert_eq!(
        escrow, CHEAT_PRICE,
        "the disputed stake waits for the arbiter"
    );
    assert_eq!(r + pa + pb + pc + escrow, FUND, "USDC conserved");
    // The cheater ran its own job and nothing else.
    assert_eq!(fake.requests_to("/api/generate"), 1, "{}", fake.log());
}
