//! The AXL HTTP client against real HTTP: the mesh sim (AXL's local API contract) and,
//! for answers the sim never gives, a labelled misbehaving stub.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use edgent::axl::client::MAX_MESSAGE_BYTES;
use edgent::axl::{AxlClient, AxlError, PeerKey, Transport};
use edgent::harness::mesh_sim::MeshSim;

use crate::support;

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn topology_describes_the_node_and_its_peers() {
    let sim = MeshSim::start(3, 0, 11).await.unwrap();
    let topo = sim.client(0).unwrap().topology().await.unwrap();
    assert_eq!(topo.our_public_key, sim.key(0).to_hex());
    assert_eq!(topo.our_ipv6, sim.key(0).ipv6().to_string());
    assert_eq!(topo.peers.len(), 2);
    assert!(topo.peers.iter().all(|p| p.up));
    let mut seen = topo.reachable_nodes();
    seen.sort();
    let mut want = vec![sim.key(1), sim.key(2)];
    want.sort();
    assert_eq!(seen, want);
}

#[tokio::test]
async fn topology_of_a_lone_node_has_null_peers() {
    let sim = MeshSim::start(1, 0, 12).await.unwrap();
    // What AXL sends: Go encodes an empty peer list as null.
    let raw: serde_json::Value = support::sim::get_json(&format!("{}/topology", sim.url(0))).await;
    assert!(raw["peers"].is_null(), "{raw}");
    let topo = sim.client(0).unwrap().topology().await.unwrap();
    assert!(topo.peers.is_empty());
    assert!(topo.reachable_nodes().is_empty());
}

#[tokio::test]
async fn send_then_recv_carries_body_and_partial_sender() {
    let sim = MeshSim::start(2, 0, 13).await.unwrap();
    let (a, b) = (sim.client(0).unwrap(), sim.client(1).unwrap());
    assert!(
        b.recv().await.unwrap().is_none(),
        "empty queue is 204 -> None"
    );
    a.send(&sim.key(1), Bytes::from_static(b"{\"v\":1}"))
        .await
        .unwrap();
    let got = b.recv().await.unwrap().expect("a message");
    assert_eq!(&got.body[..], b"{\"v\":1}");
    assert_ne!(
        got.from,
        sim.key(0),
        "AXL reports a partial key, not the full one"
    );
    assert!(got.from.same_node(&sim.key(0)));
    assert!(b.recv().await.unwrap().is_none());
}

#[tokio::test]
async fn unreachable_peer_is_502() {
    let sim = MeshSim::start(2, 0, 14).await.unwrap();
    let a = sim.client(0).unwrap();
    let stranger = PeerKey([0x42; 32]);
    let err = a
        .send(&stranger, Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, AxlError::Unreachable(_)), "{err:?}");
    sim.set_down(1, true).await.unwrap();
    let err = a
        .send(&sim.key(1), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, AxlError::Unreachable(_)), "{err:?}");
}

#[tokio::test]
async fn a_node_that_does_not_answer_is_down() {
    let c = AxlClient::new(&format!("http://127.0.0.1:{}", closed_port())).unwrap();
    assert!(matches!(c.topology().await, Err(AxlError::Down(_))));
    assert!(matches!(c.recv().await, Err(AxlError::Down(_))));
    assert!(matches!(
        c.send(&PeerKey([1; 32]), Bytes::from_static(b"x")).await,
        Err(AxlError::Down(_))
    ));

    let sim = MeshSim::start(2, 0, 15).await.unwrap();
    let b = sim.client(1).unwrap();
    b.topology().await.unwrap();
    sim.set_down(1, true).await.unwrap();
    assert!(matches!(b.topology().await, Err(AxlError::Down(_))));
    sim.set_down(1, false).await.unwrap();
    b.topology().await.unwrap();
}

#[tokio::test]
async fn oversize_body_is_refused_before_sending() {
    // Nothing listens here: TooLarge proves no request was attempted.
    let c = AxlClient::new(&format!("http://127.0.0.1:{}", closed_port())).unwrap();
    let big = Bytes::from(vec![0u8; MAX_MESSAGE_BYTES + 1]);
    match c.send(&PeerKey([1; 32]), big).await {
        Err(AxlError::TooLarge { size, max }) => {
            assert_eq!(size, MAX_MESSAGE_BYTES + 1);
            assert_eq!(max, MAX_MESSAGE_BYTES);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[tokio::test]
async fn exactly_the_limit_is_sent() {
    let sim = MeshSim::start(2, 0, 16).await.unwrap();
    let body = Bytes::from(vec![7u8; MAX_MESSAGE_BYTES]);
    sim.client(0)
        .unwrap()
        .send(&sim.key(1), body)
        .await
        .unwrap();
    let got = sim.client(1).unwrap().recv().await.unwrap().unwrap();
    assert_eq!(got.body.len(), MAX_MESSAGE_BYTES);
}

#[test]
fn bad_urls_are_refused() {
    assert!(matches!(
        AxlClient::new("not a url"),
        Err(AxlError::InvalidUrl(_))
    ));
    assert!(matches!(
        AxlClient::new("https://127.0.0.1:9002"),
        Err(AxlError::InvalidUrl(_))
    ));
    let c = AxlClient::new("http://127.0.0.1:9002/").unwrap();
    assert_eq!(c.base_url(), "http://127.0.0.1:9002");
}

/// MisbehavingAxlStub: answers AXL's routes with what a broken or foreign server might
/// send (real AXL and the sim never do), to check the client reports errors instead of
/// panicking. Each `/recv` pops the next canned answer.
async fn misbehaving_axl_stub() -> String {
    let answers = std::sync::Arc::new(std::sync::Mutex::new(vec![
        // Popped from the end: 200 without X-From-Peer-Id, then a garbled one.
        (StatusCode::OK, Some("zz-not-hex"), "garbled"),
        (StatusCode::OK, None, "headless"),
    ]));
    let recv = move || {
        let answers = answers.clone();
        async move {
            let next = answers.lock().unwrap().pop();
            let mut h = HeaderMap::new();
            match next {
                Some((status, from, body)) => {
                    if let Some(f) = from {
                        h.insert("x-from-peer-id", f.parse().unwrap());
                    }
                    (status, h, body)
                }
                None => (StatusCode::INTERNAL_SERVER_ERROR, h, "queue exploded"),
            }
        }
    };
    let app = Router::new()
        .route("/topology", get(|| async { "{\"our_ipv6\": 5}" }))
        .route(
            "/send",
            post(|| async { (StatusCode::BAD_REQUEST, "Invalid destination peer ID\n") }),
        )
        .route("/recv", get(recv));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn malformed_answers_are_errors_not_panics() {
    let c = AxlClient::new(&misbehaving_axl_stub().await).unwrap();
    assert!(matches!(c.topology().await, Err(AxlError::BadResponse(_))));
    assert!(matches!(
        c.send(&PeerKey([3; 32]), Bytes::from_static(b"x")).await,
        Err(AxlError::BadPeerId(_))
    ));
    assert!(matches!(c.recv().await, Err(AxlError::BadResponse(_))));
    assert!(matches!(c.recv().await, Err(AxlError::BadResponse(_))));
    match c.recv().await {
        Err(AxlError::Http { status, body }) => {
            assert_eq!(status, 500);
            assert_eq!(body, "queue exploded");
        }
        other => panic!("expected Http 500, got {other:?}"),
    }
}

#[tokio::test]
async fn client_is_usable_across_node_restart() {
    let sim = MeshSim::start(2, 0, 17).await.unwrap();
    let (a, b) = (sim.client(0).unwrap(), sim.client(1).unwrap());
    a.send(&sim.key(1), Bytes::from_static(b"one"))
        .await
        .unwrap();
    sim.set_down(1, true).await.unwrap();
    sim.set_down(1, false).await.unwrap();
    // The restarted node lost its queue, as a restarted AXL process would.
    assert!(b.recv().await.unwrap().is_none());
    a.send(&sim.key(1), Bytes::from_static(b"two"))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), b.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&got.body[..], b"two");
}
