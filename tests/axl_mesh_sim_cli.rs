//! `edgent mesh-sim` as a separate process: the node lines it prints, and faults
//! injected over HTTP from this (another) process.

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use edgent::axl::sim::sim_node_key;
use edgent::axl::{AxlClient, AxlError, PeerKey, Transport};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

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
