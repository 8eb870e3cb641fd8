//! User story: an agent delegates a prompt to its local daemon, which finds a provider
//! daemon over the mesh (payments off) and returns the provider's output.

use std::time::Duration;

use edgent::harness::ollama_stub::{stub_output, OllamaStub, StubBehaviour};
use serde_json::json;

use crate::support;
use crate::support::{DaemonProc, MeshSimProc};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegation_returns_the_providers_output_and_survives_restart() {
    let ollama = OllamaStub::start(StubBehaviour::default()).await.unwrap();
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().unwrap();
    let (mut requester, provider) = support::start_pair(
        &mesh,
        dir.path(),
        &[
            ("EDGENT_ENS_NAME", "dell-g15.edgent.eth"),
            ("OLLAMA_URL", &ollama.url()),
        ],
        &[("EDGENT_ENS_NAME", "jetson-orin.edgent.eth")],
    )
    .await;

    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "hello mesh"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["output"],
        json!(stub_output("tinyllama:latest", "hello mesh"))
    );
    assert_eq!(body["provider"]["node_id"], json!(mesh.nodes[1].0));
    // No ENS here: the provider's name is its claim, shown unverified.
    assert_eq!(
        body["provider"]["ens"],
        json!("dell-g15.edgent.eth (unverified)")
    );
    assert!(body["timings"]["total_ms"].as_u64().is_some());
    assert!(body["timings"]["discover_ms"].as_u64().is_some());
    let job_id = body["job_id"].as_str().unwrap().to_string();
    assert_eq!(ollama.generate_calls(), 1);

    // Both sides record the job.
    let rjob = requester.job(&job_id).await.expect("requester job");
    assert_eq!(rjob["state"], json!("completed"));
    assert_eq!(rjob["side"], json!("requester"));
    assert_eq!(rjob["peer_ens"], json!("dell-g15.edgent.eth (unverified)"));
    let pjob = provider
        .job_in_state(&job_id, "completed", Duration::from_secs(10))
        .await;
    assert_eq!(pjob["side"], json!("provider"));
    // The requester's name is its claim too (issue 21 item 5), shown unverified.
    assert_eq!(
        pjob["peer_ens"],
        json!("jetson-orin.edgent.eth (unverified)")
    );
    assert_eq!(pjob["output"], rjob["output"]);

    // Status shows both sides' view.
    let st = requester.get("/status").await;
    assert_eq!(st["node_id"], json!(mesh.nodes[0].0));
    assert_eq!(st["ens"], json!("jetson-orin.edgent.eth"));
    let peers = st["peers"].as_array().unwrap();
    assert!(peers.iter().any(|p| p["node_id"] == json!(mesh.nodes[1].0)
        && p["ens"] == json!("dell-g15.edgent.eth (unverified)")));
    let pst = provider.get("/status").await;
    assert_eq!(pst["models"], json!(["tinyllama:latest"]));

    // The job survives a restart of the requester.
    requester.restart().await;
    let rjobs = requester.get("/jobs").await;
    let again = rjobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_id"] == json!(job_id))
        .expect("job after restart");
    assert_eq!(again["state"], json!("completed"));
    assert_eq!(again["output"], rjob["output"]);

    // And it still delegates after the restart.
    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "again"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["output"],
        json!(stub_output("tinyllama:latest", "again"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_400_with_a_json_error() {
    let mesh = MeshSimProc::start(1, 0);
    let dir = tempfile::tempdir().unwrap();
    let d = DaemonProc::start(
        dir.path(),
        &[
            ("AXL_API_URL", &mesh.nodes[0].1),
            ("INFERENCE_BACKEND", "demo"),
        ],
    )
    .await;
    for body in [
        json!({"prompt": "no model"}),
        json!({"model": "", "prompt": "x"}),
        json!({"model": "m", "prompt": ""}),
        json!({"model": "m", "prompt": "x", "timeout_ms": 5}),
        json!({"model": "m", "prompt": "x", "max_price": "lots"}),
        json!({"model": "m", "prompt": "x", "surprise": 1}),
    ] {
        let (status, resp) = d.delegate(body.clone()).await;
        assert_eq!(status, 400, "{body} -> {resp}");
        assert_eq!(resp["error"], json!("bad_request"), "{resp}");
        assert!(resp["detail"].as_str().is_some_and(|s| !s.is_empty()));
    }
    let r = reqwest::Client::new()
        .post(format!("{}/delegate", d.url))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = reqwest::get(format!("{}/jobs?limit=abc", d.url))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let page = reqwest::get(format!("{}/", d.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<title>edgent</title>"));
}
