//! User stories of discovery: a requester chooses from its ad cache without asking the
//! mesh again; of two providers, the one with the model loaded is chosen; what the
//! requester learnt about providers survives its restart and changes its choice; a denied
//! node is never chosen. Real daemons over `edgent mesh-sim`, with the Ollama API stub.

use std::time::Duration;

use edgent::harness::ollama_stub::{OllamaStub, StubBehaviour};
use serde_json::json;

use crate::support;
use crate::support::{DaemonProc, MeshSimProc};

/// A counter of `/metrics` (OpenMetrics text), e.g. `edgent_messages_out` for `type`.
async fn counter(d: &DaemonProc, family: &str, kind: &str) -> f64 {
    let text = d.metrics().await;
    let prefix = format!("{family}_total{{");
    let label = format!("type=\"{kind}\"");
    text.lines()
        .find(|l| l.starts_with(&prefix) && l.contains(&label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {family} {kind} in /metrics:\n{text}"))
}

/// Start a daemon on mesh node `node` with the given role and settings.
async fn daemon(
    mesh: &MeshSimProc,
    dir: &std::path::Path,
    node: usize,
    role: &str,
    extra: &[(&str, &str)],
) -> DaemonProc {
    let mut env: Vec<(String, String)> = vec![
        ("AXL_API_URL".into(), mesh.nodes[node].1.clone()),
        ("EDGENT_ROLE".into(), role.into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    DaemonProc::start_owned(&dir.join(format!("node{node}")), env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_delegation_chooses_from_the_cache_without_a_resource_request() {
    let ollama = OllamaStub::start(StubBehaviour::default()).await.unwrap();
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().unwrap();
    // Announcements off: the first delegation must broadcast, its answer fills the cache.
    let off = ("ANNOUNCE_INTERVAL_SECS", "0");
    let (requester, _provider) = support::start_pair(
        &mesh,
        dir.path(),
        &[("OLLAMA_URL", &ollama.url()), off],
        &[off],
    )
    .await;
    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "first"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        counter(&requester, "edgent_messages_out", "resource_request").await,
        1.0
    );
    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "second"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["provider"]["node_id"], json!(mesh.nodes[1].0));
    assert_eq!(
        counter(&requester, "edgent_messages_out", "resource_request").await,
        1.0,
        "the second delegation asked the mesh again"
    );
    assert_eq!(
        counter(&requester, "edgent_messages_out", "task").await,
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_announcements_no_delegation_broadcasts() {
    let ollama = OllamaStub::start(StubBehaviour::default()).await.unwrap();
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().unwrap();
    let (requester, provider) =
        support::start_pair(&mesh, dir.path(), &[("OLLAMA_URL", &ollama.url())], &[]).await;
    requester
        .knows_providers(&[&mesh.nodes[1].0], Duration::from_secs(30))
        .await;
    for prompt in ["one", "two"] {
        let (status, body) = requester
            .delegate(json!({"model": "tinyllama", "prompt": prompt}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        counter(&requester, "edgent_messages_out", "resource_request").await,
        0.0
    );
    assert!(counter(&requester, "edgent_messages_in", "announce").await >= 1.0);
    assert!(counter(&provider, "edgent_messages_out", "announce").await >= 1.0);
    // /status shows the provider and its models from the cache.
    let st = requester.get("/status").await;
    assert_eq!(st["mesh_models"][0]["name"], json!("tinyllama:latest"));
    assert_eq!(st["mesh_models"][0]["size_bytes"], json!(637_700_138u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_providers_the_one_with_the_model_loaded_is_chosen() {
    let cold = OllamaStub::start(StubBehaviour::default()).await.unwrap();
    let warm = OllamaStub::start(StubBehaviour {
        loaded: vec!["tinyllama:latest".into()],
        ..StubBehaviour::default()
    })
    .await
    .unwrap();
    let mesh = MeshSimProc::start(3, 0);
    let dir = tempfile::tempdir().unwrap();
    // One price (price comes first, docs/threat-model.md line 9): model fit decides.
    let _cold = daemon(
        &mesh,
        dir.path(),
        1,
        "provider",
        &[("OLLAMA_URL", &cold.url()), ("PRICE_USDC", "0.01")],
    )
    .await;
    let _warm = daemon(
        &mesh,
        dir.path(),
        2,
        "provider",
        &[("OLLAMA_URL", &warm.url()), ("PRICE_USDC", "0.01")],
    )
    .await;
    let requester = daemon(&mesh, dir.path(), 0, "requester", &[]).await;
    let st = requester
        .knows_providers(
            &[&mesh.nodes[1].0, &mesh.nodes[2].0],
            Duration::from_secs(30),
        )
        .await;
    let warm_ad = st["mesh_providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["node_id"] == json!(mesh.nodes[2].0))
        .cloned()
        .unwrap();
    assert_eq!(warm_ad["models"][0]["loaded"], json!(true), "{warm_ad}");
    for i in 0..3 {
        let (status, body) = requester
            .delegate(json!({"model": "tinyllama", "prompt": format!("fit {i}")}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["provider"]["node_id"], json!(mesh.nodes[2].0));
    }
    assert_eq!(warm.generate_calls(), 3);
    assert_eq!(cold.generate_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_history_survives_a_restart_and_changes_the_choice() {
    let a = OllamaStub::start(StubBehaviour::default()).await.unwrap();
    let b = OllamaStub::start(StubBehaviour::default()).await.unwrap();
    let mesh = MeshSimProc::start(3, 0);
    let dir = tempfile::tempdir().unwrap();
    let _pa = daemon(
        &mesh,
        dir.path(),
        1,
        "provider",
        &[("OLLAMA_URL", &a.url())],
    )
    .await;
    let _pb = daemon(
        &mesh,
        dir.path(),
        2,
        "provider",
        &[("OLLAMA_URL", &b.url())],
    )
    .await;
    let mut requester = daemon(&mesh, dir.path(), 0, "requester", &[]).await;
    let ids = [mesh.nodes[1].0.as_str(), mesh.nodes[2].0.as_str()];
    requester
        .knows_providers(&ids, Duration::from_secs(30))
        .await;

    // Equal providers: the choice is stable (node id breaks the tie).
    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "who first"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let first = body["provider"]["node_id"].as_str().unwrap().to_string();
    let (first_stub, other) = if first == ids[0] {
        (&a, ids[1])
    } else {
        (&b, ids[0])
    };

    // The first choice fails a job, which moves to the other provider; then it recovers.
    first_stub.set(|s| s.fail = Some((500, "out of memory".into())));
    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "fail once"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["attempts"][0]["provider"], json!(first), "{body}");
    assert_eq!(
        body["attempts"][0]["outcome"],
        json!("inference_failed"),
        "{body}"
    );
    assert_eq!(body["provider"]["node_id"], json!(other), "{body}");
    first_stub.set(|s| s.fail = None);

    requester.restart().await;
    let st = requester
        .knows_providers(&ids, Duration::from_secs(30))
        .await;
    let rec = st["provider_history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["node_id"] == json!(first))
        .cloned()
        .expect("the failed provider's record after the restart");
    assert_eq!(rec["failures"], json!(1), "{rec}");
    assert_eq!(rec["successes"], json!(1), "{rec}");

    // Its record now puts the other provider first.
    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "after restart"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["provider"]["node_id"], json!(other));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_node_is_never_chosen() {
    let cheap = OllamaStub::start(StubBehaviour {
        loaded: vec!["tinyllama:latest".into()],
        ..StubBehaviour::default()
    })
    .await
    .unwrap();
    let dear = OllamaStub::start(StubBehaviour::default()).await.unwrap();
    let mesh = MeshSimProc::start(3, 0);
    let dir = tempfile::tempdir().unwrap();
    // The denied one would be the best choice: loaded and cheaper.
    let _p1 = daemon(
        &mesh,
        dir.path(),
        1,
        "provider",
        &[("OLLAMA_URL", &cheap.url()), ("PRICE_USDC", "0.001")],
    )
    .await;
    let _p2 = daemon(
        &mesh,
        dir.path(),
        2,
        "provider",
        &[("OLLAMA_URL", &dear.url())],
    )
    .await;
    let requester = daemon(
        &mesh,
        dir.path(),
        0,
        "requester",
        &[("EDGENT_DENY", &mesh.nodes[1].0)],
    )
    .await;
    requester
        .knows_providers(&[&mesh.nodes[2].0], Duration::from_secs(30))
        .await;
    for i in 0..3 {
        let (status, body) = requester
            .delegate(json!({"model": "tinyllama", "prompt": format!("deny {i}")}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["provider"]["node_id"], json!(mesh.nodes[2].0));
    }
    assert_eq!(cheap.generate_calls(), 0);
    let st = requester.get("/status").await;
    assert!(
        !st["mesh_providers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["node_id"] == json!(mesh.nodes[1].0)),
        "{st}"
    );
    assert!(counter(&requester, "edgent_messages_in", "announce").await >= 1.0);
}

/// When no provider serves, the 503 says what the mesh said: how many nodes were asked,
/// how many sends failed, how many answered and why none fit, in one text and as fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_provider_names_the_nodes_asked_failed_and_answered() {
    let dear = OllamaStub::start(StubBehaviour::default()).await.unwrap();
    let other_model = OllamaStub::start(StubBehaviour {
        models: vec!["llama3:8b".into()],
        ..StubBehaviour::default()
    })
    .await
    .unwrap();
    // 0 the requester, 1 a provider too dear, 2 a provider of another model, 3 a node
    // that goes down, 4 a node with no daemon (it accepts and never answers).
    let mesh = MeshSimProc::start(5, 0);
    let dir = tempfile::tempdir().unwrap();
    let _p1 = daemon(
        &mesh,
        dir.path(),
        1,
        "provider",
        &[("OLLAMA_URL", &dear.url()), ("PRICE_USDC", "1")],
    )
    .await;
    let _p2 = daemon(
        &mesh,
        dir.path(),
        2,
        "provider",
        &[("OLLAMA_URL", &other_model.url())],
    )
    .await;
    let requester = daemon(
        &mesh,
        dir.path(),
        0,
        "requester",
        &[("DISCOVERY_WINDOW_MS", "300")],
    )
    .await;
    requester
        .knows_providers(
            &[&mesh.nodes[1].0, &mesh.nodes[2].0],
            Duration::from_secs(30),
        )
        .await;
    let (status, _) = mesh
        .sim_post("/sim/faults", Some(json!({"down": [3]})))
        .await;
    assert_eq!(status, 200);

    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "anyone?", "max_price": 0.5}))
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], json!("no_provider"));
    assert_eq!(body["model"], json!("tinyllama"));
    assert_eq!(body["asked"], json!(4), "{body}");
    assert_eq!(body["failed"], json!(1), "{body}");
    assert_eq!(body["answered"], json!(2), "{body}");
    assert_eq!(
        body["unfit"],
        json!({"price": 1, "model_unavailable": 1}),
        "{body}"
    );
    assert_eq!(
        body["detail"],
        json!("no provider served tinyllama: asked 4 nodes, 1 failed (send error or timeout), 2 answered (model_unavailable 1, price 1)")
    );
    assert_eq!(dear.generate_calls() + other_model.generate_calls(), 0);
}

/// A `resource_request` is answered and never relayed (issue 25 item 3; threat model line
/// 33): a relayed copy kept the requester's `node_id`, which is not its sender's, so every
/// receiver dropped it as spoofed, and each relay cost up to 32 sends. The evil node asks
/// with `hops: 3` as identity 0 and listens as identity 1; an honest requester's delegation
/// runs after it (its round trips all come after the relay would have been sent) and is
/// served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_request_is_answered_and_never_relayed() {
    use edgent::protocol::{Message, ResourceRequest};
    let ollama = OllamaStub::start(StubBehaviour::default()).await.unwrap();
    let mesh = MeshSimProc::start(4, 0);
    let dir = tempfile::tempdir().unwrap();
    let provider = daemon(
        &mesh,
        dir.path(),
        1,
        "provider",
        &[("OLLAMA_URL", &ollama.url())],
    )
    .await;
    let requester = daemon(&mesh, dir.path(), 3, "requester", &[]).await;
    let evil = support::evil::evil_on(&mesh, &[0, 2]).await;
    let asker = evil.key(0);
    let req = Message::ResourceRequest(ResourceRequest {
        request_id: uuid::Uuid::new_v4(),
        node_id: asker,
        model: "tinyllama".into(),
        min_memory_mb: 0,
        max_price: None,
        sender_ens: None,
        hops: 3,
    });
    evil.send(0, &support::evil::node_key(&mesh, 1), &req)
        .await
        .expect("send");
    let ad = evil
        .wait_for(Duration::from_secs(30), |r| {
            r.identity == 0 && r.kind() == Some("resource_ad")
        })
        .await
        .expect("the provider answers the request");
    assert!(ad.from.same_node(&support::evil::node_key(&mesh, 1)));

    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "after the relay"}))
        .await;
    assert_eq!(status, 200, "{body}\n{}", requester.log());
    let relayed: Vec<_> = evil
        .received()
        .into_iter()
        .filter(|r| matches!(&r.msg, Some(Message::ResourceRequest(m)) if m.node_id == asker))
        .collect();
    assert!(relayed.is_empty(), "the request was relayed: {relayed:?}");
    drop(provider);
}
