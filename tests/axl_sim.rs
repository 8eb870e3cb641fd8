//! The mesh sim (test and demo harness) behaves like AXL's local HTTP API, faults included.

use std::time::{Duration, Instant};

use bytes::Bytes;
use edgent::axl::sim::{sim_node_key, Faults, MeshSim, SIM_MAX_MESSAGE_BYTES, SIM_QUEUE_CAPACITY};
use edgent::axl::{AxlError, PeerKey, Transport};

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn send_raw(url: &str, dest: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let mut req = http().post(format!("{url}/send")).body(body);
    if let Some(d) = dest {
        req = req.header("X-Destination-Peer-Id", d);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn ids_are_deterministic_per_seed() {
    let a = MeshSim::start(3, 0, 7).await.unwrap();
    let keys: Vec<PeerKey> = (0..3).map(|i| a.key(i)).collect();
    drop(a);
    let b = MeshSim::start(3, 0, 7).await.unwrap();
    assert_eq!(keys, (0..3).map(|i| b.key(i)).collect::<Vec<_>>());
    assert_eq!(keys[1], sim_node_key(7, 1));
    assert_ne!(keys[0], keys[1]);
    assert_ne!(sim_node_key(8, 0), keys[0]);
    // Addresses must differ too, or the sim could not route by address.
    assert_ne!(keys[0].address(), keys[1].address());
}

#[tokio::test]
async fn queue_keeps_the_newest_100() {
    let sim = MeshSim::start(2, 0, 21).await.unwrap();
    let (a, b) = (sim.client(0).unwrap(), sim.client(1).unwrap());
    for i in 0..150u32 {
        a.send(&sim.key(1), Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    let stats = sim.stats(1);
    assert_eq!(stats.queued, SIM_QUEUE_CAPACITY);
    assert_eq!(stats.overflow_dropped, 50);
    let mut got = Vec::new();
    while let Some(m) = b.recv().await.unwrap() {
        got.push(String::from_utf8(m.body.to_vec()).unwrap());
    }
    let want: Vec<String> = (50..150).map(|i: u32| i.to_string()).collect();
    assert_eq!(got, want, "oldest dropped, order kept");
}

#[tokio::test]
async fn from_header_is_the_partial_key_of_the_sender() {
    let sim = MeshSim::start(2, 0, 22).await.unwrap();
    sim.client(0)
        .unwrap()
        .send(&sim.key(1), Bytes::from_static(b"hi"))
        .await
        .unwrap();
    let resp = http()
        .get(format!("{}/recv", sim.url(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let from = resp.headers()["X-From-Peer-Id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(resp.bytes().await.unwrap(), Bytes::from_static(b"hi"));
    let sender = sim.key(0);
    assert_eq!(from, sender.partial().to_hex());
    assert_ne!(from, sender.to_hex());
    let parsed = PeerKey::from_hex(&from).unwrap();
    assert_eq!(parsed.address(), sender.address());
    let empty = http()
        .get(format!("{}/recv", sim.url(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status().as_u16(), 204);
}

#[tokio::test]
async fn a_partial_key_reaches_the_node_like_axl_dialling_by_address() {
    let sim = MeshSim::start(2, 0, 23).await.unwrap();
    let partial = sim.key(1).partial();
    sim.client(0)
        .unwrap()
        .send(&partial, Bytes::from_static(b"reply"))
        .await
        .unwrap();
    assert_eq!(sim.stats(1).delivered, 1);
}

#[tokio::test]
async fn bad_destination_headers_are_400_like_axl() {
    let sim = MeshSim::start(2, 0, 24).await.unwrap();
    let url = sim.url(0);
    let good = sim.key(1).to_hex();
    assert_eq!(
        send_raw(&url, None, b"x".to_vec()).await,
        (400, "Missing X-Destination-Peer-Id header\n".into())
    );
    for bad in [
        format!("0x{good}"),
        good[..63].to_string(),
        format!("{}zz", &good[..62]),
        format!("{good}00"),
    ] {
        assert_eq!(
            send_raw(&url, Some(&bad), b"x".to_vec()).await,
            (400, "Invalid destination peer ID\n".into()),
            "{bad}"
        );
    }
    // Go's hex decoder takes upper case.
    let (status, _) = send_raw(&url, Some(&good.to_uppercase()), b"x".to_vec()).await;
    assert_eq!(status, 200);
    assert_eq!(sim.stats(1).delivered, 1);
}

#[tokio::test]
async fn send_reports_bytes_written() {
    let sim = MeshSim::start(2, 0, 25).await.unwrap();
    let resp = http()
        .post(format!("{}/send", sim.url(0)))
        .header("X-Destination-Peer-Id", sim.key(1).to_hex())
        .body(vec![1u8; 1234])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["X-Sent-Bytes"], "1234");
}

#[tokio::test]
async fn oversize_body_fails_the_write_and_is_not_delivered() {
    let sim = MeshSim::start(2, 0, 26).await.unwrap();
    let (status, text) = send_raw(
        &sim.url(0),
        Some(&sim.key(1).to_hex()),
        vec![0u8; SIM_MAX_MESSAGE_BYTES + 1],
    )
    .await;
    assert_eq!(status, 500);
    assert!(text.starts_with("Write data failed"), "{text}");
    assert_eq!(sim.stats(1).delivered, 0);
}

#[tokio::test]
async fn partition_cuts_both_ways_and_heals() {
    let sim = MeshSim::start(3, 0, 27).await.unwrap();
    let c: Vec<_> = (0..3).map(|i| sim.client(i).unwrap()).collect();
    sim.partition(0, 1).await.unwrap();
    let err = c[0]
        .send(&sim.key(1), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, AxlError::Unreachable(_)), "{err:?}");
    let err = c[1]
        .send(&sim.key(0), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, AxlError::Unreachable(_)), "{err:?}");
    c[0].send(&sim.key(2), Bytes::from_static(b"x"))
        .await
        .unwrap();
    let topo = c[0].topology().await.unwrap();
    let peer1 = topo
        .peers
        .iter()
        .find(|p| p.public_key == sim.key(1).to_hex())
        .unwrap();
    assert!(!peer1.up);
    assert!(!topo.reachable_nodes().contains(&sim.key(1)));
    assert!(topo.reachable_nodes().contains(&sim.key(2)));
    sim.heal().await.unwrap();
    c[0].send(&sim.key(1), Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert!(c[0]
        .topology()
        .await
        .unwrap()
        .reachable_nodes()
        .contains(&sim.key(1)));
}

#[tokio::test]
async fn a_down_node_refuses_connections_and_is_unreachable() {
    let sim = MeshSim::start(3, 0, 28).await.unwrap();
    let c: Vec<_> = (0..3).map(|i| sim.client(i).unwrap()).collect();
    c[0].send(&sim.key(1), Bytes::from_static(b"lost with the node"))
        .await
        .unwrap();
    sim.set_down(1, true).await.unwrap();
    let refused = std::net::TcpStream::connect(("127.0.0.1", sim.port(1)));
    assert!(
        refused.is_err(),
        "a down node's port must refuse connections"
    );
    assert!(matches!(c[1].recv().await, Err(AxlError::Down(_))));
    let err = c[0]
        .send(&sim.key(1), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, AxlError::Unreachable(_)), "{err:?}");
    let topo = c[2].topology().await.unwrap();
    assert!(!topo.reachable_nodes().contains(&sim.key(1)));
    assert!(topo
        .tree
        .iter()
        .all(|t| t.public_key != sim.key(1).to_hex()));
    sim.set_down(1, false).await.unwrap();
    assert!(
        c[1].recv().await.unwrap().is_none(),
        "queue is lost with the process"
    );
    c[0].send(&sim.key(1), Bytes::from_static(b"back"))
        .await
        .unwrap();
    assert_eq!(&c[1].recv().await.unwrap().unwrap().body[..], b"back");
}

#[tokio::test]
async fn faults_over_http_from_any_node() {
    let sim = MeshSim::start(3, 0, 29).await.unwrap();
    let http = http();
    let set = |node: usize, body: serde_json::Value| {
        let http = http.clone();
        let url = format!("{}/sim/faults", sim.url(node));
        async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // Node 0 takes node 0 itself and node 2 down; node 1 answers for the sim afterwards.
    let (status, _) = set(
        0,
        serde_json::json!({"down": [0, 2], "partitions": [[1, 2]], "delay_ms": 3}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(std::net::TcpStream::connect(("127.0.0.1", sim.port(0))).is_err());
    assert!(std::net::TcpStream::connect(("127.0.0.1", sim.port(2))).is_err());
    let got: Faults = http
        .get(format!("{}/sim/faults", sim.url(1)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got.down, vec![0, 2]);
    assert_eq!(got.partitions, vec![[1, 2]]);
    assert_eq!(got.delay_ms, 3);
    assert_eq!(sim.faults(), got);
    // Bad faults are refused and change nothing.
    for bad in [
        serde_json::json!({"drop_rate": 1.5}),
        serde_json::json!({"down": [3]}),
        serde_json::json!({"partitions": [[1, 1]]}),
        serde_json::json!({"dorp_rate": 0.5}),
    ] {
        let (status, text) = set(1, bad.clone()).await;
        assert_eq!(status, 400, "{bad} -> {text}");
    }
    assert_eq!(sim.faults(), got);
    let (status, _) = set(1, serde_json::json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(sim.faults(), Faults::default());
    sim.client(0).unwrap().topology().await.unwrap();
    sim.client(2).unwrap().topology().await.unwrap();
}

#[tokio::test]
async fn drop_rate_one_loses_everything_silently() {
    let sim = MeshSim::start(2, 0, 30).await.unwrap();
    sim.set_drop_rate(1.0).await.unwrap();
    let (a, b) = (sim.client(0).unwrap(), sim.client(1).unwrap());
    for i in 0..20u32 {
        a.send(&sim.key(1), Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    assert!(b.recv().await.unwrap().is_none());
    let stats = sim.stats(1);
    assert_eq!((stats.delivered, stats.fault_dropped), (0, 20));
    sim.set_drop_rate(0.0).await.unwrap();
    a.send(&sim.key(1), Bytes::from_static(b"ok"))
        .await
        .unwrap();
    assert_eq!(&b.recv().await.unwrap().unwrap().body[..], b"ok");
}

#[tokio::test]
async fn delay_holds_messages_back() {
    let sim = MeshSim::start(2, 0, 31).await.unwrap();
    sim.set_delay(Duration::from_millis(800)).await.unwrap();
    let (a, b) = (sim.client(0).unwrap(), sim.client(1).unwrap());
    let sent_at = Instant::now();
    a.send(&sim.key(1), Bytes::from_static(b"late"))
        .await
        .unwrap();
    assert!(
        b.recv().await.unwrap().is_none(),
        "not there before the delay"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let msg = loop {
        if let Some(m) = b.recv().await.unwrap() {
            break m;
        }
        assert!(Instant::now() < deadline, "delayed message never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(&msg.body[..], b"late");
    assert!(sent_at.elapsed() >= Duration::from_millis(800));
}

#[tokio::test]
async fn messages_to_self_are_delivered() {
    let sim = MeshSim::start(1, 0, 32).await.unwrap();
    let c = sim.client(0).unwrap();
    c.send(&sim.key(0), Bytes::from_static(b"me"))
        .await
        .unwrap();
    let m = c.recv().await.unwrap().unwrap();
    assert!(m.from.same_node(&sim.key(0)));
}
