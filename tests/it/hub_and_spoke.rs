//! User story: a mesh shaped like our users' (a hub, two sub-hubs, the rest spokes), with
//! the real AXL node's behaviours switched on in `mesh-sim --real`: a spoke's `/topology`
//! lists only itself, its peers and their ancestors, and the first send after peering is
//! slow. An agent on one spoke delegates to the provider on a spoke under the other
//! sub-hub, right after every daemon starts: discovery finds it through the relay and the
//! announcements, and the first delegation succeeds. The same paid: the spoke requester
//! stakes for the provider on the other spoke (anvil, the escrow, the direct settler), and
//! the release moves exactly the price.

use std::time::Duration;

use edgent::harness::ollama_stub::{stub_output, OllamaStub, StubBehaviour};
use serde_json::json;

use crate::support::paid;
use crate::support::{eventually, DaemonProc, MeshSimProc};

/// 12 nodes: 0 the hub, 1 and 2 sub-hubs, 3..=11 spokes (odd under 1, even under 2).
const NODES: usize = 12;
const REQUESTER: usize = 3;
const OTHER_REQUESTER: usize = 5;
const PROVIDER: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoke_finds_a_provider_on_another_spoke_at_once() {
    let ollama = OllamaStub::start(StubBehaviour::default()).await.unwrap();
    let mesh = MeshSimProc::start_with(NODES, &["--topology", "hubs:2", "--real"]);
    let dir = tempfile::tempdir().unwrap();

    // The requester's own /topology does not list the provider.
    let topo: serde_json::Value = reqwest::get(format!("{}/topology", mesh.nodes[REQUESTER].1))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = topo.to_string();
    assert!(!listed.contains(&mesh.nodes[PROVIDER].0), "{listed}");

    let mut daemons: Vec<DaemonProc> = Vec::new();
    for (i, (_, url)) in mesh.nodes.iter().enumerate() {
        let mut env: Vec<(String, String)> = vec![("AXL_API_URL".into(), url.clone())];
        if i == PROVIDER {
            env.push(("EDGENT_ROLE".into(), "provider".into()));
            env.push(("OLLAMA_URL".into(), ollama.url()));
        } else {
            env.push(("EDGENT_ROLE".into(), "requester".into()));
        }
        daemons.push(DaemonProc::start_owned(&dir.path().join(format!("n{i}")), env).await);
    }

    // At once, with nothing cached yet.
    let (status, body) = daemons[REQUESTER]
        .delegate(json!({"model": "tinyllama", "prompt": "across the hubs"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["provider"]["node_id"], json!(mesh.nodes[PROVIDER].0));
    assert_eq!(
        body["output"],
        json!(stub_output("tinyllama:latest", "across the hubs"))
    );

    // Another spoke (under the same sub-hub as the first) learns of the provider from the
    // announcements and delegates without asking the mesh.
    let other = &daemons[OTHER_REQUESTER];
    eventually(
        "the provider's ad on another spoke",
        Duration::from_secs(60),
        || async {
            let st = other.get("/status").await;
            st["mesh_providers"]
                .as_array()?
                .iter()
                .any(|p| p["node_id"] == json!(mesh.nodes[PROVIDER].0))
                .then_some(())
        },
    )
    .await;
    let (status, body) = other
        .delegate(json!({"model": "tinyllama", "prompt": "from the cache"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["provider"]["node_id"], json!(mesh.nodes[PROVIDER].0));
    assert_eq!(ollama.generate_calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoke_pays_a_provider_on_another_spoke() {
    let w = paid::PaidWorld::new().await;
    let mesh = MeshSimProc::start_with(NODES, &["--topology", "hubs:2", "--real"]);
    let dir = tempfile::tempdir().unwrap();
    // Every other node runs an unpaid daemon that only relays and announces.
    let mut relays: Vec<DaemonProc> = Vec::new();
    for (i, (_, url)) in mesh.nodes.iter().enumerate() {
        if i == REQUESTER || i == PROVIDER {
            continue;
        }
        let env = vec![
            ("AXL_API_URL".to_string(), url.clone()),
            ("EDGENT_ROLE".to_string(), "requester".to_string()),
            ("EDGENT_PAYMENTS".to_string(), "off".to_string()),
        ];
        relays.push(DaemonProc::start_owned(&dir.path().join(format!("n{i}")), env).await);
    }
    let (requester, provider) = w
        .start_with(
            &[("AXL_API_URL", &mesh.nodes[REQUESTER].1)],
            &[("AXL_API_URL", &mesh.nodes[PROVIDER].1)],
        )
        .await;
    w.assert_conserved(0).await;

    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "paid across the hubs", "wait": "settled", "max_price": "0.05"}))
        .await;
    assert_eq!(status, 200, "{body}\n{}", requester.log());
    assert_eq!(body["provider"]["node_id"], json!(mesh.nodes[PROVIDER].0));
    assert_eq!(
        body["output"],
        json!(stub_output("tinyllama:latest", "paid across the hubs"))
    );
    assert_eq!(body["proof_verified"], json!(true));
    assert_eq!(body["payment"]["status"], json!("released"));
    let id = body["job_id"].as_str().unwrap().to_string();
    assert_eq!(
        w.stake_status(&id).await,
        edgent::chain::FairStatus::Released
    );
    // Exactly the price moved, requester -> escrow -> provider; nothing created or lost.
    let (r, p, e) = w.balances().await;
    assert_eq!((r, p, e), (paid::FUND - paid::PRICE, paid::PRICE, 0));
    w.assert_conserved(0).await;
    paid::payment_becomes(&provider, &id, "released", Duration::from_secs(30)).await;
    assert_eq!(w.ollama.generate_calls(), 1);
}
