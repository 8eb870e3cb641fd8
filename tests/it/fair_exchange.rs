//! User story: a requester can neither get a paid answer free nor judge its own case, and a
//! provider is never left with a stake it cannot end (issue 21, items 3 and 6;
//! docs/threat-model.md, lines 4-8, 13 and 14). The hostile requester is the scriptable evil
//! node (mesh node 2, no daemon; it never acknowledges anything) holding the requester's
//! funded wallet; the provider is a real daemon paid through escrow v4 on anvil. Each test
//! ends with USDC conserved and an honest delegation served and paid.

use std::time::Duration;

use alloy::primitives::{keccak256, B256, U256};
use edgent::chain::{EscrowClient, EscrowError, EscrowRevert, FairEscrow, FairStatus};
use edgent::harness::anvil::LOCAL_DISPUTE_WINDOW_SECS;
use serde_json::json;

use crate::support::evil::{evil_on, node_key};
use crate::support::paid::{hostile_task, payment_becomes, PaidWorld, FUND, PRICE};

const WITHIN: Duration = Duration::from_secs(60);

/// An escrow client signing with anvil account `i`, speaking version 4.
async fn fair_client(w: &PaidWorld, i: usize) -> FairEscrow {
    let c = EscrowClient::connect(&w.chain.settings(&w.deployment), Some(w.chain.signer(i)))
        .await
        .expect("escrow client");
    FairEscrow::new(c)
}

fn refusal(e: EscrowError) -> EscrowRevert {
    match e {
        EscrowError::Refused(r) => r,
        other => panic!("not a refusal: {other:?}"),
    }
}

/// An honest delegation through the requester daemon: served and released.
async fn honest_delegation(requester: &crate::support::DaemonProc) -> String {
    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "honest work", "wait": "settled"}))
        .await;
    assert_eq!(status, 200, "{body}\n{}", requester.log());
    assert_eq!(body["payment"]["status"], json!("released"), "{body}");
    body["job_id"].as_str().expect("job id").to_string()
}

/// Lines 4, 5, 6, 8 and 14. The requester never acknowledges the `task_result`. Before the
/// fix the provider's delivery failed at the deadline, the payment was `abandoned`, and the
/// requester's refund after the deadline took the stake back with the output in hand (or
/// its operator credential `reject`ed it). Now the output that left the provider is proved
/// and submitted; the requester cannot take the stake back alone (no `reject`; `refund` of a
/// submitted stake reverts, also past the stake's deadline; only the arbiter resolves, and
/// the requester is not it), and the provider `finalize`s at the end of the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requester_that_never_acks_the_result_still_pays_and_cannot_take_it_back() {
    let w = PaidWorld::with_nodes(3).await;
    let (requester, provider) = w.start(&[]).await;
    let evil = evil_on(&w.mesh, &[2]).await;
    let job = keccak256(b"never acked");
    let id = format!("{job:#x}");
    let task = hostile_task(&w, job, "free answer please", 6, false).await;
    evil.send_json(0, &node_key(&w.mesh, 1), &task)
        .await
        .expect("send");
    let result = evil
        .wait_for(WITHIN, |r| r.kind() == Some("task_result"))
        .await
        .expect("the provider delivers");
    assert!(
        result.msg_id.is_some(),
        "a reliable result, never acknowledged"
    );

    // The delivery failed (never acked), and still: proved and submitted, not declined.
    let pjob = payment_becomes(&provider, &id, "submitted", WITHIN).await;
    assert_eq!(pjob["error_code"], json!("undelivered"), "{pjob}");
    assert_eq!(w.stake_status(&id).await, FairStatus::Submitted);

    // The requester cannot take it back: refund reverts on a submitted stake, there is no
    // reject, and only the arbiter resolves (line 5: a requester holds no such power).
    let own = FairEscrow::new(w.requester_client().await);
    assert!(matches!(
        refusal(own.refund(job).await.unwrap_err()),
        EscrowRevert::WrongFairStatus {
            status: FairStatus::Submitted,
            ..
        }
    ));
    assert!(matches!(
        refusal(own.resolve(job, false).await.unwrap_err()),
        EscrowRevert::NotArbiter { .. }
    ));
    // A third wallet can neither release nor resolve it.
    let stranger = fair_client(&w, 6).await;
    assert!(matches!(
        refusal(stranger.release(job, B256::ZERO).await.unwrap_err()),
        EscrowRevert::NotRequester { .. }
    ));
    assert!(matches!(
        refusal(stranger.resolve(job, false).await.unwrap_err()),
        EscrowRevert::NotArbiter { .. }
    ));

    // Line 14: past the stake's deadline and the window, still no refund; the provider
    // finalizes and is paid.
    w.advance(LOCAL_DISPUTE_WINDOW_SECS + 10).await;
    payment_becomes(&provider, &id, "claimed", WITHIN).await;
    assert_eq!(w.stake_status(&id).await, FairStatus::Finalized);
    assert!(own.refund(job).await.is_err());
    assert_eq!(w.balances().await, (FUND - PRICE, PRICE, 0));

    let honest = honest_delegation(&requester).await;
    payment_becomes(&provider, &honest, "released", WITHIN).await;
    assert_eq!(w.balances().await, (FUND - 2 * PRICE, 2 * PRICE, 0));
    w.assert_conserved(0).await;
}

/// Lines 7 and 8. The requester cancels a streamed job after its first chunk. Before the fix
/// the provider declined (the requester was refunded in the provider's own transaction,
/// with the streamed text in hand). Now the streamed text is the job's output: it is sent as
/// the result, proved, submitted and paid in full at the end of the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_after_the_first_chunk_pays_the_whole_price() {
    let w = PaidWorld::with_nodes(3).await;
    w.ollama.set(|b| b.piece_delay = Duration::from_millis(400));
    let (requester, provider) = w.start(&[]).await;
    let evil = evil_on(&w.mesh, &[2]).await;
    let job = keccak256(b"cancelled mid-stream");
    let id = format!("{job:#x}");
    let task = hostile_task(&w, job, "one two three four five six seven", 20, true).await;
    let to = node_key(&w.mesh, 1);
    evil.send_json(0, &to, &task).await.expect("send");
    evil.wait_for(WITHIN, |r| r.kind() == Some("task_chunk"))
        .await
        .expect("a first chunk");
    evil.send_json(
        0,
        &to,
        &json!({"v": 1, "type": "task_cancel", "job_id": id}),
    )
    .await
    .expect("cancel");

    let pjob = payment_becomes(&provider, &id, "submitted", WITHIN).await;
    assert_eq!(pjob["state"], json!("cancelled"), "{pjob}");
    let output = pjob["output"]
        .as_str()
        .expect("the streamed part")
        .to_string();
    let full = edgent::harness::ollama_stub::stub_output(
        "tinyllama:latest",
        "one two three four five six seven",
    );
    assert!(
        !output.is_empty() && full.starts_with(&output) && output.len() < full.len(),
        "{output:?}"
    );
    // The requester got that text as the result (not acknowledged: it went away).
    let result = evil
        .wait_for(WITHIN, |r| r.kind() == Some("task_result"))
        .await
        .expect("the streamed part as the result");
    match result.msg {
        Some(edgent::protocol::Message::TaskResult(r)) => assert_eq!(r.output, output),
        other => panic!("{other:?}"),
    }
    assert!(
        evil.received_kind("task_error").is_empty(),
        "{:?}",
        evil.received()
    );

    w.advance(LOCAL_DISPUTE_WINDOW_SECS + 1).await;
    payment_becomes(&provider, &id, "claimed", WITHIN).await;
    assert_eq!(w.stake_status(&id).await, FairStatus::Finalized);
    assert_eq!(w.balances().await, (FUND - PRICE, PRICE, 0));

    w.ollama.set(|b| b.piece_delay = Duration::ZERO);
    let honest = honest_delegation(&requester).await;
    payment_becomes(&provider, &honest, "released", WITHIN).await;
    assert_eq!(w.balances().await, (FUND - 2 * PRICE, 2 * PRICE, 0));
    w.assert_conserved(0).await;
}

/// Lines 7 and 8, the deadline's half. The requester's deadline runs out while the provider
/// streams: the first chunks left it, the rest never will. Before the fix the provider
/// declined (the requester was refunded with the streamed text in hand); now the streamed
/// text is the job's output, as after a cancel (`stopped_after_output` in `provider.rs`):
/// it is sent as the result, proved, submitted, and finalized after the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_that_ends_mid_stream_pays_the_whole_price() {
    let w = PaidWorld::with_nodes(3).await;
    w.ollama.set(|b| b.piece_delay = Duration::from_millis(400));
    let (requester, provider) = w.start(&[]).await;
    let evil = evil_on(&w.mesh, &[2]).await;
    let job = keccak256(b"deadline mid-stream");
    let id = format!("{job:#x}");
    // 23 pieces at 400 ms each: about 9 s of streaming against a 4 s deadline.
    let prompt = "a b c d e f g h i j k l m n o p q r s t";
    let task = hostile_task(&w, job, prompt, 4, true).await;
    evil.send_json(0, &node_key(&w.mesh, 1), &task)
        .await
        .expect("send");
    evil.wait_for(WITHIN, |r| r.kind() == Some("task_chunk"))
        .await
        .expect("a first chunk before the deadline");

    let pjob = payment_becomes(&provider, &id, "submitted", WITHIN).await;
    assert_eq!(pjob["state"], json!("failed"), "{pjob}");
    assert!(
        pjob["error"]
            .as_str()
            .unwrap_or_default()
            .contains("deadline"),
        "{pjob}"
    );
    let output = pjob["output"]
        .as_str()
        .expect("the streamed part")
        .to_string();
    let full = edgent::harness::ollama_stub::stub_output("tinyllama:latest", prompt);
    assert!(
        !output.is_empty() && full.starts_with(&output) && output.len() < full.len(),
        "{output:?}"
    );
    let result = evil
        .wait_for(WITHIN, |r| r.kind() == Some("task_result"))
        .await
        .expect("the streamed part as the result");
    match result.msg {
        Some(edgent::protocol::Message::TaskResult(r)) => assert_eq!(r.output, output),
        other => panic!("{other:?}"),
    }
    assert!(
        evil.received_kind("task_error").is_empty(),
        "{:?}",
        evil.received()
    );
    assert_eq!(w.stake_status(&id).await, FairStatus::Submitted);
    assert_eq!(w.balances().await, (FUND - PRICE, 0, PRICE));

    w.advance(LOCAL_DISPUTE_WINDOW_SECS + 1).await;
    payment_becomes(&provider, &id, "claimed", WITHIN).await;
    assert_eq!(w.stake_status(&id).await, FairStatus::Finalized);
    assert_eq!(w.balances().await, (FUND - PRICE, PRICE, 0));

    w.ollama.set(|b| b.piece_delay = Duration::ZERO);
    let honest = honest_delegation(&requester).await;
    payment_becomes(&provider, &honest, "released", WITHIN).await;
    assert_eq!(w.balances().await, (FUND - 2 * PRICE, 2 * PRICE, 0));
    w.assert_conserved(0).await;
}

/// Line 13 (item 6). Two stakes on chain that neither daemon's job table knows (a crash
/// between sending the stake and committing its row): one to the provider, one to a wallet
/// that runs no daemon. At start the provider finds its stake in the escrow's `Staked` events
/// and declines it (the task is lost: the requester is refunded at once); the requester finds
/// the other and refunds it after its deadline. Before the fix both stayed locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stakes_the_job_tables_lost_are_found_at_start_and_ended() {
    let w = PaidWorld::new().await;
    let client = w.requester_client().await;
    let now = client.chain_time().await.expect("chain time");
    let provider_key = node_key(&w.mesh, 1);
    let to_provider = keccak256(b"lost by the provider");
    client
        .stake(
            to_provider,
            w.provider_wallet,
            edgent::chain::key_commitment(&provider_key.0),
            U256::from(PRICE),
            now + 3600,
        )
        .await
        .expect("stake to the provider");
    let to_nobody = keccak256(b"lost by the requester");
    client
        .stake(
            to_nobody,
            w.wallet(6),
            edgent::chain::key_commitment(&[9; 32]),
            U256::from(PRICE),
            now + 60,
        )
        .await
        .expect("stake to a wallet with no daemon");
    assert_eq!(w.balances().await, (FUND - 2 * PRICE, 0, 2 * PRICE));

    let (requester, provider) = w.start(&[]).await;
    let declined = format!("{to_provider:#x}");
    let pjob = payment_becomes(&provider, &declined, "refunded", WITHIN).await;
    assert!(pjob["payment"]["tx_hash"].as_str().is_some(), "{pjob}");
    assert_eq!(w.stake_status(&declined).await, FairStatus::Declined);
    let lost = format!("{to_nobody:#x}");
    payment_becomes(&requester, &lost, "staked", WITHIN).await;
    w.advance(61).await;
    payment_becomes(&requester, &lost, "refunded", WITHIN).await;
    assert_eq!(w.stake_status(&lost).await, FairStatus::Refunded);
    assert_eq!(w.balances().await, (FUND, 0, 0));

    let honest = honest_delegation(&requester).await;
    payment_becomes(&provider, &honest, "released", WITHIN).await;
    assert_eq!(w.balances().await, (FUND - PRICE, PRICE, 0));
    w.assert_conserved(0).await;
}

/// A provider takes no paid work on an escrow whose arbiter it does not trust, and says so
/// in `/status` (`EDGENT_PAYMENTS=auto`: it runs unpaid).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_refuses_paid_work_under_an_arbiter_it_does_not_trust() {
    let w = PaidWorld::new().await;
    let stranger = format!("{:#x}", w.wallet(7));
    let (_requester, provider) = w
        .start(&[("EDGENT_PAYMENTS", "auto"), ("TRUSTED_ARBITERS", &stranger)])
        .await;
    let st = provider.get("/status").await;
    assert_eq!(st["payments"]["active"], json!(false), "{st}");
    let reason = st["payments"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.contains("arbiter") && reason.contains("TRUSTED_ARBITERS"),
        "{st}"
    );
    assert!(
        reason.contains(&format!("{:#x}", w.deployment.operator))
            || reason.contains(&format!("{}", w.deployment.operator)),
        "{reason}"
    );
}
