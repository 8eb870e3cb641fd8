//! Version 4 of the escrow (the fair exchange) through `FairEscrow` against a real anvil, with
//! proofs from edgent's prover: the requester releases its own stake with no operator, an
//! undisputed submit is paid by anyone after the window, a dispute goes to the arbiter and
//! only the arbiter, and a provider checks the arbiter against its trusted list.

use alloy::primitives::{keccak256, Address, B256, U256};
use alloy::providers::Provider;
use alloy::sol_types::SolEvent;
use edgent::chain::bindings::EdgentEscrowV4;
use edgent::chain::deploy::deploy_fair_escrow;
use edgent::chain::{
    ChainError, EscrowClient, EscrowRevert, FairEscrow, FairStatus, DEFAULT_DISPUTE_WINDOW_SECS,
    FAIR_ESCROW_VERSION,
};
use edgent::harness::anvil::LocalChain;

use crate::support::chain::{escrow_chain, refusal, DEPLOYER, OPERATOR, USDC};

const WINDOW: u64 = DEFAULT_DISPUTE_WINDOW_SECS;
const PROVIDER_KEY: [u8; 32] = [7; 32];

/// Anvil with MockUSDC and a version-4 escrow whose arbiter is [`OPERATOR`]; the requester
/// (account 2, 100 USDC), the provider (3), the arbiter and a stranger (4) each speak to it.
struct Fixture {
    chain: LocalChain,
    requester: FairEscrow,
    provider: FairEscrow,
    arbiter: FairEscrow,
    stranger: FairEscrow,
}

impl Fixture {
    async fn new() -> Self {
        let (chain, deployment, settings) = escrow_chain(None, &[(2, 100 * USDC)]).await;
        let deployer =
            edgent::chain::http_provider(&chain.rpc_url(), Some(chain.signer(DEPLOYER))).unwrap();
        let arbiter = chain.signer(OPERATOR).address();
        let escrow = deploy_fair_escrow(&deployer, deployment.usdc, arbiter, WINDOW)
            .await
            .unwrap();
        let settings = edgent::chain::ChainSettings { escrow, ..settings };
        let fair = |i| {
            let settings = settings.clone();
            let signer = chain.signer(i);
            async move {
                FairEscrow::new(
                    EscrowClient::connect(&settings, Some(signer))
                        .await
                        .unwrap(),
                )
            }
        };
        Self {
            requester: fair(2).await,
            provider: fair(3).await,
            arbiter: fair(OPERATOR).await,
            stranger: fair(4).await,
            chain,
        }
    }

    fn addr(f: &FairEscrow) -> Address {
        f.client().wallet_address().unwrap()
    }

    async fn balance(&self, who: Address) -> U256 {
        self.requester.client().usdc_balance(who).await.unwrap()
    }

    async fn stake(&self, j: B256) {
        let now = self.requester.client().chain_time().await.unwrap();
        let key = edgent::chain::key_commitment(&PROVIDER_KEY);
        let provider = Self::addr(&self.provider);
        let amount = U256::from(2 * USDC);
        self.requester
            .client()
            .stake(j, provider, key, amount, now + 600)
            .await
            .unwrap();
    }

    /// The provider submits the output `[tag]` with its real proof; returns the output hash.
    async fn submit(&self, j: B256, tag: u8) -> B256 {
        let (proof, _) = edgent::zk::prove(&[tag], &PROVIDER_KEY, &j.0).unwrap();
        let out =
            B256::from(edgent::zk::commitments(&[tag], &PROVIDER_KEY, &j.0).output_commitment);
        self.provider.submit(j, out, &proof).await.unwrap();
        out
    }

    async fn status(&self, j: B256) -> FairStatus {
        self.requester.get_stake(j).await.unwrap().status
    }
}

fn job(n: u8) -> B256 {
    keccak256([0x44, n])
}

#[tokio::test]
async fn the_requester_releases_its_own_stake_without_an_operator() {
    let f = Fixture::new().await;
    let (req, prov) = (Fixture::addr(&f.requester), Fixture::addr(&f.provider));
    let j = job(1);
    f.stake(j).await;
    let out = B256::repeat_byte(9);
    // Neither the arbiter nor the provider may release the requester's stake.
    for other in [&f.arbiter, &f.provider] {
        let e = refusal(other.release(j, out).await.unwrap_err());
        assert_eq!(
            e,
            EscrowRevert::NotRequester {
                caller: Fixture::addr(other)
            }
        );
    }
    f.requester.release(j, out).await.unwrap();
    assert_eq!(f.balance(prov).await, U256::from(2 * USDC));
    assert_eq!(f.balance(req).await, U256::from(98 * USDC));
    let s = f.requester.get_stake(j).await.unwrap();
    assert_eq!((s.status, s.info.output_hash), (FairStatus::Released, out));
    // Released is final: a second release is refused with version 4's state.
    let e = refusal(f.requester.release(j, out).await.unwrap_err());
    assert_eq!(
        e,
        EscrowRevert::WrongFairStatus {
            job_id: j,
            status: FairStatus::Released
        }
    );
}

#[tokio::test]
async fn an_undisputed_submit_is_paid_by_anyone_after_the_window() {
    let f = Fixture::new().await;
    let prov = Fixture::addr(&f.provider);
    let j = job(2);
    f.stake(j).await;
    f.submit(j, 1).await;
    let submitted_at = f.requester.get_stake(j).await.unwrap().info.submitted_at;
    let e = refusal(f.stranger.finalize(j).await.unwrap_err());
    assert_eq!(
        e,
        EscrowRevert::DisputeWindowOpen {
            closes_at: submitted_at + WINDOW
        }
    );
    // After a valid submit the requester alone cannot take the money back.
    f.chain.advance_time(601).await.unwrap();
    let e = refusal(f.requester.refund(j).await.unwrap_err());
    assert_eq!(
        e,
        EscrowRevert::WrongFairStatus {
            job_id: j,
            status: FairStatus::Submitted
        }
    );
    let e = refusal(
        f.requester
            .dispute(j, B256::ZERO, B256::ZERO)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        e,
        EscrowRevert::DisputeWindowClosed {
            closed_at: submitted_at + WINDOW
        }
    );
    f.stranger.finalize(j).await.unwrap();
    assert_eq!(f.balance(prov).await, U256::from(2 * USDC));
    assert_eq!(f.balance(Fixture::addr(&f.stranger)).await, U256::ZERO);
    assert_eq!(f.status(j).await, FairStatus::Finalized);
}

#[tokio::test]
async fn a_dispute_goes_to_the_arbiter_with_the_evidence_hashes() {
    let f = Fixture::new().await;
    let (req, prov) = (Fixture::addr(&f.requester), Fixture::addr(&f.provider));
    let j = job(3);
    f.stake(j).await;
    let out = f.submit(j, 2).await;
    let (task_hash, result_hash) = (keccak256(b"signed task"), keccak256(b"signed result"));
    let tx = f
        .requester
        .dispute(j, task_hash, result_hash)
        .await
        .unwrap();
    let receipt = f
        .chain
        .provider()
        .get_transaction_receipt(tx)
        .await
        .unwrap()
        .unwrap();
    let event = receipt
        .inner
        .logs()
        .iter()
        .find_map(|l| EdgentEscrowV4::Disputed::decode_log(&l.inner).ok())
        .expect("a Disputed event");
    assert_eq!(
        (
            event.jobId,
            event.requester,
            event.taskHash,
            event.resultHash,
            event.outputHash
        ),
        (j, req, task_hash, result_hash, out)
    );
    // Held for the arbiter: nobody else moves it, not even after the window.
    f.chain.advance_time(WINDOW + 1).await.unwrap();
    let e = refusal(f.provider.finalize(j).await.unwrap_err());
    assert_eq!(
        e,
        EscrowRevert::WrongFairStatus {
            job_id: j,
            status: FairStatus::Disputed
        }
    );
    for other in [&f.requester, &f.provider, &f.stranger] {
        let e = refusal(
            other
                .resolve(j, other.client().wallet_address() == Some(prov))
                .await
                .unwrap_err(),
        );
        assert_eq!(
            e,
            EscrowRevert::NotArbiter {
                caller: Fixture::addr(other)
            }
        );
    }
    f.arbiter.resolve(j, false).await.unwrap();
    assert_eq!(f.balance(req).await, U256::from(100 * USDC));
    assert_eq!(f.balance(prov).await, U256::ZERO);
    assert_eq!(f.status(j).await, FairStatus::ResolvedRefunded);
}

#[tokio::test]
async fn a_provider_checks_the_arbiter_and_reads_the_one_window_setting() {
    let f = Fixture::new().await;
    let arbiter = Fixture::addr(&f.arbiter);
    assert_eq!(f.provider.version().await.unwrap(), FAIR_ESCROW_VERSION);
    assert_eq!(f.provider.dispute_window().await.unwrap(), WINDOW);
    assert_eq!(f.provider.arbiter().await.unwrap(), arbiter);
    let other = Address::repeat_byte(0xab);
    assert_eq!(
        f.provider.check_arbiter(&[other, arbiter]).await.unwrap(),
        arbiter
    );
    match f.provider.check_arbiter(&[other]).await.unwrap_err() {
        ChainError::UntrustedArbiter {
            arbiter: a,
            trusted,
            ..
        } => {
            assert_eq!((a, trusted), (arbiter, vec![other]));
        }
        e => panic!("expected UntrustedArbiter, got {e:?}"),
    }
    assert!(matches!(
        f.provider.check_arbiter(&[]).await.unwrap_err(),
        ChainError::UntrustedArbiter { .. }
    ));
    // The arbiter is never a party: a stake naming it as provider is refused.
    let now = f.requester.client().chain_time().await.unwrap();
    let key = edgent::chain::key_commitment(&PROVIDER_KEY);
    let e = f
        .requester
        .client()
        .stake(job(4), arbiter, key, U256::from(USDC), now + 600)
        .await
        .unwrap_err();
    assert_eq!(refusal(e), EscrowRevert::ArbiterIsParty { arbiter });
}
