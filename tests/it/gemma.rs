//! User story: a real language model end to end. An agent (the official `ollama` Python
//! client) asks its requester for Gemma 3 270M, which the requester's own Ollama does not
//! have; the requester delegates over the mesh to a provider whose real Ollama runs it
//! (`scripts/install-gemma.sh`), and the text that comes back is exactly what the
//! provider's Ollama gives the same client directly under greedy sampling.

use std::time::Duration;

use serde_json::json;

use crate::support;
use crate::support::gemma::GEMMA_MODEL;
use crate::support::ollama::{agent, RealOllama};
use crate::support::MeshSimProc;

/// Tokens asked of Gemma per answer.
const NUM_PREDICT: u64 = 32;

fn agent_env(url: &str) -> Vec<(String, String)> {
    [
        ("EDGENT_URL", url),
        ("MODEL", GEMMA_MODEL),
        ("API", "generate"),
        ("STREAM", "1"),
        ("NUM_PREDICT", "32"),
        ("PROMPT", "The capital of France is"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn joined(got: &serde_json::Value) -> String {
    got["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .map(|p| p.as_str().unwrap_or(""))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemma_through_the_mesh_gives_the_text_it_gives_directly() {
    // The agent's machine: a real Ollama without the model. The provider's runs Gemma.
    let local = RealOllama::start(&[]).await;
    let remote = RealOllama::with_gemma(&[]).await;
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().unwrap();
    let (requester, provider) = support::start_pair(
        &mesh,
        dir.path(),
        &[("OLLAMA_URL", &remote.url)],
        // Gemma on a busy 2-core machine may take minutes, past the default 120 s.
        &[
            ("OLLAMA_URL", &local.url),
            ("DELEGATE_TIMEOUT_MS", "900000"),
        ],
    )
    .await;

    let direct = agent("agent_ollama.py", agent_env(&remote.url)).await;
    let via = agent("agent_ollama.py", agent_env(&requester.url)).await;

    let text = joined(&direct);
    assert!(!text.trim().is_empty(), "{direct}");
    assert_eq!(direct["last"]["eval_count"], NUM_PREDICT, "{direct}");
    assert_eq!(via["headers"]["x-edgent-ran-on"], "mesh", "{via}");
    assert_eq!(
        joined(&via),
        text,
        "through the mesh: {via}\ndirectly: {direct}"
    );
    assert_eq!(via["last"]["done"], true, "{via}");
    assert_eq!(via["last"]["eval_count"], NUM_PREDICT, "{via}");
    assert!(
        via["parts"].as_array().unwrap().len() >= 2,
        "a streamed answer: {via}"
    );

    let job = via["headers"]["x-edgent-job"].as_str().expect("job header");
    let pjob = provider
        .job_in_state(job, "completed", Duration::from_secs(60))
        .await;
    assert_eq!(pjob["output"], json!(text));
    assert_eq!(
        requester.job(job).await.expect("requester job")["state"],
        "completed"
    );
    // Gemma ran twice on the provider's Ollama (directly, then for the mesh), never on the
    // agent's, which answered its one request with 404.
    assert_eq!(remote.requests_to("/api/generate"), 2, "{}", remote.log());
    let local_404 = local
        .log()
        .lines()
        .filter(|l| l.contains("[GIN]") && l.contains("| 404 |"))
        .count();
    assert_eq!(local_404, 1, "{}", local.log());
}
