//! Benchmark (not a test): paid delegation on a chain with 2-second blocks, like Base.
//!
//! `cargo bench --bench paid_blocks` (needs `npm ci` for anvil). Runs `edgent demo`'s
//! network (in-process mesh, provider and requester daemons, zero-time demo backend), first
//! unpaid, then paid on anvil mining a block every 2 s (`ANVIL_BLOCK_TIME=2`), and prints:
//!
//! - the agent's wait for one delegation (`wait: verified`), unpaid and paid, medians over
//!   a few runs, and the difference: what money adds (the provider's
//!   `stakeWithAuthorization`, mined in the next block, before it runs the job). Measured
//!   two ways: back to back (each delegation starts just after the block that carried the
//!   previous stake, so its stake waits a whole block: the worst phase), and arriving at a
//!   random moment of a block, as an agent's calls do;
//! - twenty concurrent paid delegations from one wallet: wall time, in blocks, and the
//!   rate per minute that implies;
//! - the same with `wait: settled` (the release mined too).

use std::time::Instant;

use edgent::demo::LocalNet;

#[path = "common/block_waits.rs"]
mod block_waits;
use block_waits::{delegate, net, waits};

const BLOCK_SECS: u64 = 2;
const SEQUENTIAL: usize = 5;
/// Delegations that start at a random moment of a block.
const RANDOM_ARRIVALS: usize = 15;
const CONCURRENT: usize = 20;

/// Wall time of `CONCURRENT` delegations started together, s.
async fn concurrent(http: &reqwest::Client, net: &LocalNet, wait: &str, base: usize) -> f64 {
    let t = Instant::now();
    let calls = (0..CONCURRENT).map(|i| delegate(http, &net.url, &net.model, wait, base + i));
    futures_util::future::join_all(calls).await;
    t.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    std::env::set_var("OLLAMA_URL", "http://127.0.0.1:9");
    std::env::set_var("EDGENT_ENV_FILE", "/nonexistent/.env");
    std::env::set_var("ANVIL_BLOCK_TIME", BLOCK_SECS.to_string());
    // Enough job slots that the provider never answers busy (queueing is another figure).
    std::env::set_var("PROVIDER_MAX_JOBS", "64");
    let http = reqwest::Client::new();

    let unpaid = net(true, None).await;
    let (unpaid_ms, unpaid_rand_ms) =
        waits(&http, &unpaid, SEQUENTIAL, RANDOM_ARRIVALS, BLOCK_SECS).await;
    unpaid.shutdown().await;

    let paid = net(false, None).await;
    assert!(paid.paid(), "anvil is needed: run `npm ci` first");
    let (paid_ms, paid_rand_ms) =
        waits(&http, &paid, SEQUENTIAL, RANDOM_ARRIVALS, BLOCK_SECS).await;
    let verified_s = concurrent(&http, &paid, "verified", 1000).await;
    let settled_s = concurrent(&http, &paid, "settled", 2000).await;
    paid.shutdown().await;

    let block = BLOCK_SECS as f64;
    println!("paid delegation on anvil with {BLOCK_SECS} s blocks, zero-time backend, one requester wallet:");
    println!("  one delegation (wait: verified), median of {SEQUENTIAL}: unpaid {unpaid_ms:.0} ms, paid {paid_ms:.0} ms");
    println!(
        "  added wait for the agent, back to back (the worst phase): {:.0} ms = {:.2} blocks",
        paid_ms - unpaid_ms,
        (paid_ms - unpaid_ms) / 1000.0 / block
    );
    println!("  one delegation arriving at a random moment of a block, median of {RANDOM_ARRIVALS}: unpaid {unpaid_rand_ms:.0} ms, paid {paid_rand_ms:.0} ms");
    println!(
        "  added wait for the agent, random arrival: {:.0} ms = {:.2} blocks (goal <= 1 block)",
        paid_rand_ms - unpaid_rand_ms,
        (paid_rand_ms - unpaid_rand_ms) / 1000.0 / block
    );
    println!(
        "  {CONCURRENT} concurrent paid delegations (wait: verified): {verified_s:.1} s = {:.1} blocks (goal <= 3 blocks), {:.0} per minute",
        verified_s / block,
        CONCURRENT as f64 / verified_s * 60.0
    );
    println!(
        "  {CONCURRENT} concurrent paid delegations (wait: settled, release mined): {settled_s:.1} s = {:.1} blocks, {:.0} per minute",
        settled_s / block,
        CONCURRENT as f64 / settled_s * 60.0
    );
}
