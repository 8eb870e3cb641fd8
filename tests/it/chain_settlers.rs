//! KeeperHub settlement against a real anvil through the KeeperHub emulator: a normal
//! release, and every injected fault ending in exactly one release or a clear error.

use std::time::Duration;

use alloy::primitives::{keccak256, Address, B256, U256};
use edgent::chain::{
    ChainSettings, EscrowClient, KeeperHubSettler, Secret, SettleError, Settler, StakeStatus,
};
use edgent::harness::anvil::{LocalChain, LocalDeployment};
use edgent::harness::keeperhub_emulator::{EmulatorFaults, KeeperHubEmulator};

use crate::support::chain::{escrow_chain_v3, OPERATOR, USDC};

struct Fixture {
    _chain: LocalChain,
    deployment: LocalDeployment,
    requester: EscrowClient,
    provider_addr: Address,
    emulator: KeeperHubEmulator,
    settings: ChainSettings,
}

impl Fixture {
    async fn new() -> Self {
        let (chain, deployment, mut settings) = escrow_chain_v3(None, &[(2, 100 * USDC)]).await;
        let provider_addr = chain.signer(3).address();
        let emulator = KeeperHubEmulator::start(
            &chain.rpc_url(),
            deployment.escrow,
            chain.signer(OPERATOR),
            EmulatorFaults::default(),
        )
        .await
        .unwrap();
        settings.keeperhub_url = emulator.url().to_string();
        settings.keeperhub_api_key = Some(Secret::new(emulator.api_key()));
        settings.keeperhub_network = "anvil".into();
        settings.keeperhub_poll = Duration::from_millis(50);
        settings.keeperhub_timeout = Duration::from_secs(10);
        let requester = EscrowClient::connect(&settings, Some(chain.signer(2)))
            .await
            .unwrap();
        Self {
            _chain: chain,
            deployment,
            requester,
            provider_addr,
            emulator,
            settings,
        }
    }

    async fn settler(&self) -> KeeperHubSettler {
        KeeperHubSettler::connect(&self.settings).await.unwrap()
    }

    async fn stake(&self, n: u8, amount: u64) -> B256 {
        let j = keccak256([n]);
        let deadline = self.requester.chain_time().await.unwrap() + 600;
        self.requester
            .stake(
                j,
                self.provider_addr,
                edgent::chain::key_commitment(&[7; 32]),
                U256::from(amount),
                deadline,
            )
            .await
            .unwrap();
        j
    }

    async fn balance(&self, who: Address) -> U256 {
        self.requester.usdc_balance(who).await.unwrap()
    }

    async fn status(&self, j: B256) -> StakeStatus {
        self.requester.get_stake(j).await.unwrap().status
    }
}

#[tokio::test]
async fn keeperhub_release_pays_the_provider_and_is_idempotent() {
    let f = Fixture::new().await;
    let j = f.stake(1, 5 * USDC).await;
    let out = B256::repeat_byte(0x11);
    let settler = f.settler().await;
    let done = settler.release(j, out).await.unwrap();
    assert!(done.sent);
    assert_eq!(done.status, StakeStatus::Released);
    let tx = done.tx_hash.expect("KeeperHub reports the transaction");
    assert_eq!(
        done.explorer_url.as_deref(),
        Some(format!("https://sepolia.basescan.org/tx/{tx}").as_str())
    );
    assert_eq!(f.balance(f.provider_addr).await, U256::from(5 * USDC));
    assert_eq!(f.requester.get_stake(j).await.unwrap().output_hash, out);

    let calls = f.emulator.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].function, "release");
    assert_eq!(calls[0].network, "anvil");
    assert_eq!(calls[0].args, vec![format!("{j:#x}"), format!("{out:#x}")]);
    assert_eq!(calls[0].args[1].len(), 66, "0x + 64 hex digits");

    let again = settler.release(j, out).await.unwrap();
    assert_eq!(
        (again.sent, again.tx_hash, again.status),
        (false, Some(tx), StakeStatus::Released)
    );
    assert_eq!(f.emulator.posts(), 1, "no second call for a released job");
    assert_eq!(f.emulator.transactions_sent(), 1);
}

#[tokio::test]
async fn rate_limit_then_success_releases_once() {
    let f = Fixture::new().await;
    let j = f.stake(2, 2 * USDC).await;
    f.emulator.rate_limit_next_posts(2, 0.2);
    let started = std::time::Instant::now();
    let done = f.settler().await.release(j, B256::ZERO).await.unwrap();
    assert_eq!(done.status, StakeStatus::Released);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "Retry-After was honoured"
    );
    assert_eq!(f.emulator.posts(), 3);
    assert_eq!(f.emulator.transactions_sent(), 1);
    assert_eq!(f.balance(f.provider_addr).await, U256::from(2 * USDC));
}

#[tokio::test]
async fn server_errors_then_success_release_once() {
    let f = Fixture::new().await;
    let j = f.stake(3, 3 * USDC).await;
    f.emulator.fail_next_posts(3);
    let done = f.settler().await.release(j, B256::ZERO).await.unwrap();
    assert_eq!(done.status, StakeStatus::Released);
    assert_eq!(f.emulator.posts(), 4);
    assert_eq!(f.emulator.calls().len(), 1);
    assert_eq!(f.emulator.transactions_sent(), 1);
    assert_eq!(f.balance(f.provider_addr).await, U256::from(3 * USDC));
}

#[tokio::test]
async fn a_lost_answer_is_posted_again_under_its_key_and_executes_once() {
    let f = Fixture::new().await;
    let j = f.stake(7, USDC).await;
    f.emulator.lose_next_answers(1);
    // The lost call lands 1 s later, long after ten polls of 50 ms: without the key, a
    // retry would queue a second execution behind it.
    f.emulator.set_execution_delay(Duration::from_secs(1));
    let done = f.settler().await.release(j, B256::ZERO).await.unwrap();
    assert_eq!(done.status, StakeStatus::Released);
    // One execution, one transaction: every retry while it ran was answered 409 (in
    // progress) under the same key; then the chain showed the release.
    assert_eq!(f.emulator.calls().len(), 1);
    assert!(f.emulator.in_progress_answers() >= 1);
    assert_eq!(f.emulator.transactions_sent(), 1);
    assert_eq!(f.balance(f.provider_addr).await, U256::from(USDC));
    assert!(done.tx_hash.is_some());
}

#[tokio::test]
async fn two_settlers_releasing_one_job_execute_once() {
    // A retry after a crash, or a second settler, sends the same key: KeeperHub runs the
    // release once and answers the other with its result.
    let f = Fixture::new().await;
    let j = f.stake(8, 2 * USDC).await;
    f.emulator.set_execution_delay(Duration::from_millis(500));
    let (a, b) = (f.settler().await, f.settler().await);
    let (ra, rb) = tokio::join!(a.release(j, B256::ZERO), b.release(j, B256::ZERO));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(
        (ra.status, rb.status),
        (StakeStatus::Released, StakeStatus::Released)
    );
    assert_eq!(ra.tx_hash, rb.tx_hash, "both report the one transaction");
    assert_eq!(f.emulator.calls().len(), 1);
    assert_eq!(f.emulator.transactions_sent(), 1);
    assert_eq!(f.balance(f.provider_addr).await, U256::from(2 * USDC));
}

#[tokio::test]
async fn failed_execution_is_a_clear_error_and_a_retry_releases_once() {
    let f = Fixture::new().await;
    let j = f.stake(4, USDC).await;
    f.emulator.fail_next_executions(1);
    let settler = f.settler().await;
    let err = settler.release(j, B256::ZERO).await.unwrap_err();
    assert!(
        matches!(err, SettleError::ExecutionFailed { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("failed"), "{err}");
    assert_eq!(f.status(j).await, StakeStatus::Staked);
    assert_eq!(f.emulator.transactions_sent(), 0);

    // The retry's key replays the failure; the stake is still open, so the settler posts
    // under the key's next generation, which executes.
    settler.release(j, B256::ZERO).await.unwrap();
    assert_eq!(f.status(j).await, StakeStatus::Released);
    assert_eq!(f.emulator.replays(), 1);
    assert_eq!(f.emulator.calls().len(), 2);
    assert_eq!(f.emulator.transactions_sent(), 1);
    assert_eq!(f.balance(f.provider_addr).await, U256::from(USDC));
}

#[tokio::test]
async fn slow_status_is_polled_until_completed() {
    let f = Fixture::new().await;
    let j = f.stake(5, USDC).await;
    f.emulator.set_status_delay(Duration::from_millis(400));
    let done = f.settler().await.release(j, B256::ZERO).await.unwrap();
    assert_eq!(done.status, StakeStatus::Released);
    assert!(done.tx_hash.is_some());
}

#[tokio::test]
async fn status_that_never_finishes_times_out() {
    let mut f = Fixture::new().await;
    let j = f.stake(6, USDC).await;
    f.emulator.set_status_delay(Duration::from_secs(60));
    f.settings.keeperhub_timeout = Duration::from_millis(500);
    let err = f.settler().await.release(j, B256::ZERO).await.unwrap_err();
    assert!(matches!(err, SettleError::Timeout(_)), "{err:?}");
}

#[tokio::test]
async fn bad_key_and_spending_cap_are_clear_errors() {
    let mut f = Fixture::new().await;
    let j = f.stake(7, USDC).await;
    f.emulator.set_spending_cap(true);
    let err = f.settler().await.release(j, B256::ZERO).await.unwrap_err();
    assert!(matches!(err, SettleError::SpendingCap(_)), "{err:?}");
    f.emulator.set_spending_cap(false);

    f.settings.keeperhub_api_key = Some(Secret::new("kh_wrong"));
    let err = f.settler().await.release(j, B256::ZERO).await.unwrap_err();
    assert!(matches!(err, SettleError::Unauthorized), "{err:?}");
    assert!(!err.to_string().contains("kh_wrong"));
    assert_eq!(f.status(j).await, StakeStatus::Staked);
    assert_eq!(f.emulator.transactions_sent(), 0);
}

#[tokio::test]
async fn keeperhub_reject_refunds_the_requester() {
    let f = Fixture::new().await;
    let req = f.requester.wallet_address().unwrap();
    let j = f.stake(8, 9 * USDC).await;
    assert_eq!(f.balance(req).await, U256::from(91 * USDC));
    let settler = f.settler().await;
    let done = settler.reject(j).await.unwrap();
    assert_eq!(done.status, StakeStatus::Rejected);
    assert_eq!(f.balance(req).await, U256::from(100 * USDC));
    assert_eq!(f.balance(f.deployment.escrow).await, U256::ZERO);
    // Releasing a rejected job is refused before any call.
    let posts = f.emulator.posts();
    assert!(matches!(
        settler.release(j, B256::ZERO).await.unwrap_err(),
        SettleError::Conflict { .. }
    ));
    assert_eq!(f.emulator.posts(), posts);
}

#[tokio::test]
async fn settings_choose_the_settler() {
    let f = Fixture::new().await;
    assert_eq!(
        edgent::chain::connect_settler(&f.settings)
            .await
            .unwrap()
            .name(),
        "keeperhub"
    );
    let mut direct = f.settings.clone();
    direct.keeperhub_api_key = None;
    direct.operator_key = Some(f._chain.key(1));
    let settler = edgent::chain::connect_settler(&direct).await.unwrap();
    assert_eq!(settler.name(), "direct");
    let j = f.stake(9, USDC).await;
    settler.release(j, B256::ZERO).await.unwrap();
    assert_eq!(f.balance(f.provider_addr).await, U256::from(USDC));
    assert_eq!(f.emulator.posts(), 0);
    let mut neither = direct;
    neither.operator_key = None;
    let err = edgent::chain::connect_settler(&neither)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("KEEPERHUB_API_KEY"), "{err}");
}
