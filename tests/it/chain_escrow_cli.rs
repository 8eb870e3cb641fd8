//! `edgent escrow refund|finalize <job>`, the real binary against anvil: a person ends a
//! stake by hand, with clear errors for a stake that is not theirs, not open, or not due.

use std::process::{Command, Output};

use alloy::primitives::{keccak256, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use edgent::chain::{EscrowClient, FairEscrow, FairStatus};
use edgent::harness::anvil::LocalDeployment;

use crate::support::chain::{escrow_chain, USDC};
use crate::support::edgent_bin;

fn escrow_cmd(
    verb: &str,
    job: B256,
    rpc: &str,
    d: &LocalDeployment,
    wallet: &PrivateKeySigner,
) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let out: Output = Command::new(edgent_bin())
        .args(["escrow", verb, &format!("{job:#x}")])
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
