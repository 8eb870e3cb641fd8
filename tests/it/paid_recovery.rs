//! Every stake ends, even when a side vanishes or is SIGKILLed mid-job: the daemons drive
//! refund, reject, submit and claim from their persisted job tables, with anvil's clock
//! moved forward where the escrow's timers need it. Money is conserved in every scenario.

use std::time::Duration;

use edgent::chain::FairStatus;
use serde_json::{json, Value};

use crate::support;
use crate::support::paid::{payment_becomes, PaidWorld, FUND, PRICE};
use crate::support::{eventually, DaemonProc};

const WITHIN: Duration = Duration::from_secs(30);

/// Wait until `d`'s newest job is in `state`; returns its id.
async fn newest_in_state(d: &DaemonProc, state: &str) -> String {
    eventually(&format!("a job {state}"), WITHIN, || async {
        let j = d.newest_job().await?;
        (j["state"] == json!(state)).then(|| j["job_id"].as_str().unwrap().to_string())
    })
    .await
}

/// Start a delegation in the background (the daemon may be killed under it).
fn delegate_in_background(
    requester: &DaemonProc,
    body: Value,
) -> tokio::task::JoinHandle<(u16, Value)> {
    let url = format!("{}/delegate", requester.url);
    tokio::spawn(async move {
        match reqwest::Client::new().post(url).json(&body).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_vanishes_after_the_stake_and_the_requester_is_refunded() {
    let w = PaidWorld::new().await;
    w.ollama.set(|b| b.delay = Duration::from_secs(60));
    let (requester, mut provider) = w.start(&[]).await;
    let call = delegate_in_background(
        &requester,
        json!({"model": "tinyllama", "prompt": "slow", "timeout_ms": 2000}),
    );
    let id = newest_in_state(&provider, "running").await;
    provider.kill();
    let (status, body) = call.await.unwrap();
    assert_eq!(status, 504, "{body}");
    w.assert_conserved(PRICE).await;
    assert_eq!(w.stake_status(&id).await, FairStatus::Staked);

    // Nothing happens before the stake's deadline; after it, the requester refunds.
    w.advance(2 + 30 + 5).await;
    let rec = payment_becomes(&requester, &id, "refunded", WITHIN).await;
    assert!(rec["payment"]["tx_hash"].as_str().is_some());
    assert_eq!(w.stake_status(&id).await, FairStatus::Refunded);
    assert_eq!(w.balances().await, (FUND, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requester_vanishes_after_the_result_and_the_provider_finalizes_after_the_window_even_across_its_restart(
) {
    // A requester with no ETH cannot send its own release, so it never pays before it
    // vanishes.
    let w = PaidWorld::with_gasless_requester().await;
    let (mut requester, mut provider) = w.start(&[]).await;
    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "pay me"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["job_id"].as_str().unwrap().to_string();
    requester.kill();

    // After the grace period the provider submits its output hash, which locks the stake.
    let rec = payment_becomes(&provider, &id, "submitted", WITHIN).await;
    assert!(rec["payment"]["submit_tx"].as_str().is_some());
    assert_eq!(w.stake_status(&id).await, FairStatus::Submitted);
    w.assert_conserved(PRICE).await;

    // The provider is SIGKILLed while it waits, and restarted: the wait resumes.
    provider.kill();
    provider.start_again().await;

    // At the end of the dispute window (chain time) it finalizes.
    w.advance(edgent::harness::anvil::LOCAL_DISPUTE_WINDOW_SECS + 1)
        .await;
    let rec = payment_becomes(&provider, &id, "claimed", WITHIN).await;
    assert!(rec["payment"]["tx_hash"].as_str().is_some());
    assert_eq!(w.stake_status(&id).await, FairStatus::Finalized);
    assert_eq!(w.balances().await, (FUND - PRICE, PRICE, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requester_killed_while_tasked_completes_and_pays_after_restart() {
    let w = PaidWorld::new().await;
    w.ollama.set(|b| b.delay = Duration::from_secs(2));
    let (mut requester, provider) = w.start(&[]).await;
    let call = delegate_in_background(
        &requester,
        json!({"model": "tinyllama", "prompt": "survive me", "timeout_ms": 20000}),
    );
    let id = newest_in_state(&requester, "tasked").await;
    requester.kill();
    let _ = call.await;
    requester.start_again().await;

    // The result and the proof arrive at the restarted daemon: it verifies and pays.
    let rec = payment_becomes(&requester, &id, "released", WITHIN).await;
    assert_eq!(rec["state"], json!("completed"));
    assert_eq!(rec["payment"]["proof_verified"], json!(true));
    payment_becomes(&provider, &id, "released", WITHIN).await;
    assert_eq!(w.balances().await, (FUND - PRICE, PRICE, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_killed_while_running_unwinds_to_a_refund() {
    let w = PaidWorld::new().await;
    w.ollama.set(|b| b.delay = Duration::from_secs(60));
    let (requester, mut provider) = w.start(&[]).await;
    let call = delegate_in_background(
        &requester,
        json!({"model": "tinyllama", "prompt": "die mid-run", "timeout_ms": 3000}),
    );
    let id = newest_in_state(&provider, "running").await;
    provider.kill();
    provider.start_again().await;
    let prec = payment_becomes(&provider, &id, "abandoned", WITHIN).await;
    assert_eq!(prec["state"], json!("failed"));
    let (status, _) = call.await.unwrap();
    assert_eq!(status, 504);
    w.advance(3 + 30 + 5).await;
    payment_becomes(&requester, &id, "refunded", WITHIN).await;
    assert_eq!(w.balances().await, (FUND, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_killed_after_delivery_is_paid_after_restart() {
    // No ETH for its own release yet: the requester cannot pay at once.
    let w = PaidWorld::with_gasless_requester().await;
    let (requester, mut provider) = w.start(&[]).await;
    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "delivered"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["job_id"].as_str().unwrap().to_string();
    provider.kill();
    w.assert_conserved(PRICE).await;

    // The requester gets ETH; its watcher retries the release.
    w.fund_requester_eth().await;
    payment_becomes(&requester, &id, "released", WITHIN).await;
    provider.start_again().await;
    let prec = payment_becomes(&provider, &id, "released", WITHIN).await;
    assert!(prec["payment"]["tx_hash"].as_str().is_some());
    assert_eq!(w.balances().await, (FUND - PRICE, PRICE, 0));
    assert_eq!(w.requester_txs().await, 1, "exactly one release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requester_killed_after_verifying_releases_exactly_once_after_restart() {
    // No ETH for its own release yet: the requester stays `verified`.
    let w = PaidWorld::with_gasless_requester().await;
    let (mut requester, provider) = w.start(&[]).await;
    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "verified then killed"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["job_id"].as_str().unwrap().to_string();
    assert_eq!(
        requester.job(&id).await.unwrap()["payment"]["status"],
        json!("verified")
    );
    requester.kill();
    // Meanwhile the provider, unpaid after its grace period, submits on chain.
    payment_becomes(&provider, &id, "submitted", WITHIN).await;

    w.fund_requester_eth().await;
    requester.start_again().await;
    payment_becomes(&requester, &id, "released", WITHIN).await;
    payment_becomes(&provider, &id, "released", WITHIN).await;
    assert_eq!(w.stake_status(&id).await, FairStatus::Released);
    assert_eq!(w.balances().await, (FUND - PRICE, PRICE, 0));
    assert_eq!(w.requester_txs().await, 1, "exactly one release");
}

/// A stand-in AXL binary: execs `edgent mesh-sim` (2 nodes from `base`, fixed seed, so a
/// restart brings back the same keys), so killing the child kills the mesh as if AXL crashed.
fn fake_axl(dir: &std::path::Path, base: u16) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let wrapper = dir.join("fake-axl-node");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} mesh-sim --nodes 2 --base-port {base} --seed 7\n",
            support::edgent_bin().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_axl_child_killed_mid_job_is_restarted_and_the_job_completes() {
    let w = PaidWorld::new().await;
    w.ollama.set(|b| b.delay = Duration::from_secs(3));
    let base = support::free_port_block(2);
    let wrapper = fake_axl(w.dir.path(), base);
    let axl0 = format!("http://127.0.0.1:{base}");
    let axl1 = format!("http://127.0.0.1:{}", base + 1);
    let (requester, provider) = w
        .start_with(
            &[
                ("AXL_SPAWN", "true"),
                ("AXL_BIN", wrapper.to_str().unwrap()),
                ("AXL_API_URL", &axl0),
            ],
            &[("AXL_API_URL", &axl1)],
        )
        .await;
    let call = delegate_in_background(
        &requester,
        json!({"model": "tinyllama", "prompt": "through a crash", "timeout_ms": 30000, "wait": "settled"}),
    );
    newest_in_state(&provider, "running").await;
    let st = requester.get("/status").await;
    let pid = st["axl"]["pid"].as_u64().expect("AXL child pid") as i32;
    assert!(std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    eventually("AXL child restarted", WITHIN, || async {
        let st = requester.get("/status").await;
        (st["axl"]["restarts"].as_u64() >= Some(1) && st["axl"]["pid"].as_u64() != Some(pid as u64))
            .then_some(())
    })
    .await;

    let (status, body) = call.await.unwrap();
    assert_eq!(
        status,
        200,
        "{body}\n{}\n{}",
        requester.log(),
        provider.log()
    );
    assert_eq!(body["payment"]["status"], json!("released"));
    let id = body["job_id"].as_str().unwrap().to_string();
    payment_becomes(&provider, &id, "released", WITHIN).await;
    assert_eq!(w.balances().await, (FUND - PRICE, PRICE, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requester_killed_mid_stake_unwinds_after_restart() {
    use alloy::providers::ext::AnvilApi;
    let w = PaidWorld::new().await;
    // The requester's own stake transaction in flight: the approve path (with the default
    // authorization the requester sends nothing, and the job simply completes).
    let (mut requester, _provider) = w.start_with(&[("STAKE_MODE", "approve")], &[]).await;
    // The chain stops mining: the stake's transactions wait in the mempool.
    w.chain.provider().anvil_set_auto_mine(false).await.unwrap();
    let call = delegate_in_background(
        &requester,
        json!({"model": "tinyllama", "prompt": "stake in flight", "timeout_ms": 5000}),
    );
    let id = eventually("a stake in flight", WITHIN, || async {
        let j = requester.newest_job().await?;
        (j["payment"]["status"] == json!("staking"))
            .then(|| j["job_id"].as_str().unwrap().to_string())
    })
    .await;
    requester.kill();
    let _ = call.await;
    // Mining resumes with whatever was sent; the daemon comes back and finds out.
    w.chain.provider().anvil_set_auto_mine(true).await.unwrap();
    w.chain.provider().anvil_mine(Some(1), None).await.unwrap();
    requester.start_again().await;
    let rec = requester.job(&id).await.expect("job");
    assert_eq!(rec["state"], json!("failed"));
    assert_eq!(rec["error_code"], json!("interrupted"));

    // After the stake's deadline nothing can land any more: the job unwinds (or, had the
    // stake landed, is refunded). Either way the requester is whole.
    w.advance(5 + 30 + 5).await;
    let rec = eventually("the interrupted stake ended", WITHIN, || async {
        let j = requester.job(&id).await?;
        let s = j["payment"]["status"].as_str()?.to_string();
        (s == "unwound" || s == "refunded").then_some(j)
    })
    .await;
    let status = w.stake_status(&id).await;
    match rec["payment"]["status"].as_str() {
        Some("unwound") => assert_eq!(status, FairStatus::None),
        _ => assert_eq!(status, FairStatus::Refunded),
    }
    assert_eq!(w.balances().await, (FUND, 0, 0));
}
