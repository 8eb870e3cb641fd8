//! The mesh sim (test and demo harness) behaves like AXL's local HTTP API, faults included.

use std::time::{Duration, Instant};

use bytes::Bytes;
use edgent::axl::{AxlError, PeerKey, Transport};
use edgent::harness::mesh_sim::{
    sim_node_key, Faults, MeshSim, SIM_MAX_MESSAGE_BYTES, SIM_QUEUE_CAPACITY,
};

use crate::support;
use crate::support::http;
use crate::support::sim::{clients, get_json, post, recv_body, send};

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
    send(&sim.client(0).unwrap(), &sim.key(1), b"hi").await;
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
    send(&sim.client(0).unwrap(), &partial, b"reply").await;
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
    let c = clients(&sim);
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
    send(&c[0], &sim.key(2), b"x").await;
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
    send(&c[0], &sim.key(1), b"x").await;
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
    let c = clients(&sim);
    send(&c[0], &sim.key(1), b"lost with the node").await;
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
    send(&c[0], &sim.key(1), b"back").await;
    assert_eq!(&c[1].recv().await.unwrap().unwrap().body[..], b"back");
}

#[tokio::test]
async fn faults_over_http_from_any_node() {
    let sim = MeshSim::start(3, 0, 29).await.unwrap();
    let set = |node: usize, body: serde_json::Value| {
        let url = format!("{}/sim/faults", sim.url(node));
        async move { post(&url, Some(&body)).await }
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
    let got: Faults = get_json(&format!("{}/sim/faults", sim.url(1))).await;
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
    send(&a, &sim.key(1), b"ok").await;
    assert_eq!(&b.recv().await.unwrap().unwrap().body[..], b"ok");
}

#[tokio::test]
async fn delay_holds_messages_back() {
    let sim = MeshSim::start(2, 0, 31).await.unwrap();
    sim.set_delay(Duration::from_millis(800)).await.unwrap();
    let (a, b) = (sim.client(0).unwrap(), sim.client(1).unwrap());
    let sent_at = Instant::now();
    send(&a, &sim.key(1), b"late").await;
    assert!(
        b.recv().await.unwrap().is_none(),
        "not there before the delay"
    );
    let msg = support::eventually("the delayed message", Duration::from_secs(10), || {
        recv_body(&b)
    })
    .await;
    assert_eq!(&msg[..], b"late");
    assert!(sent_at.elapsed() >= Duration::from_millis(800));
}

#[tokio::test]
async fn messages_to_self_are_delivered() {
    let sim = MeshSim::start(1, 0, 32).await.unwrap();
    let c = sim.client(0).unwrap();
    send(&c, &sim.key(0), b"me").await;
    let m = c.recv().await.unwrap().unwrap();
    assert!(m.from.same_node(&sim.key(0)));
}

// ---- The real node's behaviours, each behind its own switch (axl/README.md). ----

mod real {
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use edgent::axl::{AxlError, PeerKey, Topology, Transport};
    use edgent::harness::mesh_sim::{MeshSim, SimOptions, SimTiming, SimTopology};

    use crate::support::sim::{clients, get_json, post, recv_body as recv_one, send};
    use crate::support::until;

    /// How long a condition of these tests may take to hold.
    const WAIT: Duration = Duration::from_secs(20);

    fn listed(t: &Topology) -> Vec<String> {
        t.tree.iter().map(|e| e.public_key.clone()).collect()
    }

    #[tokio::test]
    async fn a_spoke_sees_only_its_peers_and_their_ancestors_yet_reaches_every_spoke() {
        let sim = MeshSim::start_with(SimOptions::new(4).seed(61).topology(SimTopology::star(4)))
            .await
            .unwrap();
        let hex = |i: usize| sim.key(i).to_hex();
        let root = (0..4).min_by_key(|&i| sim.key(i).0).unwrap();
        // Two spokes that are not the root: neither can see the other.
        let spokes: Vec<usize> = (1..4).filter(|&i| i != root).take(2).collect();
        let (a, b) = (spokes[0], spokes[1]);
        let ta = sim.client(a).unwrap().topology().await.unwrap();
        let tb = sim.client(b).unwrap().topology().await.unwrap();
        assert!(
            !listed(&ta).contains(&hex(b)),
            "spoke {a} must not list spoke {b}"
        );
        assert!(
            !listed(&tb).contains(&hex(a)),
            "spoke {b} must not list spoke {a}"
        );
        for (t, me) in [(&ta, a), (&tb, b)] {
            assert!(listed(t).contains(&hex(me)) && listed(t).contains(&hex(0)));
            assert!(listed(t).contains(&hex(root)), "ancestors are listed");
            let peers: Vec<&str> = t.peers.iter().map(|p| p.public_key.as_str()).collect();
            assert_eq!(peers, [hex(0).as_str()], "a spoke's only peer is the hub");
            assert!(t.peers[0].up && !t.peers[0].inbound);
        }
        // The root is its own parent; everyone else hangs off a listed node.
        let t0 = sim.client(0).unwrap().topology().await.unwrap();
        assert_eq!(listed(&t0).len(), 4, "the hub lists everyone");
        assert!(t0.peers.iter().all(|p| p.inbound));
        for e in &t0.tree {
            if e.public_key == hex(root) {
                assert_eq!(e.parent, hex(root));
            } else {
                assert!(listed(&t0).contains(&e.parent));
            }
        }
        // The mesh still routes to any key.
        send(&sim.client(a).unwrap(), &sim.key(b), b"via the hub").await;
        assert_eq!(
            recv_one(&sim.client(b).unwrap()).await.unwrap(),
            Bytes::from_static(b"via the hub")
        );
        // Without the hub there is no path between spokes.
        sim.kill(0).await.unwrap();
        let err = sim
            .client(a)
            .unwrap()
            .send(&sim.key(b), Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert!(matches!(err, AxlError::Unreachable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn the_first_send_after_start_is_held_and_a_later_one_is_not() {
        // Warm-up 3 s, SYNs every 1.5 s: a send at +0 goes out at the attempt at 4.5 s.
        let timing = SimTiming {
            warmup_ms: Some(3_000),
            syn_backoff_ms: 1_500,
            ..SimTiming::default()
        };
        let sim = MeshSim::start_with(SimOptions::new(2).seed(62).timing(timing))
            .await
            .unwrap();
        let (a, b) = (sim.client(0).unwrap(), sim.client(1).unwrap());
        let t = Instant::now();
        send(&a, &sim.key(1), b"first").await;
        let first = t.elapsed();
        assert!(
            first >= Duration::from_secs(3),
            "held until ready: {first:?}"
        );
        assert_eq!(recv_one(&b).await.unwrap(), Bytes::from_static(b"first"));
        let t = Instant::now();
        send(&a, &sim.key(1), b"second").await;
        let second = t.elapsed();
        assert!(
            second < Duration::from_secs(2),
            "ready route answers at once: {second:?}"
        );
        // Messages to oneself never wait.
        let t = Instant::now();
        send(&b, &sim.key(1), b"me").await;
        assert!(t.elapsed() < Duration::from_secs(2));

        // A restarted node's routes warm up again; the other routes stay ready.
        let sim3 = MeshSim::start_with(SimOptions::new(3).seed(63).timing(SimTiming {
            warmup_ms: Some(2_500),
            syn_backoff_ms: 1_250,
            ..SimTiming::default()
        }))
        .await
        .unwrap();
        let c0 = sim3.client(0).unwrap();
        let ready = Instant::now() + Duration::from_millis(2_600);
        tokio::time::sleep_until(ready.into()).await;
        sim3.restart(1).await.unwrap();
        let t = Instant::now();
        send(&c0, &sim3.key(2), b"old route").await;
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        let t = Instant::now();
        send(&c0, &sim3.key(1), b"new route").await;
        assert!(
            t.elapsed() >= Duration::from_millis(2_500),
            "{:?}",
            t.elapsed()
        );
    }

    #[tokio::test]
    async fn a_send_to_nobody_blocks_for_the_block_time_then_502() {
        let timing = SimTiming {
            block_ms: Some(1_500),
            syn_backoff_ms: 100,
            ..SimTiming::default()
        };
        let sim = MeshSim::start_with(SimOptions::new(2).seed(64).timing(timing))
            .await
            .unwrap();
        let nobody = PeerKey([0x42; 32]);
        let t = Instant::now();
        let err = sim
            .client(0)
            .unwrap()
            .send(&nobody, Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert!(
            t.elapsed() >= Duration::from_millis(1_500),
            "{:?}",
            t.elapsed()
        );
        match err {
            AxlError::Unreachable(why) => assert!(why.contains("operation timed out"), "{why}"),
            other => panic!("want a 502, got {other:?}"),
        }
        // A node that is down is waited for too, and reached if it comes back before
        // the block time (10 s now) runs out.
        sim.set_timing(SimTiming {
            block_ms: Some(10_000),
            ..timing
        })
        .unwrap();
        sim.kill(1).await.unwrap();
        let c0 = sim.client(0).unwrap();
        let to = sim.key(1);
        let held = tokio::spawn(async move { c0.send(&to, Bytes::from_static(b"late")).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!held.is_finished(), "the send to a down node is held");
        sim.restart(1).await.unwrap();
        held.await.unwrap().unwrap();
        assert_eq!(
            recv_one(&sim.client(1).unwrap()).await.unwrap(),
            Bytes::from_static(b"late")
        );
    }

    #[tokio::test]
    async fn held_sends_end_when_the_sim_stops() {
        let timing = SimTiming {
            block_ms: Some(120_000),
            ..SimTiming::default()
        };
        let sim = MeshSim::start_with(SimOptions::new(2).seed(65).timing(timing))
            .await
            .unwrap();
        let c0 = sim.client(0).unwrap();
        let held = tokio::spawn(async move {
            c0.send(&PeerKey([0x42; 32]), Bytes::from_static(b"x"))
                .await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!held.is_finished());
        sim.shutdown();
        let answer = tokio::time::timeout(Duration::from_secs(20), held)
            .await
            .expect("shutdown ends held sends")
            .unwrap();
        assert!(answer.is_err(), "a held send is never a 200: {answer:?}");
    }

    #[tokio::test]
    async fn a_departed_node_lingers_in_the_tree_with_its_peer_down() {
        let timing = SimTiming {
            linger_ms: Some(1_500),
            ..SimTiming::default()
        };
        let sim = MeshSim::start_with(SimOptions::new(3).seed(66).timing(timing))
            .await
            .unwrap();
        let c0 = sim.client(0).unwrap();
        let gone = sim.key(2).to_hex();
        sim.kill(2).await.unwrap();
        let killed_at = Instant::now();
        let t = c0.topology().await.unwrap();
        assert!(listed(&t).contains(&gone), "lingers in the tree");
        let peer = t.peers.iter().find(|p| p.public_key == gone).unwrap();
        assert!(!peer.up, "its peer entry is down");
        until("the departed node to leave the tree", WAIT, || async {
            !listed(&c0.topology().await.unwrap()).contains(&gone)
        })
        .await;
        assert!(killed_at.elapsed() >= Duration::from_millis(1_500));
        // Back again: listed and up.
        sim.restart(2).await.unwrap();
        let t = c0.topology().await.unwrap();
        assert!(listed(&t).contains(&gone));
        assert!(t.peers.iter().any(|p| p.public_key == gone && p.up));
    }

    #[tokio::test]
    async fn a_killed_node_loses_its_queue_and_the_messages_in_flight() {
        let sim = MeshSim::start_with(SimOptions::new(3).seed(67))
            .await
            .unwrap();
        let c = clients(&sim);
        // Queued, then the receiver dies.
        send(&c[0], &sim.key(1), b"queued").await;
        assert_eq!(sim.stats(1).queued, 1);
        sim.restart(1).await.unwrap();
        assert!(
            recv_one(&c[1]).await.is_none(),
            "the queue died with the node"
        );
        // In flight to a node that dies and comes back before the delivery time.
        sim.set_delay(Duration::from_millis(400)).await.unwrap();
        send(&c[0], &sim.key(1), b"to the dead").await;
        sim.restart(1).await.unwrap();
        // In flight from a node that dies.
        send(&c[0], &sim.key(2), b"from the dead").await;
        sim.restart(0).await.unwrap();
        until("both in-flight messages to be dropped", WAIT, || async {
            sim.stats(1).fault_dropped == 1 && sim.stats(2).fault_dropped == 1
        })
        .await;
        assert_eq!(sim.stats(1).delivered, 1, "only the first, before the kill");
        assert_eq!(sim.stats(2).delivered, 0);
        assert!(recv_one(&c[1]).await.is_none());
        assert!(recv_one(&c[2]).await.is_none());
        // A message sent after the restart is delivered.
        send(&c[0], &sim.key(2), b"alive").await;
        until("the delayed message", WAIT, || async {
            sim.stats(2).queued == 1
        })
        .await;
        assert_eq!(recv_one(&c[2]).await.unwrap(), Bytes::from_static(b"alive"));
    }

    #[tokio::test]
    async fn kill_restart_timing_and_sent_counts_over_http() {
        let sim = MeshSim::start_with(SimOptions::new(3).seed(68))
            .await
            .unwrap();
        let control = |path: String| async move { post(&path, None).await };
        send(&sim.client(0).unwrap(), &sim.key(1), b"q").await;
        let (status, body) = control(format!("{}/sim/kill/1", sim.url(0))).await;
        assert_eq!(status, 200, "{body}");
        assert!(std::net::TcpStream::connect(("127.0.0.1", sim.port(1))).is_err());
        assert_eq!(sim.faults().down, vec![1]);
        let (status, _) = control(format!("{}/sim/kill/9", sim.url(0))).await;
        assert_eq!(status, 400);
        let (status, body) = control(format!("{}/sim/restart/1", sim.url(2))).await;
        assert_eq!(status, 200, "{body}");
        assert!(sim.faults().down.is_empty());
        assert!(
            recv_one(&sim.client(1).unwrap()).await.is_none(),
            "queue lost"
        );
        // Restart of a running node kills it first.
        send(&sim.client(0).unwrap(), &sim.key(1), b"q2").await;
        let (status, _) = control(format!("{}/sim/restart/1", sim.url(0))).await;
        assert_eq!(status, 200);
        assert!(recv_one(&sim.client(1).unwrap()).await.is_none());

        // Timing, read and set over HTTP.
        let url = format!("{}/sim/timing", sim.url(0));
        let got: SimTiming = get_json(&url).await;
        assert_eq!(got, SimTiming::default());
        let real = SimTiming::real().scaled(0.5);
        let (status, body) = post(&url, Some(&serde_json::to_value(real).unwrap())).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(sim.timing(), real);
        let (status, _) = post(&url, Some(&serde_json::json!({"syn_backoff_ms": 0}))).await;
        assert_eq!(status, 400);
        assert_eq!(sim.timing(), real, "a bad timing changes nothing");

        // Messages sent per node.
        let stats: Vec<edgent::harness::mesh_sim::SimNodeStats> =
            get_json(&format!("{}/sim/stats", sim.url(2))).await;
        assert_eq!(stats.iter().map(|s| s.sent).collect::<Vec<_>>(), [2, 0, 0]);
    }
}
