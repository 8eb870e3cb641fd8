//! User story: on a small machine the agent's request should not first make the local
//! Ollama try a model it cannot hold (`EDGENT_OFFLOAD=predict`, issue 23 item 2). The
//! front door estimates what the model needs (the real Ollama's `/api/tags` and
//! `/api/show`) against what the local Ollama may use (`EDGENT_LOCAL_MEMORY_MB`): too
//! little, and the request goes to the mesh before the local Ollama sees it; enough, and it
//! is served locally; a prediction the mesh cannot serve still gets the local Ollama.

use serde_json::{json, Value};

use crate::support;
use crate::support::ollama::{RealOllama, TestModel, TINY_MODEL};
use crate::support::{DaemonProc, MeshSimProc};

/// The agent's call: a non-streamed `/api/generate`; the answer and where it ran.
async fn generate(url: &str) -> (Value, String) {
    let resp = reqwest::Client::new()
        .post(format!("{url}/api/generate"))
        .json(
            &json!({"model": TINY_MODEL, "prompt": "hello edge mesh", "stream": false,
            "options": {"temperature": 0, "num_predict": 8}}),
        )
        .send()
        .await
        .expect("the front door answers");
    assert_eq!(resp.status(), 200);
    let ran_on = resp
        .headers()
        .get("x-edgent-ran-on")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (resp.json().await.expect("json"), ran_on)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_predicted_not_to_fit_goes_to_the_mesh_before_the_local_ollama_tries() {
    let local = RealOllama::start(&[(TINY_MODEL, TestModel::Tiny)]).await;
    let remote = RealOllama::start(&[(TINY_MODEL, TestModel::Tiny)]).await;
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().unwrap();
    let (requester, provider) = support::start_pair(
        &mesh,
        dir.path(),
        &[("OLLAMA_URL", &remote.url)],
        &[
            ("OLLAMA_URL", &local.url),
            ("EDGENT_OFFLOAD", "predict"),
            ("EDGENT_LOCAL_MEMORY_MB", "1"),
        ],
    )
    .await;

    let (answer, ran_on) = generate(&requester.url).await;
    assert_eq!(ran_on, "mesh", "{answer}");
    assert!(
        !answer["response"].as_str().unwrap_or("").is_empty(),
        "{answer}"
    );
    // The local Ollama was asked about the model (once to predict, once for the digest the
    // mesh must serve), never to run it; the provider's ran it.
    assert_eq!(local.requests_to("/api/generate"), 0, "{}", local.log());
    assert_eq!(local.requests_to("/api/show"), 2, "{}", local.log());
    assert_eq!(remote.requests_to("/api/generate"), 1, "{}", remote.log());
    drop(provider);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_fits_runs_locally_and_a_prediction_nobody_serves_still_gets_the_local_ollama()
{
    let local = RealOllama::start(&[(TINY_MODEL, TestModel::Tiny)]).await;
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().unwrap();
    let start = |node: usize, memory: &'static str| {
        let (axl, ollama, data) = (
            mesh.nodes[node].1.clone(),
            local.url.clone(),
            dir.path().join(format!("requester-{node}")),
        );
        async move {
            DaemonProc::start(
                &data,
                &[
                    ("AXL_API_URL", &axl),
                    ("EDGENT_ROLE", "requester"),
                    ("OLLAMA_URL", &ollama),
                    ("EDGENT_OFFLOAD", "predict"),
                    ("EDGENT_LOCAL_MEMORY_MB", memory),
                ],
            )
            .await
        }
    };

    // 4 GiB hold the tiny model: served locally, as with `oom`.
    let roomy = start(0, "4096").await;
    let (answer, ran_on) = generate(&roomy.url).await;
    assert_eq!(ran_on, "local", "{answer}");
    assert_eq!(local.requests_to("/api/generate"), 1, "{}", local.log());

    // 1 MiB holds nothing: predicted to the mesh, where nobody serves it; the local Ollama
    // gets its chance after all, and answers.
    let cramped = start(1, "1").await;
    let (answer, ran_on) = generate(&cramped.url).await;
    assert_eq!(ran_on, "local", "{answer}");
    assert!(
        !answer["response"].as_str().unwrap_or("").is_empty(),
        "{answer}"
    );
    assert_eq!(local.requests_to("/api/generate"), 2, "{}", local.log());
}
