//! Latency of one mesh hop over the sim: from `send` on node A to the message arriving
//! in node B's receive-loop channel (HTTP /send, the sim's queue, HTTP /recv, the loop).
//!
//! Patterns, because the loop's idle back-off dominates sporadic traffic:
//! - back-to-back: the next message is sent as soon as the previous one arrived;
//! - in conversation: 50 ms between messages, within the loop's hot window;
//! - cold: the first message to a node at rest, which finds the loop asleep at its longest
//!   back-off (the worst case; only the first hop of a delegation can be cold).
//!
//! Run: `cargo bench --bench mesh_latency` (prints figures; no assertions).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgent::axl::recv::{
    recv_loop, spawn_recv_loop, RecvLoopConfig, RecvStats, RECV_CHANNEL_CAPACITY,
};
use edgent::axl::{Inbound, Transport};
use edgent::harness::mesh_sim::MeshSim;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// User + system CPU seconds of this process (Linux `/proc/self/stat`, 100 Hz ticks).
fn cpu_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(") ")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let n = samples.len();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = samples.iter().map(|d| us(*d)).sum::<f64>() / n as f64;
    let pct = |p: f64| us(samples[((n as f64 * p).ceil() as usize).clamp(1, n) - 1]);
    println!(
        "{name:<28} n={n:<5} mean={:>8.1} µs  p50={:>8.1} µs  p99={:>8.1} µs  max={:>8.1} µs",
        mean,
        pct(0.50),
        pct(0.99),
        us(samples[n - 1])
    );
}

async fn one_hop(
    a: &edgent::axl::AxlClient,
    to: &edgent::axl::PeerKey,
    rx: &mut mpsc::Receiver<Inbound>,
    i: usize,
) -> (Duration, Duration) {
    let body = Bytes::from(format!("{{\"v\":1,\"type\":\"bench\",\"i\":{i}}}"));
    let t0 = Instant::now();
    a.send(to, body).await.expect("send");
    let sent = t0.elapsed();
    let m = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("message arrives")
        .expect("loop alive");
    let total = t0.elapsed();
    assert!(
        m.body.ends_with(format!(":{i}}}").as_bytes()),
        "out of order"
    );
    (sent, total)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let sim = MeshSim::start(2, 0, 99).await.expect("sim");
        let a = sim.client(0).expect("client");
        let to = sim.key(1);
        let (tx, mut rx) = mpsc::channel::<Inbound>(RECV_CHANNEL_CAPACITY);
        let cancel = CancellationToken::new();
        let first_loop = spawn_recv_loop(
            Arc::new(sim.client(1).expect("client")),
            tx,
            cancel.clone(),
            Arc::new(RecvStats::default()),
        );
        for i in 0..50 {
            one_hop(&a, &to, &mut rx, i).await;
        }

        let (mut sends, mut hops) = (Vec::new(), Vec::new());
        for i in 0..2000 {
            let (s, t) = one_hop(&a, &to, &mut rx, i).await;
            sends.push(s);
            hops.push(t);
        }
        println!("mesh_latency: sim, 2 nodes, release build, 2 tokio workers");
        report("send (HTTP /send only)", sends);
        report("hop, back-to-back", hops);

        cancel.cancel();
        first_loop.await.expect("loop ends");

        // Sporadic traffic. In a conversation (a reply is expected: ad after request,
        // result after task) the loop is hot and polls within 2 ms; a node at rest polls
        // every 80 ms. Each arrival is noted as the router notes a conversation's message.
        // The cold case uses 50 ms hot, brisk and warm windows so it can be sampled often.
        let short = Duration::from_millis(50);
        let cases = [
            ("hop, in conversation (50 ms apart)", RecvLoopConfig::default(), short, 400),
            (
                "hop, cold (node at rest)",
                RecvLoopConfig { hot_window: short, brisk_window: short, warm_window: short, ..RecvLoopConfig::default() },
                Duration::from_millis(150),
                100,
            ),
        ];
        for (name, config, pause, n) in cases {
            let (tx, mut rx) = mpsc::channel::<Inbound>(RECV_CHANNEL_CAPACITY);
            let cancel = CancellationToken::new();
            let stats = Arc::new(RecvStats::default());
            let _loop = tokio::spawn(recv_loop(
                Arc::new(sim.client(1).expect("client")),
                tx,
                cancel.clone(),
                stats.clone(),
                config,
            ));
            let mut sporadic = Vec::new();
            for i in 0..n {
                tokio::time::sleep(pause).await;
                sporadic.push(one_hop(&a, &to, &mut rx, 10_000 + i).await.1);
                stats.touch();
            }
            report(name, sporadic);
            cancel.cancel();
        }

        // The price of idling with the default settings, once the hot window has passed.
        let (tx, _rx) = mpsc::channel::<Inbound>(RECV_CHANNEL_CAPACITY);
        let cancel = CancellationToken::new();
        let _loop = spawn_recv_loop(
            Arc::new(sim.client(1).expect("client")),
            tx,
            cancel.clone(),
            Arc::new(RecvStats::default()),
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (polls0, cpu0, t0) = (sim.stats(1).recv_polls, cpu_time(), Instant::now());
        tokio::time::sleep(Duration::from_secs(5)).await;
        let secs = t0.elapsed().as_secs_f64();
        let polls = (sim.stats(1).recv_polls - polls0) as f64 / secs;
        let cpu = cpu_time().map(|c| (c - cpu0.unwrap_or(c)) / secs * 100.0);
        println!(
            "idle (quiet node):            {polls:.0} polls/s, process CPU {} (loop + sim together)",
            cpu.map(|c| format!("{c:.2}% of one core")).unwrap_or_else(|| "n/a".into())
        );
        cancel.cancel();
    });
}
