//! `edgent mesh-sim` as a separate process: the node lines it prints, and faults
//! injected over HTTP from this (another) process.

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use edgent::axl::{AxlClient, AxlError, PeerKey, Transport};
use edgent::harness::mesh_sim::sim_node_key;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support;

#[tokio::test]
async fn mesh_sim_prints_its_nodes_and_takes_faults_over_http() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgent"))
        .args([
            "mesh-sim",
            "--nodes",
            "3",
            "--base-port",
            "0",
            "--seed",
            "5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut nodes: Vec<(PeerKey, String)> = Vec::new();
    for i in 0..3 {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("mesh-sim prints its nodes")
            .unwrap()
            .expect("a line per node");
        // node <i> id=<64 hex> url=http://127.0.0.1:<port>
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts.len(), 4, "{line}");
        assert_eq!(parts[0], "node");
        assert_eq!(parts[1], i.to_string());
        let id = parts[2].strip_prefix("id=").unwrap();
        let url = parts[3].strip_prefix("url=").unwrap();
        assert!(url.starts_with("http://127.0.0.1:"), "{line}");
        let key = PeerKey::from_hex(id).unwrap();
        assert_eq!(key, sim_node_key(5, i), "ids follow the seed");
        nodes.push((key, url.to_string()));
    }
    let clients: Vec<AxlClient> = nodes
        .iter()
        .map(|(_, u)| AxlClient::new(u).unwrap())
        .collect();
    for (c, (key, _)) in clients.iter().zip(&nodes) {
        assert_eq!(c.topology().await.unwrap().our_public_key, key.to_hex());
    }

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = http
        .post(format!("{}/sim/faults", nodes[1].1))
        .json(&serde_json::json!({"down": [2]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(matches!(
        clients[2].topology().await,
        Err(AxlError::Down(_))
    ));
    let err = clients[0]
        .send(&nodes[2].0, Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, AxlError::Unreachable(_)), "{err:?}");
    clients[0]
        .send(&nodes[1].0, Bytes::from_static(b"still here"))
        .await
        .unwrap();
    let m = clients[1].recv().await.unwrap().unwrap();
    assert_eq!(&m.body[..], b"still here");
    assert!(m.from.same_node(&nodes[0].0));

    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

/// `--parents` and `--real` from another process: a spoke's tree lacks the other spoke
/// though `/send` reaches it, the measured timings (scaled) are in force, and a node
/// killed over HTTP lingers in the hub's tree with its peer entry down, then restarts.
#[tokio::test]
async fn mesh_sim_takes_a_peering_tree_and_the_real_timings() {
    // Hub 0 with spokes 1, 2, 3; real timings at a tenth (warm-up 0.2 s, linger 18 s).
    let mesh = support::MeshSimProc::start_with(
        4,
        &[
            "--parents",
            "0,0,0",
            "--real",
            "--time-scale",
            "0.1",
            "--seed",
            "8",
        ],
    );
    let timing = mesh.sim_get("/sim/timing").await;
    assert_eq!(
        timing,
        serde_json::json!({"warmup_ms": 200, "syn_backoff_ms": 100, "block_ms": 12700, "linger_ms": 18000})
    );
    let keys: Vec<PeerKey> = (0..4).map(|i| sim_node_key(8, i)).collect();
    let root = (0..4).min_by_key(|&i| keys[i].0).unwrap();
    let spokes: Vec<usize> = (1..4).filter(|&i| i != root).collect();
    let (a, b) = (spokes[0], spokes[1]);
    let tree = |t: &serde_json::Value| -> Vec<String> {
        t["tree"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["public_key"].as_str().unwrap().to_string())
            .collect()
    };
    let ta = mesh.topology(a).await;
    assert!(!tree(&ta).contains(&keys[b].to_hex()), "{ta}");
    assert!(tree(&ta).contains(&keys[0].to_hex()), "{ta}");
    assert_eq!(ta["peers"].as_array().unwrap().len(), 1, "{ta}");

    let ca = AxlClient::new(&mesh.nodes[a].1).unwrap();
    let cb = AxlClient::new(&mesh.nodes[b].1).unwrap();
    ca.send(&keys[b], Bytes::from_static(b"spoke to spoke"))
        .await
        .unwrap();
    assert_eq!(
        &cb.recv().await.unwrap().unwrap().body[..],
        b"spoke to spoke"
    );
    let stats = mesh.stats().await;
    assert_eq!(stats[a]["sent"], 1);

    mesh.kill_node(b).await;
    let hub = mesh.topology(0).await;
    assert!(tree(&hub).contains(&keys[b].to_hex()), "lingers: {hub}");
    let peer = hub["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["public_key"] == keys[b].to_hex())
        .cloned()
        .unwrap();
    assert_eq!(peer["up"], false, "{peer}");
    assert!(matches!(cb.recv().await, Err(AxlError::Down(_))));
    mesh.restart_node(b).await;
    ca.send(&keys[b], Bytes::from_static(b"again"))
        .await
        .unwrap();
    assert_eq!(&cb.recv().await.unwrap().unwrap().body[..], b"again");
}

#[tokio::test]
async fn mesh_sim_refuses_a_bad_topology() {
    for args in [
        vec!["--nodes", "3", "--parents", "0,0,0"],
        vec!["--parents", "0,2"],
        vec!["--topology", "hubs:9"],
        vec!["--topology", "ring"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_edgent"))
            .arg("mesh-sim")
            .args(["--base-port", "0"])
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "{args:?} must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("topology"), "{args:?}: {err}");
    }
}
