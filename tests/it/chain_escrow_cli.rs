//! `edgent escrow refund|finalize|resolve <job>`, the real binary against anvil: a person
//! ends a stake by hand, with clear errors for a stake that is not theirs, not open, or not
//! due (docs/threat-model.md, line 15).

use std::process::{Command, Output};

use alloy::primitives::{keccak256, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use edgent::chain::{EscrowClient, FairEscrow, FairStatus};
use edgent::harness::anvil::{LocalDeployment, LOCAL_DISPUTE_WINDOW_SECS};

use crate::support::chain::{escrow_chain, OPERATOR, USDC};
use crate::support::edgent_bin;

fn escrow_cmd(
    verb: &str,
    job: B256,
    rpc: &str,
    d: &LocalDeployment,
    wallet: &PrivateKeySigner,
) -> (bool, String) {
    escrow_args(&[verb, &format!("{job:#x}")], rpc, d, wallet)
}

/// `edgent escrow <args>` signed by `wallet`: whether it succeeded, and what it printed.
fn escrow_args(
    args: &[&str],
    rpc: &str,
    d: &LocalDeployment,
    wallet: &PrivateKeySigner,
) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let out: Output = Command::new(edgent_bin())
        .arg("escrow")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("EDGENT_ENV_FILE", dir.path().join("none.env"))
        .env("CHAIN_RPC_URL", rpc)
        .env("CHAIN_ID", "31337")
        .env("ESCROW_ADDRESS", d.escrow.to_string())
        .env("USDC_ADDRESS", d.usdc.to_string())
        .env("WALLET_PRIVATE_KEY", format!("{:#x}", wallet.to_bytes()))
        .current_dir(dir.path())
        .output()
        .expect("run edgent");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn a_requester_refunds_by_hand_after_the_deadline_only() {
    let (chain, d, settings) = escrow_chain(None, &[(2, 10 * USDC)]).await;
    let (requester, provider) = (chain.signer(2), chain.signer(3));
    let client = EscrowClient::connect(&settings, Some(requester.clone()))
        .await
        .unwrap();
    let j = keccak256([42u8]);
    let deadline = client.chain_time().await.unwrap() + 600;
    client
        .stake(
            j,
            provider.address(),
            edgent::chain::key_commitment(&[7; 32]),
            U256::from(3 * USDC),
            deadline,
        )
        .await
        .unwrap();
    let rpc = chain.rpc_url();
    let fair = FairEscrow::new(client.clone());

    let (ok, text) = escrow_cmd("refund", j, &rpc, &d, &requester);
    assert!(!ok && text.contains("too early"), "{text}");
    let (ok, text) = escrow_cmd("refund", j, &rpc, &d, &provider);
    assert!(!ok && text.contains("not yours"), "{text}");
    let (ok, text) = escrow_cmd("claim", j, &rpc, &d, &provider);
    assert!(!ok && text.contains("nothing to finalize"), "{text}");
    assert_eq!(fair.get_stake(j).await.unwrap().status, FairStatus::Staked);

    chain.advance_time(601).await.unwrap();
    let (ok, text) = escrow_cmd("refund", j, &rpc, &d, &requester);
    assert!(ok, "{text}");
    assert_eq!(
        fair.get_stake(j).await.unwrap().status,
        FairStatus::Refunded
    );
    assert_eq!(
        client.usdc_balance(requester.address()).await.unwrap(),
        U256::from(10 * USDC)
    );
    let (ok, text) = escrow_cmd("refund", j, &rpc, &d, &requester);
    assert!(!ok && text.contains("nothing to refund"), "{text}");
}

/// The provider's AXL key in the stakes below (the proofs are made for it).
const KEY: [u8; 32] = [7; 32];

/// A 3 USDC stake of the requester (account 2) to the provider (account 3) for job `j`,
/// submitted with a real proof of the output `[j[0]]`.
async fn submitted(requester: &EscrowClient, provider: &FairEscrow, j: B256) {
    let now = requester.chain_time().await.unwrap();
    let key = edgent::chain::key_commitment(&KEY);
    let to = provider.client().wallet_address().unwrap();
    requester
        .stake(j, to, key, U256::from(3 * USDC), now + 600)
        .await
        .unwrap();
    let out = [j[0]];
    let (proof, _) = edgent::zk::prove(&out, &KEY, &j.0).unwrap();
    let hash = B256::from(edgent::zk::commitments(&out, &KEY, &j.0).output_commitment);
    provider.submit(j, hash, &proof).await.unwrap();
}

/// The success paths of `finalize` and `resolve`: an undisputed submit finalized by a third
/// wallet once the window closed, and two disputed stakes resolved by the arbiter, one to the
/// provider and one back to the requester. Every balance is checked exactly, and the sum of
/// all of them with the escrow's is what was minted.
#[tokio::test]
async fn finalize_by_anyone_and_resolve_by_the_arbiter_both_ways() {
    let (chain, d, settings) = escrow_chain(None, &[(2, 10 * USDC)]).await;
    let (requester, provider, third, arbiter) = (
        chain.signer(2),
        chain.signer(3),
        chain.signer(4),
        chain.signer(OPERATOR),
    );
    let client = EscrowClient::connect(&settings, Some(requester.clone()))
        .await
        .unwrap();
    let as_provider = FairEscrow::new(
        EscrowClient::connect(&settings, Some(provider.clone()))
            .await
            .unwrap(),
    );
    let fair = FairEscrow::new(client.clone());
    let rpc = chain.rpc_url();
    let (finalized, paid, refunded) = (keccak256([1u8]), keccak256([2u8]), keccak256([3u8]));
    for j in [finalized, paid, refunded] {
        submitted(&client, &as_provider, j).await;
    }
    for j in [paid, refunded] {
        fair.dispute(j, keccak256(b"task"), keccak256(b"result"))
            .await
            .unwrap();
    }
    let balances = || async {
        let mut out = Vec::new();
        for a in [&requester, &provider, &third, &arbiter] {
            out.push(client.usdc_balance(a.address()).await.unwrap());
        }
        out.push(client.usdc_balance(d.escrow).await.unwrap());
        out
    };
    // The arbiter's first step: the dispute's evidence, signed by the requester's own
    // transaction, as `edgent escrow show` prints it.
    let (ok, text) = escrow_cmd("show", paid, &rpc, &d, &arbiter);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("disputed by {}", requester.address()))
            && text.contains(&format!("task hash   {}", keccak256(b"task")))
            && text.contains(&format!("result hash {}", keccak256(b"result"))),
        "{text}"
    );
    let (ok, text) = escrow_cmd("show", finalized, &rpc, &d, &arbiter);
    assert!(ok && !text.contains("disputed by"), "{text}");
    let u = |n: u64| U256::from(n * USDC);
    assert_eq!(balances().await, [u(1), u(0), u(0), u(0), u(9)]);

    // Finalize: anyone, once the window closed, and only an undisputed submit.
    let (ok, text) = escrow_cmd("finalize", finalized, &rpc, &d, &third);
    assert!(!ok && text.contains("too early"), "{text}");
    let (ok, text) = escrow_cmd("finalize", paid, &rpc, &d, &third);
    assert!(!ok && text.contains("disputed"), "{text}");
    // Resolve: the arbiter only, and only a disputed stake.
    for who in [&requester, &provider, &third] {
        let (ok, text) = escrow_args(
            &["resolve", &format!("{paid:#x}"), "--pay-provider"],
            &rpc,
            &d,
            who,
        );
        assert!(!ok && text.contains("only the escrow's arbiter"), "{text}");
    }
    let (ok, text) = escrow_cmd("resolve", finalized, &rpc, &d, &arbiter);
    assert!(!ok && text.contains("nothing to resolve"), "{text}");
    assert_eq!(balances().await, [u(1), u(0), u(0), u(0), u(9)]);

    chain
        .advance_time(LOCAL_DISPUTE_WINDOW_SECS + 1)
        .await
        .unwrap();
    let (ok, text) = escrow_cmd("finalize", finalized, &rpc, &d, &third);
    assert!(ok && text.contains("finalized"), "{text}");
    assert_eq!(
        fair.get_stake(finalized).await.unwrap().status,
        FairStatus::Finalized
    );
    assert_eq!(balances().await, [u(1), u(3), u(0), u(0), u(6)]);
    // Past the window a dispute is still the arbiter's: finalize refuses it.
    let (ok, text) = escrow_cmd("claim", refunded, &rpc, &d, &provider);
    assert!(!ok && text.contains("disputed"), "{text}");

    let (ok, text) = escrow_args(
        &["resolve", &format!("{paid:#x}"), "--pay-provider"],
        &rpc,
        &d,
        &arbiter,
    );
    assert!(ok, "{text}");
    assert_eq!(
        fair.get_stake(paid).await.unwrap().status,
        FairStatus::ResolvedPaid
    );
    assert_eq!(balances().await, [u(1), u(6), u(0), u(0), u(3)]);

    let (ok, text) = escrow_cmd("resolve", refunded, &rpc, &d, &arbiter);
    assert!(ok, "{text}");
    assert_eq!(
        fair.get_stake(refunded).await.unwrap().status,
        FairStatus::ResolvedRefunded
    );
    assert_eq!(balances().await, [u(4), u(6), u(0), u(0), u(0)]);
    let (ok, text) = escrow_cmd("resolve", refunded, &rpc, &d, &arbiter);
    assert!(!ok && text.contains("nothing to resolve"), "{text}");
}
