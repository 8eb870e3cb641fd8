//! The escrow client: the three ways to stake (approve + stake, and the requester's
//! EIP-3009 authorization that anyone, normally the provider, submits), getStake, submit,
//! release, reject, decline, claimTimeout, refund. Every write goes through the wallet's
//! [`TxLane`] (local nonces, no waiting on other transactions' receipts, a gas margin),
//! waits for its own receipt (bounded by `tx_timeout`) and returns a typed [`EscrowError`].

use std::fmt;
use std::sync::Arc;

use alloy::contract::SolCallBuilder;
use alloy::dyn_abi::Eip712Domain;
use alloy::primitives::{Address, Signature, TxHash, B256, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{Filter, Log};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use alloy::sol_types::{SolCall, SolEvent, SolStruct};
use tokio::sync::{Mutex, OnceCell};

use super::bindings::{EdgentEscrow, IEip2612, IEip3009Token, Permit, IERC20};
use super::error::{ChainError, EscrowError, EscrowRevert};
use super::rpc::{http_provider, TxLane};
use super::settings::ChainSettings;
pub use super::stake::{
    key_commitment, proof_words, stake_nonce, StakeAuthorization, StakeInfo, StakeStatus,
};

/// The escrow interface version this client speaks (`version()` of EdgentEscrow v3: stakes
/// name the provider's key commitment and `submit` carries a Groth16 proof). The original
/// deployment has no `version()`: the call reverts there.
pub const ESCROW_VERSION: u64 = 3;

/// Client for one EdgentEscrow deployment, optionally signing with one wallet.
#[derive(Clone)]
pub struct EscrowClient {
    provider: DynProvider,
    escrow: EdgentEscrow::EdgentEscrowInstance<DynProvider>,
    usdc: Address,
    chain_id: u64,
    wallet: Option<Address>,
    signer: Option<PrivateKeySigner>,
    explorer_url: String,
    /// This wallet's transactions (local nonces; sends never wait for other receipts).
    lane: Option<TxLane>,
    /// Serialises allowance top-ups, so concurrent stakes never approve over each other.
    approve_lock: Arc<Mutex<()>>,
    /// The token's EIP-712 domain, read once.
    token_domain: Arc<OnceCell<Eip712Domain>>,
}

impl fmt::Debug for EscrowClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EscrowClient")
            .field("escrow", self.escrow.address())
            .field("usdc", &self.usdc)
            .field("wallet", &self.wallet)
            .finish()
    }
}

/// Calls the view `call` and decodes its answer; a revert is decoded into
/// [`EscrowError::Refused`] (the one way both escrow versions read the chain).
pub(super) async fn read<P: Provider, C: SolCall>(
    call: SolCallBuilder<P, C>,
) -> Result<C::Return, EscrowError> {
    call.call().await.map_err(EscrowError::from_contract)
}

impl EscrowClient {
    /// Connects to the escrow at `settings.escrow`, checking the chain id and that a
    /// contract is there. Signs writes with `signer` (None: read-only). The token is the
    /// escrow's own `usdc()`; a different `USDC_ADDRESS` is logged as a warning.
    pub async fn connect(
        settings: &ChainSettings,
        signer: Option<PrivateKeySigner>,
    ) -> Result<Self, ChainError> {
        let wallet = signer.as_ref().map(|s| s.address());
        let provider = http_provider(&settings.rpc_url, signer.clone())?;
        let actual = provider
            .get_chain_id()
            .await
            .map_err(|e| ChainError::Rpc(e.to_string()))?;
        if actual != settings.chain_id {
            return Err(ChainError::WrongChain {
                expected: settings.chain_id,
                actual,
            });
        }
        let code = provider
            .get_code_at(settings.escrow)
            .await
            .map_err(|e| ChainError::Rpc(e.to_string()))?;
        if code.is_empty() {
            return Err(ChainError::NoEscrow(settings.escrow));
        }
        let escrow = EdgentEscrow::new(settings.escrow, provider.clone());
        let usdc = escrow
            .usdc()
            .call()
            .await
            .map_err(|e| ChainError::Rpc(format!("escrow.usdc(): {e}")))?;
        if usdc != settings.usdc {
            tracing::warn!(configured = %settings.usdc, escrow_token = %usdc,
                "USDC_ADDRESS differs from the escrow's token; using the escrow's");
        }
        let lane = signer.clone().map(|s| {
            TxLane::new(
                provider.clone(),
                &settings.rpc_url,
                s,
                settings.chain_id,
                settings.tx_timeout,
            )
        });
        Ok(Self {
            provider,
            escrow,
            usdc,
            chain_id: settings.chain_id,
            wallet,
            signer,
            explorer_url: settings.explorer_url.clone(),
            lane,
            approve_lock: Arc::new(Mutex::new(())),
            token_domain: Arc::new(OnceCell::new()),
        })
    }

    /// The signing wallet's address, if any.
    pub fn wallet_address(&self) -> Option<Address> {
        self.wallet
    }

    /// How long this wallet's next transaction may take to be mined, from its recent ones
    /// (the longest of the last 16 waits for a receipt); `None` before the first, or
    /// without a wallet. A step that must land before a deadline is not sent with less
    /// time left.
    pub fn inclusion_estimate(&self) -> Option<std::time::Duration> {
        self.lane.as_ref().and_then(|l| l.inclusion_estimate())
    }

    /// The escrow contract's address.
    pub fn escrow_address(&self) -> Address {
        *self.escrow.address()
    }

    /// The escrow's USDC token.
    pub fn usdc_address(&self) -> Address {
        self.usdc
    }

    /// The underlying provider (for reads the client does not wrap).
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// The explorer link for a transaction.
    pub fn tx_url(&self, tx_hash: TxHash) -> String {
        format!("{}/tx/{tx_hash}", self.explorer_url.trim_end_matches('/'))
    }

    /// The escrow's operator (the only address that may release or reject).
    pub async fn operator(&self) -> Result<Address, EscrowError> {
        read(self.escrow.operator()).await
    }

    /// USDC balance of `owner`, base units.
    pub async fn usdc_balance(&self, owner: Address) -> Result<U256, EscrowError> {
        read(IERC20::new(self.usdc, &self.provider).balanceOf(owner)).await
    }

    /// Whether the token has used (or cancelled) EIP-3009 nonce `nonce` of `authorizer`:
    /// an authorization with a used nonce can never land.
    pub async fn authorization_used(
        &self,
        authorizer: Address,
        nonce: B256,
    ) -> Result<bool, EscrowError> {
        IEip3009Token::new(self.usdc, &self.provider)
            .authorizationState(authorizer, nonce)
            .call()
            .await
            .map_err(EscrowError::from_contract)
    }

    /// The escrow's USDC allowance from `owner`.
    pub async fn allowance(&self, owner: Address) -> Result<U256, EscrowError> {
        let token = IERC20::new(self.usdc, &self.provider);
        read(token.allowance(owner, self.escrow_address())).await
    }

    /// The latest block's timestamp (the clock deadlines are measured against).
    pub async fn chain_time(&self) -> Result<u64, EscrowError> {
        let block = self
            .provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(|e| EscrowError::Rpc(e.to_string()))?
            .ok_or_else(|| EscrowError::Rpc("latest block not found".into()))?;
        Ok(block.header.timestamp)
    }

    /// Reads the stake for `job_id` (status `None` if never staked).
    pub async fn get_stake(&self, job_id: B256) -> Result<StakeInfo, EscrowError> {
        read(self.escrow.getStake(job_id))
            .await
            .map(StakeInfo::from)
    }

    /// The transaction that moved `job_id` into a final state, found in the escrow's
    /// Released/Rejected/Claimed/Refunded/Declined events within the last `lookback_blocks`.
    /// `None` if no such event is in range.
    pub async fn settlement_tx(
        &self,
        job_id: B256,
        lookback_blocks: u64,
    ) -> Result<Option<TxHash>, EscrowError> {
        let ends = vec![
            EdgentEscrow::Released::SIGNATURE_HASH,
            EdgentEscrow::Rejected::SIGNATURE_HASH,
            EdgentEscrow::Claimed::SIGNATURE_HASH,
            EdgentEscrow::Refunded::SIGNATURE_HASH,
            EdgentEscrow::Declined::SIGNATURE_HASH,
        ];
        self.ended_by(job_id, lookback_blocks, ends).await
    }

    /// The transaction of the last of the events `ends` (their signature hashes) that names
    /// `job_id` within the last `lookback_blocks` (`None` if none is in range): both
    /// versions' settlement lookups.
    pub(super) async fn ended_by(
        &self,
        job_id: B256,
        lookback_blocks: u64,
        ends: Vec<B256>,
    ) -> Result<Option<TxHash>, EscrowError> {
        let filter = self
            .recent(lookback_blocks)
            .await?
            .event_signature(ends)
            .topic1(job_id);
        self.last_tx(&filter).await
    }

    /// The transaction of the last log `filter` matches (`None` if none does).
    async fn last_tx(&self, filter: &Filter) -> Result<Option<TxHash>, EscrowError> {
        let logs = self.logs(filter).await?;
        Ok(logs.last().and_then(|l| l.transaction_hash))
    }

    /// An event query on this escrow over the last `lookback_blocks`, ending at the latest
    /// block (both versions' event reads start here).
    pub(super) async fn recent(&self, lookback_blocks: u64) -> Result<Filter, EscrowError> {
        let latest = self
            .provider
            .get_block_number()
            .await
            .map_err(|e| EscrowError::Rpc(e.to_string()))?;
        Ok(Filter::new()
            .address(self.escrow_address())
            .from_block(latest.saturating_sub(lookback_blocks))
            .to_block(latest))
    }

    /// The logs `filter` matches.
    pub(super) async fn logs(&self, filter: &Filter) -> Result<Vec<Log>, EscrowError> {
        self.provider
            .get_logs(filter)
            .await
            .map_err(|e| EscrowError::Rpc(e.to_string()))
    }

    fn require_wallet(&self) -> Result<Address, EscrowError> {
        self.wallet.ok_or(EscrowError::NoWallet)
    }

    /// Sends `call` from this client's wallet and waits for its receipt.
    async fn send<P: Provider, C: SolCall>(
        &self,
        call: SolCallBuilder<P, C>,
    ) -> Result<TxHash, EscrowError> {
        let lane = self.lane.as_ref().ok_or(EscrowError::NoWallet)?;
        lane.send(call.into_transaction_request()).await
    }

    /// The escrow's interface version: [`ESCROW_VERSION`] for this repository's escrow. The
    /// original deployment has no `version()`, so this is a refusal there.
    pub async fn version(&self) -> Result<u64, EscrowError> {
        let v = read(self.escrow.version()).await?;
        Ok(u64::try_from(v).unwrap_or(u64::MAX))
    }

    /// The token's EIP-712 domain `{name(), version(), chainId, token}`, read once and
    /// checked against the token's own `DOMAIN_SEPARATOR()`. An error means the token
    /// cannot take EIP-3009 authorizations (use the approve + stake path).
    pub async fn token_domain(&self) -> Result<Eip712Domain, EscrowError> {
        self.token_domain
            .get_or_try_init(|| async {
                let token = IEip3009Token::new(self.usdc, &self.provider);
                let (name, version, separator) = tokio::try_join!(
                    read(token.name()),
                    read(token.version()),
                    read(token.DOMAIN_SEPARATOR()),
                )?;
                let domain = Eip712Domain::new(
                    Some(name.clone().into()),
                    Some(version.clone().into()),
                    Some(U256::from(self.chain_id)),
                    Some(self.usdc),
                    None,
                );
                if domain.separator() != separator {
                    return Err(EscrowError::Rpc(format!(
                        "the token's DOMAIN_SEPARATOR is not EIP-712 over name {name:?}, version {version:?}, chain {}, {:#x}",
                        self.chain_id, self.usdc
                    )));
                }
                Ok(domain)
            })
            .await
            .cloned()
    }

    /// Requester: signs the EIP-3009 authorization for a stake of `amount` on `job_id`,
    /// payable to `provider` (whose AXL key commits to `key_commitment`), refundable after
    /// `deadline`, usable until `valid_before`. Nothing is sent: whoever submits it
    /// ([`Self::stake_with_authorization`]) pays the gas.
    pub async fn sign_stake_authorization(
        &self,
        job_id: B256,
        provider: Address,
        key_commitment: B256,
        amount: U256,
        deadline: u64,
        valid_before: u64,
    ) -> Result<StakeAuthorization, EscrowError> {
        let signer = self.signer.as_ref().ok_or(EscrowError::NoWallet)?;
        if amount.is_zero() {
            return Err(EscrowRevert::ZeroAmount.into());
        }
        if provider == Address::ZERO {
            return Err(EscrowRevert::ZeroAddress.into());
        }
        let domain = self.token_domain().await?;
        let mut auth = StakeAuthorization {
            job_id,
            requester: signer.address(),
            provider,
            key_commitment,
            amount,
            deadline,
            valid_after: 0,
            valid_before,
            signature: Signature::new(U256::ZERO, U256::ZERO, false),
        };
        let hash = auth
            .message(self.escrow_address())
            .eip712_signing_hash(&domain);
        auth.signature = signer
            .sign_hash_sync(&hash)
            .map_err(|e| EscrowError::Rpc(format!("signing the authorization: {e}")))?;
        Ok(auth)
    }

    /// Requester: signs [`super::stake_binding_digest`] (EIP-191) for a stake this wallet
    /// sent itself, binding it to `requester_key`, the node that sends the task to the
    /// provider with AXL key `provider_key`. Returns `0x` + 130 hex.
    pub fn sign_stake_binding(
        &self,
        job_id: B256,
        provider_key: &[u8; 32],
        requester_key: &[u8; 32],
    ) -> Result<String, EscrowError> {
        let signer = self.signer.as_ref().ok_or(EscrowError::NoWallet)?;
        let digest = super::stake_binding_digest(
            self.chain_id,
            self.escrow_address(),
            job_id,
            provider_key,
            requester_key,
        );
        let sig = signer
            .sign_message_sync(digest.as_slice())
            .map_err(|e| EscrowError::Rpc(format!("signing the stake binding: {e}")))?;
        Ok(format!("0x{}", alloy::hex::encode(sig.as_bytes())))
    }

    /// Submits a requester's signed authorization as a stake (normally the provider, before
    /// any work): one transaction, paid by this wallet; the requester needs no ETH.
    pub async fn stake_with_authorization(
        &self,
        auth: &StakeAuthorization,
    ) -> Result<TxHash, EscrowError> {
        self.require_wallet()?;
        let sig = auth.signature_bytes();
        let escrow = &self.escrow;
        let tx = self
            .send(escrow.stakeWithAuthorization(
                auth.job_id,
                auth.requester,
                auth.provider,
                auth.key_commitment,
                auth.amount,
                auth.deadline,
                U256::from(auth.valid_after),
                U256::from(auth.valid_before),
                sig[64],
                B256::from_slice(&sig[..32]),
                B256::from_slice(&sig[32..64]),
            ))
            .await?;
        tracing::info!(job_id = %auth.job_id, %tx, requester = %auth.requester, amount = %auth.amount,
            deadline = auth.deadline, url = %self.tx_url(tx), "staked with the requester's authorization");
        Ok(tx)
    }

    /// Locks `amount` USDC for `job_id`, payable to `provider` (whose AXL key commits to
    /// `key_commitment`, see [`key_commitment`]), refundable after `deadline` (unix
    /// seconds, must be in the future). Approves the escrow first only
    /// when the allowance is short (then for good: `type(uint256).max`, so concurrent
    /// stakes never approve over each other); checks the balance before spending gas.
    pub async fn stake(
        &self,
        job_id: B256,
        provider: Address,
        key_commitment: B256,
        amount: U256,
        deadline: u64,
    ) -> Result<TxHash, EscrowError> {
        let owner = self.require_wallet()?;
        let allowance = self
            .stake_prechecks(
                owner,
                job_id,
                provider,
                amount,
                deadline,
                self.allowance(owner),
            )
            .await?;
        if allowance < amount {
            let _guard = self.approve_lock.lock().await;
            // Another stake may have approved while this one waited.
            if self.allowance(owner).await? < amount {
                let token = IERC20::new(self.usdc, &self.provider);
                let tx = self
                    .send(token.approve(self.escrow_address(), U256::MAX))
                    .await?;
                tracing::info!(%job_id, %tx, "approved the escrow to spend this wallet's USDC");
            }
        }
        let escrow = &self.escrow;
        let tx = self
            .send(escrow.stake(job_id, provider, key_commitment, amount, deadline))
            .await?;
        tracing::info!(%job_id, %tx, %provider, %amount, deadline, url = %self.tx_url(tx), "staked");
        Ok(tx)
    }

    /// Refuses, before any gas is spent, what the escrow would refuse of `owner`'s stake:
    /// a zero amount or provider, a deadline already passed, a job id in use, a balance
    /// short of `amount`. The chain reads go out together with `extra` (what the caller
    /// needs next: the allowance, the token's domain), one round trip for all; returns
    /// `extra`'s answer.
    async fn stake_prechecks<T>(
        &self,
        owner: Address,
        job_id: B256,
        provider: Address,
        amount: U256,
        deadline: u64,
        extra: impl std::future::Future<Output = Result<T, EscrowError>>,
    ) -> Result<T, EscrowError> {
        if amount.is_zero() {
            return Err(EscrowRevert::ZeroAmount.into());
        }
        if provider == Address::ZERO {
            return Err(EscrowRevert::ZeroAddress.into());
        }
        let (chain_now, existing, balance, extra) = tokio::try_join!(
            self.chain_time(),
            self.get_stake(job_id),
            self.usdc_balance(owner),
            extra
        )?;
        if deadline <= chain_now {
            return Err(EscrowRevert::DeadlinePassed { deadline }.into());
        }
        if existing.status != StakeStatus::None {
            return Err(EscrowRevert::JobExists { job_id }.into());
        }
        if balance < amount {
            return Err(EscrowRevert::InsufficientBalance {
                balance,
                needed: amount,
            }
            .into());
        }
        Ok(extra)
    }

    /// Locks `amount` USDC for `job_id` like [`Self::stake`], in one transaction and with no
    /// `approve`: `stakeWithPermit`, carrying an EIP-2612 `permit` for exactly `amount`
    /// signed here (valid until the stake's `deadline`). Each permit takes the token's next
    /// `nonces(owner)`, so this wallet's permit stakes are sent one after another (under the
    /// allowance lock); `stakeWithAuthorization` is the concurrent way.
    pub async fn stake_with_permit(
        &self,
        job_id: B256,
        provider: Address,
        key_commitment: B256,
        amount: U256,
        deadline: u64,
    ) -> Result<TxHash, EscrowError> {
        let owner = self.require_wallet()?;
        let signer = self.signer.as_ref().ok_or(EscrowError::NoWallet)?;
        let domain = self
            .stake_prechecks(
                owner,
                job_id,
                provider,
                amount,
                deadline,
                self.token_domain(),
            )
            .await?;
        let _guard = self.approve_lock.lock().await;
        let nonce = read(IEip2612::new(self.usdc, &self.provider).nonces(owner)).await?;
        let permit = Permit {
            owner,
            spender: self.escrow_address(),
            value: amount,
            nonce,
            deadline: U256::from(deadline),
        };
        let sig = signer
            .sign_hash_sync(&permit.eip712_signing_hash(&domain))
            .map_err(|e| EscrowError::Rpc(format!("signing the permit: {e}")))?
            .as_bytes();
        let escrow = &self.escrow;
        let tx = self
            .send(escrow.stakeWithPermit(
                job_id,
                provider,
                key_commitment,
                amount,
                deadline,
                U256::from(deadline),
                sig[64],
                B256::from_slice(&sig[..32]),
                B256::from_slice(&sig[32..64]),
            ))
            .await?;
        tracing::info!(%job_id, %tx, %provider, %amount, deadline, url = %self.tx_url(tx), "staked with a permit");
        Ok(tx)
    }

    /// Provider: records the output hash (the proof's outputCommitment) with the proof, which
    /// the escrow verifies against the job id, the stake's key commitment and `output_hash`
    /// (a mismatch is [`EscrowRevert::InvalidProof`]). Locks the stake against refund.
    pub async fn submit(
        &self,
        job_id: B256,
        output_hash: B256,
        proof: &crate::zk::SnarkjsProof,
    ) -> Result<TxHash, EscrowError> {
        let escrow = &self.escrow;
        let tx = self
            .send(escrow.submit(job_id, output_hash, proof_words(proof)))
            .await?;
        tracing::info!(%job_id, %tx, %output_hash, "submitted output hash");
        Ok(tx)
    }

    /// Operator: pays the provider. Used by the direct settler.
    pub async fn release(&self, job_id: B256, output_hash: B256) -> Result<TxHash, EscrowError> {
        let call = self.escrow.release(job_id, output_hash);
        self.send_for_job(job_id, call, "released").await
    }

    /// Operator: refunds the requester (the proof failed).
    pub async fn reject(&self, job_id: B256) -> Result<TxHash, EscrowError> {
        self.send_for_job(job_id, self.escrow.reject(job_id), "rejected")
            .await
    }

    /// Provider: cannot serve a staked job; the requester is refunded in this transaction.
    pub async fn decline(&self, job_id: B256) -> Result<TxHash, EscrowError> {
        let call = self.escrow.decline(job_id);
        self.send_for_job(job_id, call, "declined: the requester is refunded")
            .await
    }

    /// Provider: takes the stake once the claim delay after `submit` has run out.
    pub async fn claim_timeout(&self, job_id: B256) -> Result<TxHash, EscrowError> {
        let call = self.escrow.claimTimeout(job_id);
        self.send_for_job(job_id, call, "claimed after timeout")
            .await
    }

    /// Requester: takes the stake back after the deadline when nothing was submitted.
    pub async fn refund(&self, job_id: B256) -> Result<TxHash, EscrowError> {
        self.send_for_job(job_id, self.escrow.refund(job_id), "refunded")
            .await
    }

    /// Sends `call`, one of the writes that end a stake, and logs `done` with `job_id` and
    /// the transaction's explorer link.
    pub(super) async fn send_for_job<P: Provider, C: SolCall>(
        &self,
        job_id: B256,
        call: SolCallBuilder<P, C>,
        done: &str,
    ) -> Result<TxHash, EscrowError> {
        let tx = self.send(call).await?;
        tracing::info!(%job_id, %tx, url = %self.tx_url(tx), "{done}");
        Ok(tx)
    }
}
