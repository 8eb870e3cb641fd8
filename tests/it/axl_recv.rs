//! The receive loop against the mesh sim over real HTTP.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgent::axl::recv::{spawn_recv_loop, RecvStats, RECV_CHANNEL_CAPACITY};
use edgent::axl::{Inbound, Transport};
use edgent::harness::mesh_sim::MeshSim;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A burst of 500 messages from one sender into one node while the loop drains it.
///
/// What this can honestly assert. AXL gives a sender no backpressure (`/send` is 200
/// once the bytes are handed over) and its queue keeps the newest 100, so no receiver
/// can promise "nothing lost" against an unbounded sender: against the sim on loopback
/// a sender does ~16 000 sends/s, which fills 100 slots in 6 ms. What the loop does
/// promise: it sleeps at most its cap at rest (80 ms; nothing touches its stats here) and,
/// once a message shows up, reads until the queue is empty, so AXL overflows only if more
/// than 100 messages arrive within one sleep (over 1 250/s into a node at rest). A mesh peer's sends are far
/// slower (each `/send` dials the peer through Yggdrasil before it answers).
///
/// So the sender here sends 500 messages at 1 000/s (one per millisecond, a fast LAN
/// peer), starting while the loop idles at its cap, and the test asserts that AXL's
/// queue never overflowed and every one of the 500 distinct bodies reached the channel.
/// A receive loop on `sim`'s node 1 into a channel of `capacity`.
struct Looped {
    rx: mpsc::Receiver<Inbound>,
    stats: Arc<RecvStats>,
    cancel: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

fn looped(sim: &MeshSim, capacity: usize) -> Looped {
    let (tx, rx) = mpsc::channel::<Inbound>(capacity);
    let stats = Arc::new(RecvStats::default());
    let cancel = CancellationToken::new();
    let handle = spawn_recv_loop(
        Arc::new(sim.client(1).unwrap()),
        tx,
        cancel.clone(),
        stats.clone(),
    );
    Looped {
        rx,
        stats,
        cancel,
        handle,
    }
}

/// A loop on a fixed 100 ms+ tick, one reading a single message per wake-up, or one
/// waiting on the router, loses messages here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_500_arrives_complete() {
    let sim = MeshSim::start(2, 0, 41).await.unwrap();
    let Looped {
        mut rx,
        stats,
        cancel,
        handle,
    } = looped(&sim, RECV_CHANNEL_CAPACITY);
    // Let the loop go idle (its sleeps grow 1, 2, 4, 8, 16 ms to the cap), then start
    // the burst just after one of its polls, so it begins with the loop's longest sleep.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let polls = sim.stats(1).recv_polls;
    wait_until("an idle poll", Duration::from_secs(5), || {
        sim.stats(1).recv_polls > polls
    })
    .await;

    let a = sim.client(0).unwrap();
    let to = sim.key(1);
    let sender = tokio::spawn(async move {
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        // A stalled sender must not catch up in a burst: keep the pace, not the count.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for i in 0..500u32 {
            tick.tick().await;
            a.send(&to, Bytes::from(format!("msg-{i}"))).await.unwrap();
        }
        started.elapsed()
    });
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < 500 {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of 500 arrived; sim overflow drops: {}",
                    seen.len(),
                    sim.stats(1).overflow_dropped
                )
            })
            .expect("loop alive");
        assert!(msg.from.same_node(&sim.key(0)));
        assert!(seen.insert(msg.body.clone()), "duplicate {:?}", msg.body);
    }
    let send_time = sender.await.unwrap();
    for i in 0..500u32 {
        assert!(
            seen.contains(format!("msg-{i}").as_bytes()),
            "msg-{i} missing"
        );
    }
    let sim_stats = sim.stats(1);
    assert_eq!(sim_stats.overflow_dropped, 0);
    assert_eq!(sim_stats.delivered, 500);
    let counts = stats.snapshot();
    assert_eq!(counts.received, 500);
    assert_eq!(counts.dropped_full, 0);
    println!(
        "500 sends took {send_time:?} ({:.0} msg/s)",
        500.0 / send_time.as_secs_f64()
    );
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("loop stops on cancel")
        .unwrap();
}

#[tokio::test]
async fn a_full_channel_drops_and_counts_without_stalling() {
    let sim = MeshSim::start(2, 0, 42).await.unwrap();
    let Looped {
        mut rx,
        stats,
        cancel,
        handle: _loop,
    } = looped(&sim, 10);
    let a = sim.client(0).unwrap();
    for i in 0..30u32 {
        a.send(&sim.key(1), Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    // The loop keeps draining AXL even though nobody reads the channel.
    wait_until("30 received", Duration::from_secs(10), || {
        stats.snapshot().received == 30
    })
    .await;
    assert_eq!(sim.stats(1).queued, 0);
    assert_eq!(stats.snapshot().dropped_full, 20);
    let mut first = Vec::new();
    while let Ok(m) = rx.try_recv() {
        first.push(String::from_utf8(m.body.to_vec()).unwrap());
    }
    assert_eq!(
        first,
        (0..10).map(|i: u32| i.to_string()).collect::<Vec<_>>()
    );
    cancel.cancel();
}

/// While AXL is down the loop backs off (and counts one outage); when it is back the
/// loop picks up again by itself.
#[tokio::test]
async fn survives_an_outage_with_backoff() {
    let sim = MeshSim::start(2, 0, 43).await.unwrap();
    let Looped {
        mut rx,
        stats,
        cancel,
        handle: _loop,
    } = looped(&sim, 64);
    sim.set_down(1, true).await.unwrap();
    let down_at = Instant::now();
    wait_until("3 failed polls", Duration::from_secs(10), || {
        stats.snapshot().recv_errors >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let errors = stats.snapshot().recv_errors;
    let outage = down_at.elapsed();
    // Sleeps of 50, 100, 200, 400, 800, 1000… ms: n failed tries need at least the sum
    // of n-1 sleeps. A loop without back-off would fail hundreds of times here.
    let mut allowed = 1u64;
    let mut slept = Duration::ZERO;
    let mut step = Duration::from_millis(50);
    while slept + step <= outage {
        slept += step;
        allowed += 1;
        step = (step * 2).min(Duration::from_secs(1));
    }
    assert!(
        errors <= allowed + 1,
        "{errors} tries in {outage:?} (at most {allowed} expected)"
    );
    assert_eq!(stats.snapshot().outages, 1);

    sim.set_down(1, false).await.unwrap();
    sim.client(0)
        .unwrap()
        .send(&sim.key(1), Bytes::from_static(b"after"))
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("message after the outage")
        .unwrap();
    assert_eq!(&m.body[..], b"after");
    assert_eq!(stats.snapshot().outages, 1);
    cancel.cancel();
}

#[tokio::test]
async fn stops_when_the_router_goes_away() {
    let sim = MeshSim::start(2, 0, 44).await.unwrap();
    let (tx, rx) = mpsc::channel::<Inbound>(4);
    let handle = spawn_recv_loop(
        Arc::new(sim.client(1).unwrap()),
        tx,
        CancellationToken::new(),
        Arc::new(RecvStats::default()),
    );
    drop(rx);
    sim.client(0)
        .unwrap()
        .send(&sim.key(1), Bytes::from_static(b"x"))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("loop ends once its channel is closed")
        .unwrap();
    // The transport is untouched by the loop ending.
    assert!(sim.client(1).unwrap().recv().await.unwrap().is_none());
}
