//! Benchmark (not a test): what money adds to a delegation whose inference takes a block.
//!
//! `cargo bench --bench paid_wait` (needs `npm ci` for anvil). Runs `edgent demo`'s network
//! (in-process mesh, provider and requester daemons) with the provider's model an Ollama
//! stub that answers after one block (2,000 ms), first unpaid, then paid on anvil mining a
//! block every 2 s (`ANVIL_BLOCK_TIME=2`, `STAKE_MODE=authorization`), and prints the
//! agent's wait for one delegation (`wait: verified`), unpaid and paid, medians, and the
//! difference: what money adds when the provider starts the inference as soon as the
//! authorization checks out and lands the stake meanwhile (issue 23, item 5; goal <= 50 ms).
//! Measured back to back and arriving at a random moment of a block.

use std::time::Duration;

use edgent::harness::ollama_stub::{OllamaStub, StubBehaviour};

#[path = "common/block_waits.rs"]
mod block_waits;
use block_waits::{net, waits};

const BLOCK_SECS: u64 = 2;
/// How long the stub model takes to answer: one block.
const INFERENCE: Duration = Duration::from_millis(BLOCK_SECS * 1000);
const SEQUENTIAL: usize = 5;
const RANDOM_ARRIVALS: usize = 11;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let stub = OllamaStub::start(StubBehaviour {
        delay: INFERENCE,
        ..StubBehaviour::default()
    })
    .await
    .expect("ollama stub");
    std::env::set_var("OLLAMA_URL", stub.url());
    std::env::set_var("EDGENT_ENV_FILE", "/nonexistent/.env");
    std::env::set_var("ANVIL_BLOCK_TIME", BLOCK_SECS.to_string());
    let http = reqwest::Client::new();

    let unpaid = net(true, Some("tinyllama")).await;
    let (unpaid_ms, unpaid_rand_ms) =
        waits(&http, &unpaid, SEQUENTIAL, RANDOM_ARRIVALS, BLOCK_SECS).await;
    unpaid.shutdown().await;

    let paid = net(false, Some("tinyllama")).await;
    assert!(paid.paid(), "anvil is needed: run `npm ci` first");
    let (paid_ms, paid_rand_ms) =
        waits(&http, &paid, SEQUENTIAL, RANDOM_ARRIVALS, BLOCK_SECS).await;
    paid.shutdown().await;

    println!(
        "paid delegation on anvil with {BLOCK_SECS} s blocks, inference {} ms (a stub model), wait: verified:",
        INFERENCE.as_millis()
    );
    println!("  back to back, median of {SEQUENTIAL}: unpaid {unpaid_ms:.0} ms, paid {paid_ms:.0} ms, added {:.0} ms (goal <= 50 ms)", paid_ms - unpaid_ms);
    println!("  random arrival in the block, median of {RANDOM_ARRIVALS}: unpaid {unpaid_rand_ms:.0} ms, paid {paid_rand_ms:.0} ms, added {:.0} ms (goal <= 50 ms)", paid_rand_ms - unpaid_rand_ms);
    // The row of the side-by-side table (`scripts/bench-gemma.sh`).
    println!(
        "| paid delegation's added wait over unpaid, {BLOCK_SECS} s blocks, inference {} ms: back to back / random arrival | +{:.0} ms / +{:.0} ms (medians of {SEQUENTIAL} and {RANDOM_ARRIVALS}) | ≤ 50 ms |",
        INFERENCE.as_millis(),
        paid_ms - unpaid_ms,
        paid_rand_ms - unpaid_rand_ms
    );
}
