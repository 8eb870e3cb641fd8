//! Escrow client against a real anvil: stake/getStake/release with balance checks, every
//! refusal decoded to its typed error, and time travel for refund and claimTimeout.

use alloy::primitives::{keccak256, Address, TxHash, B256, U256};
use alloy::providers::Provider;
use edgent::chain::bindings::EdgentEscrow;
use edgent::chain::{
    ChainError, ChainSettings, DirectSettler, EscrowClient, EscrowError, EscrowRevert, SettleError,
    Settler, StakeInfo, StakeStatus,
};
use edgent::harness::anvil::{LocalChain, LocalDeployment};
use edgent::zk::SnarkjsProof;

use crate::support::chain::{approve_escrow, escrow_chain_v3, mint_usdc, refusal, OPERATOR, USDC};

struct Fixture {
    chain: LocalChain,
    deployment: LocalDeployment,
    settings: ChainSettings,
    requester: EscrowClient,
    provider: EscrowClient,
    operator: EscrowClient,
}

impl Fixture {
    async fn new() -> Self {
        let (chain, deployment, settings) =
            escrow_chain_v3(None, &[(2, 100 * USDC), (3, USDC)]).await;
        let client = |i| EscrowClient::connect(&settings, Some(chain.signer(i)));
        let requester = client(2).await.unwrap();
        let provider = client(3).await.unwrap();
        let operator = client(OPERATOR).await.unwrap();
        Self {
            chain,
            deployment,
            settings,
            requester,
            provider,
            operator,
        }
    }

    fn requester_addr(&self) -> Address {
        self.requester.wallet_address().unwrap()
    }

    fn provider_addr(&self) -> Address {
        self.provider.wallet_address().unwrap()
    }

    async fn now(&self) -> u64 {
        self.requester.chain_time().await.unwrap()
    }

    async fn balance(&self, who: Address) -> U256 {
        self.requester.usdc_balance(who).await.unwrap()
    }

    async fn nonce(&self, who: Address) -> u64 {
        self.chain
            .provider()
            .get_transaction_count(who)
            .await
            .unwrap()
    }

    async fn stake(&self, job: B256, amount: u64) -> B256 {
        let deadline = self.now().await + 600;
        self.requester
            .stake(
                job,
                self.provider_addr(),
                key_c(),
                U256::from(amount),
                deadline,
            )
            .await
            .unwrap();
        job
    }
}

fn job(n: u8) -> B256 {
    keccak256([n])
}

/// `s` is a stake of `amount` USDC base units from `requester` to `provider`, due at `deadline`.
#[track_caller]
fn assert_staked(s: &StakeInfo, requester: Address, provider: Address, amount: u64, deadline: u64) {
    assert_eq!(s.status, StakeStatus::Staked);
    assert_eq!(s.requester, requester);
    assert_eq!(s.provider, provider);
    assert_eq!(s.amount, U256::from(amount));
    assert_eq!(s.deadline, deadline);
}

/// The provider's AXL public key in these tests; every stake names its commitment.
const PROVIDER_KEY: [u8; 32] = [7; 32];

fn key_c() -> B256 {
    edgent::chain::key_commitment(&PROVIDER_KEY)
}

/// A real proof by edgent's prover for the output `[tag]` on job `j` under PROVIDER_KEY:
/// the output commitment `submit` takes, and the proof.
fn proved(j: B256, tag: u8) -> (B256, SnarkjsProof) {
    let (proof, _) = edgent::zk::prove(&[tag], &PROVIDER_KEY, &j.0).unwrap();
    let c = edgent::zk::commitments(&[tag], &PROVIDER_KEY, &j.0);
    (B256::from(c.output_commitment), proof)
}

/// `submit` of the output `[tag]` with its real proof.
async fn submit_proved(client: &EscrowClient, j: B256, tag: u8) -> Result<TxHash, EscrowError> {
    let (out, proof) = proved(j, tag);
    client.submit(j, out, &proof).await
}

#[tokio::test]
async fn stake_get_stake_and_direct_release_move_the_money() {
    let f = Fixture::new().await;
    let (req, prov) = (f.requester_addr(), f.provider_addr());
    let j = job(1);
    let deadline = f.now().await + 600;
    let nonce_before = f.nonce(req).await;
    f.requester
        .stake(j, prov, key_c(), U256::from(5 * USDC), deadline)
        .await
        .unwrap();
    // approve + stake: two transactions when the allowance was zero.
    assert_eq!(f.nonce(req).await, nonce_before + 2);

    let s = f.requester.get_stake(j).await.unwrap();
    assert_staked(&s, req, prov, 5 * USDC, deadline);
    assert_eq!(f.balance(req).await, U256::from(95 * USDC));
    assert_eq!(f.balance(f.deployment.escrow).await, U256::from(5 * USDC));

    let (out, proof) = proved(j, 0xab);
    f.provider.submit(j, out, &proof).await.unwrap();
    let s = f.requester.get_stake(j).await.unwrap();
    assert_eq!(s.status, StakeStatus::Submitted);
    assert_eq!(s.output_hash, out);

    let settler = DirectSettler::new(f.operator.clone());
    let done = settler.release(j, out).await.unwrap();
    assert_eq!(done.status, StakeStatus::Released);
    let tx = done.tx_hash.expect("a release transaction");
    assert!(done.explorer_url.unwrap().ends_with(&format!("/tx/{tx}")));
    assert_eq!(f.balance(prov).await, U256::from(6 * USDC));
    assert_eq!(f.balance(f.deployment.escrow).await, U256::ZERO);

    // Idempotent: a second release sends nothing and reports the existing state.
    let op = f.operator.wallet_address().unwrap();
    let op_nonce = f.nonce(op).await;
    let again = settler.release(j, out).await.unwrap();
    assert!(!again.sent);
    assert_eq!(
        again.tx_hash,
        Some(tx),
        "the earlier release, found in the events"
    );
    assert_eq!(again.status, StakeStatus::Released);
    assert_eq!(f.nonce(op).await, op_nonce);
    assert_eq!(f.balance(prov).await, U256::from(6 * USDC));
}

#[tokio::test]
async fn approve_is_skipped_when_the_allowance_covers_the_stake() {
    let f = Fixture::new().await;
    let req = f.requester_addr();
    // Approve more than the stake by hand, then stake.
    approve_escrow(&f.chain, &f.deployment, 2, U256::from(50 * USDC)).await;
    let before = f.nonce(req).await;
    f.stake(job(2), 3 * USDC).await;
    assert_eq!(f.nonce(req).await, before + 1, "stake only, no approve");
    assert_eq!(
        f.requester.allowance(req).await.unwrap(),
        U256::from(47 * USDC)
    );
}

#[tokio::test]
async fn every_refusal_decodes_to_its_typed_error() {
    let f = Fixture::new().await;
    let (req, prov) = (f.requester_addr(), f.provider_addr());
    let now = f.now().await;
    let (out, proof) = proved(job(11), 7);

    // stake refusals
    let e = f
        .requester
        .stake(
            job(10),
            prov,
            key_c(),
            U256::from(USDC),
            now.saturating_sub(1),
        )
        .await
        .unwrap_err();
    assert!(matches!(refusal(e), EscrowRevert::DeadlinePassed { .. }));
    let e = f
        .requester
        .stake(job(10), prov, key_c(), U256::ZERO, now + 600)
        .await
        .unwrap_err();
    assert_eq!(refusal(e), EscrowRevert::ZeroAmount);
    let e = f
        .requester
        .stake(job(10), Address::ZERO, key_c(), U256::from(USDC), now + 600)
        .await
        .unwrap_err();
    assert_eq!(refusal(e), EscrowRevert::ZeroAddress);
    let e = f
        .requester
        .stake(job(10), prov, key_c(), U256::from(1000 * USDC), now + 600)
        .await
        .unwrap_err();
    assert_eq!(
        refusal(e),
        EscrowRevert::InsufficientBalance {
            balance: U256::from(100 * USDC),
            needed: U256::from(1000 * USDC)
        }
    );
    // The contract's own allowance check, called without the client's approve.
    let raw = edgent::chain::http_provider(&f.settings.rpc_url, Some(f.chain.signer(2))).unwrap();
    let e = EdgentEscrow::new(f.deployment.escrow, &raw)
        .stake(job(10), prov, key_c(), U256::from(USDC), now + 600)
        .send()
        .await
        .map(|_| ())
        .map_err(EscrowError::from_contract)
        .unwrap_err();
    assert_eq!(
        refusal(e),
        EscrowRevert::InsufficientAllowance {
            allowance: U256::ZERO,
            needed: U256::from(USDC)
        }
    );

    // None of the refused stakes above spent gas on an approve.
    assert_eq!(f.requester.allowance(req).await.unwrap(), U256::ZERO);

    let j = f.stake(job(11), USDC).await;
    let e = f
        .requester
        .stake(j, prov, key_c(), U256::from(USDC), now + 600)
        .await
        .unwrap_err();
    assert_eq!(refusal(e), EscrowRevert::JobExists { job_id: j });
    // The contract says the same when asked directly.
    let e = EdgentEscrow::new(f.deployment.escrow, &raw)
        .stake(j, prov, key_c(), U256::from(USDC), now + 600)
        .send()
        .await
        .map(|_| ())
        .map_err(EscrowError::from_contract)
        .unwrap_err();
    assert_eq!(refusal(e), EscrowRevert::JobExists { job_id: j });

    // role refusals
    let e = f.requester.release(j, out).await.unwrap_err();
    assert_eq!(refusal(e), EscrowRevert::NotOperator { caller: req });
    let e = f.requester.reject(j).await.unwrap_err();
    assert_eq!(refusal(e), EscrowRevert::NotOperator { caller: req });
    let e = f.requester.submit(j, out, &proof).await.unwrap_err();
    assert_eq!(refusal(e), EscrowRevert::NotProvider { caller: req });
    let e = f.provider.refund(j).await.unwrap_err();
    assert_eq!(refusal(e), EscrowRevert::NotRequester { caller: prov });
    let e = f.requester.claim_timeout(j).await.unwrap_err();
    assert_eq!(refusal(e), EscrowRevert::NotProvider { caller: req });

    // state and time refusals
    let e = f.requester.refund(j).await.unwrap_err();
    assert!(matches!(refusal(e), EscrowRevert::DeadlineNotPassed { .. }));
    let e = f.provider.claim_timeout(j).await.unwrap_err();
    assert_eq!(
        refusal(e),
        EscrowRevert::WrongStatus {
            job_id: j,
            status: StakeStatus::Staked
        }
    );
    let e = f.provider.submit(job(99), out, &proof).await.unwrap_err();
    assert_eq!(refusal(e), EscrowRevert::UnknownJob { job_id: job(99) });

    f.provider.submit(j, out, &proof).await.unwrap();
    let e = f.provider.claim_timeout(j).await.unwrap_err();
    assert!(matches!(refusal(e), EscrowRevert::ClaimTooEarly { .. }));
    let e = f.provider.submit(j, out, &proof).await.unwrap_err();
    assert_eq!(
        refusal(e),
        EscrowRevert::WrongStatus {
            job_id: j,
            status: StakeStatus::Submitted
        }
    );
    let other = B256::repeat_byte(8);
    let e = f.operator.release(j, other).await.unwrap_err();
    assert_eq!(
        refusal(e),
        EscrowRevert::OutputMismatch {
            expected: out,
            got: other
        }
    );
    // The settler sees the mismatch before sending anything.
    let settler = DirectSettler::new(f.operator.clone());
    assert!(matches!(
        settler.release(j, other).await.unwrap_err(),
        SettleError::Refused(EscrowRevert::OutputMismatch { .. })
    ));

    // submit after the deadline
    let j2 = f.stake(job(12), USDC).await;
    f.chain.advance_time(601).await.unwrap();
    let e = f.provider.submit(j2, out, &proof).await.unwrap_err();
    assert!(matches!(refusal(e), EscrowRevert::DeadlinePassed { .. }));
    // Every error message is readable text, not a hex blob.
    let msg = f
        .provider
        .submit(j2, out, &proof)
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("deadline"), "{msg}");
}

/// The escrow verifies the Groth16 proof at `submit` against the job id, the key commitment
/// the stake names and the submitted output commitment: a proof made by edgent's prover for
/// any other job, key or output is refused, and the stake stays refundable.
#[tokio::test]
async fn submit_verifies_the_proof_on_chain() {
    let f = Fixture::new().await;
    let j = f.stake(job(13), USDC).await;
    let (out, proof) = proved(j, 1);

    // A proof for another job.
    let (_, other_job_proof) = proved(job(14), 1);
    let e = f
        .provider
        .submit(j, out, &other_job_proof)
        .await
        .unwrap_err();
    assert_eq!(refusal(e), EscrowRevert::InvalidProof { job_id: j });
    // A proof for another output, and this proof claimed for another output.
    let (other_out, other_out_proof) = proved(j, 2);
    let e = f
        .provider
        .submit(j, out, &other_out_proof)
        .await
        .unwrap_err();
    assert_eq!(refusal(e), EscrowRevert::InvalidProof { job_id: j });
    let e = f.provider.submit(j, other_out, &proof).await.unwrap_err();
    assert_eq!(refusal(e), EscrowRevert::InvalidProof { job_id: j });
    // A proof under another provider key.
    let (other_key_proof, _) = edgent::zk::prove(&[1], &[8; 32], &j.0).unwrap();
    let e = f
        .provider
        .submit(j, out, &other_key_proof)
        .await
        .unwrap_err();
    assert_eq!(refusal(e), EscrowRevert::InvalidProof { job_id: j });
    // A stake naming another key refuses this provider's own proof.
    let deadline = f.now().await + 600;
    let j2 = job(15);
    f.requester
        .stake(
            j2,
            f.provider_addr(),
            edgent::chain::key_commitment(&[8; 32]),
            U256::from(USDC),
            deadline,
        )
        .await
        .unwrap();
    let (out2, proof2) = proved(j2, 1);
    let e = f.provider.submit(j2, out2, &proof2).await.unwrap_err();
    assert_eq!(refusal(e), EscrowRevert::InvalidProof { job_id: j2 });
    assert_eq!(
        f.requester.get_stake(j).await.unwrap().status,
        StakeStatus::Staked
    );

    // The job's own proof goes through, and the stake keeps the key it named.
    let tx = f.provider.submit(j, out, &proof).await.unwrap();
    let s = f.requester.get_stake(j).await.unwrap();
    assert_eq!(s.status, StakeStatus::Submitted);
    assert_eq!(s.output_hash, out);
    assert_eq!(s.key_commitment, key_c());
    let receipt = f
        .chain
        .provider()
        .get_transaction_receipt(tx)
        .await
        .unwrap()
        .unwrap();
    println!(
        "submit with an on-chain Groth16 check: {} gas",
        receipt.gas_used
    );
    assert!(
        receipt.gas_used > 200_000,
        "the proof check ran: {}",
        receipt.gas_used
    );
}

#[tokio::test]
async fn refund_after_the_deadline_returns_the_stake() {
    let f = Fixture::new().await;
    let req = f.requester_addr();
    let j = f.stake(job(20), 4 * USDC).await;
    assert_eq!(f.balance(req).await, U256::from(96 * USDC));
    f.chain.advance_time(601).await.unwrap();
    let refund_tx = f.requester.refund(j).await.unwrap();
    assert_eq!(f.balance(req).await, U256::from(100 * USDC));
    assert_eq!(
        f.requester.get_stake(j).await.unwrap().status,
        StakeStatus::Refunded
    );
    // A refunded job cannot be released: the settler says so without a transaction.
    let settler = DirectSettler::new(f.operator.clone());
    assert!(matches!(
        settler.release(j, B256::ZERO).await.unwrap_err(),
        SettleError::Conflict {
            status: StakeStatus::Refunded,
            ..
        }
    ));
    // ...but rejecting it again is a no-op success.
    let r = settler.reject(j).await.unwrap();
    assert_eq!(
        (r.sent, r.tx_hash, r.status),
        (false, Some(refund_tx), StakeStatus::Refunded)
    );
}

#[tokio::test]
async fn claim_timeout_pays_the_provider_an_hour_after_submit() {
    let f = Fixture::new().await;
    let prov = f.provider_addr();
    let j = f.stake(job(30), 2 * USDC).await;
    submit_proved(&f.provider, j, 1).await.unwrap();
    f.chain.advance_time(3599).await.unwrap();
    let e = f.provider.claim_timeout(j).await.unwrap_err();
    assert!(matches!(refusal(e), EscrowRevert::ClaimTooEarly { .. }));
    f.chain.advance_time(2).await.unwrap();
    f.provider.claim_timeout(j).await.unwrap();
    assert_eq!(f.balance(prov).await, U256::from(3 * USDC));
    assert_eq!(
        f.requester.get_stake(j).await.unwrap().status,
        StakeStatus::Claimed
    );
}

#[tokio::test]
async fn direct_reject_refunds_the_requester_once() {
    let f = Fixture::new().await;
    let req = f.requester_addr();
    let j = f.stake(job(40), 10 * USDC).await;
    let settler = DirectSettler::new(f.operator.clone());
    let r = settler.reject(j).await.unwrap();
    assert_eq!(r.status, StakeStatus::Rejected);
    assert!(r.tx_hash.is_some());
    assert_eq!(f.balance(req).await, U256::from(100 * USDC));
    let again = settler.reject(j).await.unwrap();
    assert!(!again.sent);
    assert_eq!(again.tx_hash, r.tx_hash);
    assert!(matches!(
        settler.release(j, B256::ZERO).await.unwrap_err(),
        SettleError::Conflict {
            status: StakeStatus::Rejected,
            ..
        }
    ));
    assert!(matches!(
        settler.release(job(41), B256::ZERO).await.unwrap_err(),
        SettleError::NotStaked { .. }
    ));
}

#[tokio::test]
async fn connect_checks_chain_id_and_contract() {
    let f = Fixture::new().await;
    let mut wrong = f.settings.clone();
    wrong.chain_id = 84532;
    assert!(matches!(
        EscrowClient::connect(&wrong, None).await.unwrap_err(),
        ChainError::WrongChain {
            expected: 84532,
            actual: 31337
        }
    ));
    let mut empty = f.settings.clone();
    empty.escrow = Address::repeat_byte(0x42);
    assert!(matches!(
        EscrowClient::connect(&empty, None).await.unwrap_err(),
        ChainError::NoEscrow(_)
    ));
    // An endpoint that is down, or no URL at all, is a clear error, not a hang.
    let mut down = f.settings.clone();
    down.rpc_url = "http://127.0.0.1:1".into();
    assert!(matches!(
        EscrowClient::connect(&down, None).await.unwrap_err(),
        ChainError::Rpc(_)
    ));
    down.rpc_url = "not a url".into();
    assert!(matches!(
        EscrowClient::connect(&down, None).await.unwrap_err(),
        ChainError::BadUrl(_)
    ));
    // A read-only client refuses writes with a clear error.
    let ro = EscrowClient::connect(&f.settings, None).await.unwrap();
    assert!(matches!(
        ro.refund(job(1)).await.unwrap_err(),
        EscrowError::NoWallet
    ));
}

#[tokio::test]
async fn cli_deploys_an_escrow_and_shows_a_stake() {
    use edgent::chain::cli::{run, EscrowCmd};
    let f = Fixture::new().await;
    let j = f.stake(job(50), USDC).await;
    let mut settings = f.settings.clone();
    settings.wallet_key = Some(f.chain.key(5));
    let deployer = f.chain.signer(5).address();
    let before = f.nonce(deployer).await;
    run(
        EscrowCmd::Deploy {
            usdc: f.deployment.usdc,
            arbiter: f.deployment.operator,
            dispute_window: edgent::chain::DEFAULT_DISPUTE_WINDOW_SECS,
        },
        &settings,
    )
    .await
    .unwrap();
    assert_eq!(f.nonce(deployer).await, before + 1, "one deployment");
    // The escrow a deployer would get at that nonce now has code.
    let deployed = deployer.create(before);
    assert!(!f
        .chain
        .provider()
        .get_code_at(deployed)
        .await
        .unwrap()
        .is_empty());
    run(EscrowCmd::Show { job_id: j }, &f.settings)
        .await
        .unwrap();
    // Without a wallet key, deploy is a clear error naming the variable.
    let err = run(
        EscrowCmd::Deploy {
            usdc: f.deployment.usdc,
            arbiter: f.deployment.operator,
            dispute_window: edgent::chain::DEFAULT_DISPUTE_WINDOW_SECS,
        },
        &f.settings,
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("WALLET_PRIVATE_KEY"), "{err:#}");
}

#[tokio::test]
async fn the_escrow_reports_version_three() {
    let f = Fixture::new().await;
    assert_eq!(f.requester.version().await.unwrap(), 3);
    assert_eq!(edgent::chain::ESCROW_VERSION, 3);
}

#[tokio::test]
async fn decline_refunds_the_requester_in_the_same_transaction() {
    let f = Fixture::new().await;
    let (req, prov) = (f.requester_addr(), f.provider_addr());
    let j = f.stake(job(40), 4 * USDC).await;
    assert_eq!(f.balance(req).await, U256::from(96 * USDC));

    // Only the provider may decline.
    for who in [&f.requester, &f.operator] {
        let e = who.decline(j).await.unwrap_err();
        assert_eq!(
            refusal(e),
            EscrowRevert::NotProvider {
                caller: who.wallet_address().unwrap()
            }
        );
    }

    let tx = f.provider.decline(j).await.unwrap();
    let s = f.requester.get_stake(j).await.unwrap();
    assert_eq!(s.status, StakeStatus::Declined);
    assert!(s.status.is_final());
    assert_eq!(f.balance(req).await, U256::from(100 * USDC), "refunded");
    assert_eq!(f.balance(prov).await, U256::from(USDC), "provider unpaid");
    assert_eq!(f.balance(f.deployment.escrow).await, U256::ZERO);
    // The refund is the decline transaction's own token transfer (same block, same tx).
    let receipt = f
        .chain
        .provider()
        .get_transaction_receipt(tx)
        .await
        .unwrap()
        .unwrap();
    let usdc_transfer = receipt
        .inner
        .logs()
        .iter()
        .find(|l| l.address() == f.deployment.usdc)
        .expect("a USDC transfer in the decline transaction");
    assert_eq!(
        usdc_transfer.topics()[2],
        B256::left_padding_from(req.as_slice()),
        "to the requester"
    );
    // The settlement lookup finds it, and a second decline is refused.
    assert_eq!(f.requester.settlement_tx(j, 100).await.unwrap(), Some(tx));
    assert_eq!(
        refusal(f.provider.decline(j).await.unwrap_err()),
        EscrowRevert::WrongStatus {
            job_id: j,
            status: StakeStatus::Declined
        }
    );
    // After submit, decline is no longer possible.
    let j2 = f.stake(job(41), USDC).await;
    submit_proved(&f.provider, j2, 1).await.unwrap();
    assert_eq!(
        refusal(f.provider.decline(j2).await.unwrap_err()),
        EscrowRevert::WrongStatus {
            job_id: j2,
            status: StakeStatus::Submitted
        }
    );
}

/// A requester with USDC and no ETH: it signs, the provider submits.
#[tokio::test]
async fn a_requester_without_eth_stakes_through_the_providers_transaction() {
    let f = Fixture::new().await;
    let payer = alloy::signers::local::PrivateKeySigner::random();
    let who = payer.address();
    mint_usdc(&f.chain, &f.deployment, who, U256::from(10 * USDC)).await;
    let requester = EscrowClient::connect(&f.settings, Some(payer))
        .await
        .unwrap();
    let prov = f.provider_addr();
    let j = job(50);
    let deadline = f.now().await + 600;
    let auth = requester
        .sign_stake_authorization(j, prov, key_c(), U256::from(3 * USDC), deadline, deadline)
        .await
        .unwrap();
    // The nonce is the escrow's own stakeNonce of the terms.
    let on_chain = EdgentEscrow::new(f.deployment.escrow, f.chain.provider())
        .stakeNonce(j, who, prov, key_c(), U256::from(3 * USDC), deadline)
        .call()
        .await
        .unwrap();
    assert_eq!(auth.nonce(), on_chain);
    let domain = f.provider.token_domain().await.unwrap();
    assert_eq!(auth.signer(f.deployment.escrow, &domain), Some(who));

    // A submitter who changes any term is refused by the token (another signer recovers).
    for changed in [
        edgent::chain::StakeAuthorization {
            amount: U256::from(4 * USDC),
            ..auth.clone()
        },
        edgent::chain::StakeAuthorization {
            provider: f.requester_addr(),
            ..auth.clone()
        },
        edgent::chain::StakeAuthorization {
            deadline: deadline + 3600,
            ..auth.clone()
        },
        edgent::chain::StakeAuthorization {
            job_id: job(51),
            ..auth.clone()
        },
        edgent::chain::StakeAuthorization {
            key_commitment: edgent::chain::key_commitment(&[9; 32]),
            ..auth.clone()
        },
    ] {
        assert_ne!(changed.signer(f.deployment.escrow, &domain), Some(who));
        let e = f
            .provider
            .stake_with_authorization(&changed)
            .await
            .unwrap_err();
        assert!(
            matches!(refusal(e), EscrowRevert::Message(ref m) if m.contains("AuthorizationInvalidSigner")),
            "changed terms must be refused by the token"
        );
    }
    assert_eq!(f.balance(who).await, U256::from(10 * USDC), "nothing moved");

    f.provider.stake_with_authorization(&auth).await.unwrap();
    let s = f.provider.get_stake(j).await.unwrap();
    assert_staked(&s, who, prov, 3 * USDC, deadline);
    assert_eq!(f.balance(who).await, U256::from(7 * USDC));
    assert_eq!(f.balance(f.deployment.escrow).await, U256::from(3 * USDC));
    let eth = f.chain.provider().get_balance(who).await.unwrap();
    assert_eq!(eth, U256::ZERO, "the requester never needed ETH");
    assert_eq!(f.nonce(who).await, 0, "and never sent a transaction");

    // A replay is refused.
    assert_eq!(
        refusal(
            f.provider
                .stake_with_authorization(&auth)
                .await
                .unwrap_err()
        ),
        EscrowRevert::JobExists { job_id: j }
    );
    // The provider declines: the signer gets its money back at once.
    f.provider.decline(j).await.unwrap();
    assert_eq!(f.balance(who).await, U256::from(10 * USDC));
}

#[tokio::test]
async fn transactions_carry_a_quarter_gas_margin() {
    let f = Fixture::new().await;
    let j = f.stake(job(60), USDC).await;
    let tx = submit_proved(&f.provider, j, 2).await.unwrap();
    let p = f.chain.provider();
    let sent = p.get_transaction_by_hash(tx).await.unwrap().unwrap();
    let receipt = p.get_transaction_receipt(tx).await.unwrap().unwrap();
    use alloy::consensus::Transaction as _;
    let limit = sent.inner.gas_limit();
    // eth_estimateGas on anvil returns the gas used (+ a little): the limit is 5/4 of it.
    assert!(
        limit * 100 >= receipt.gas_used * 124,
        "gas limit {limit} for {} used",
        receipt.gas_used
    );
}

/// A transaction sent with the same key outside the client puts its cached nonce behind;
/// the client re-reads it from the node and the next stake still lands.
#[tokio::test]
async fn a_nonce_taken_elsewhere_is_recovered() {
    let f = Fixture::new().await;
    f.stake(job(70), USDC).await; // the lane now caches the next nonce
    approve_escrow(&f.chain, &f.deployment, 2, U256::MAX).await;
    f.stake(job(71), USDC).await;
    assert_eq!(
        f.requester.get_stake(job(71)).await.unwrap().status,
        StakeStatus::Staked
    );
    // A refusal at gas estimation costs no nonce: the next transaction lands right after.
    let e = submit_proved(&f.provider, job(99), 3).await.unwrap_err();
    assert_eq!(refusal(e), EscrowRevert::UnknownJob { job_id: job(99) });
    submit_proved(&f.provider, job(71), 3).await.unwrap();
    assert_eq!(
        f.requester.get_stake(job(71)).await.unwrap().status,
        StakeStatus::Submitted
    );
}
