//! The escrow client: the three ways to stake (approve + stake, and the requester's
//! EIP-3009 authorization that anyone, normally the provider, submits), getStake, submit,
//! release, reject, decline, claimTimeout, refund. Every write goes through the wallet's
//! [`TxLane`] (local nonces, no waiting on other transactions' receipts, a gas margin),
//! waits for its own receipt (bounded by `tx_timeout`) and returns a typed [`EscrowError`].

use std::fmt;
use std::sync::Arc;

use alloy::contract::SolCallBuilder;
use alloy::dyn_abi::Eip712Domain;
use alloy::primitives::{keccak256, Address, Signature, TxHash, B256, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use alloy::sol_types::{SolCall, SolStruct, SolValue};
use tokio::sync::{Mutex, OnceCell};

use super::bindings::{
    EdgentEscrow, IEip2612, IEip3009Token, Permit, ReceiveWithAuthorization, IERC20,
};
use super::error::{ChainError, EscrowError, EscrowRevert};
use super::rpc::{http_provider, TxLane};
use super::settings::ChainSettings;

/// The escrow interface version this client speaks (`version()` of EdgentEscrow v3: stakes
/// name the provider's key commitment and `submit` carries a Groth16 proof). The original
/// deployment has no `version()`: the call reverts there.
pub const ESCROW_VERSION: u64 = 3;

/// Where a stake is in its life. Every stake ends in exactly one of Released, Rejected,
/// Claimed, Refunded or Declined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StakeStatus {
    /// No stake for this job id.
    None,
    /// Funds locked, nothing submitted yet.
    Staked,
    /// The provider submitted an output hash (refund is no longer possible).
    Submitted,
    /// Paid to the provider by the operator.
    Released,
    /// Refunded to the requester by the operator (the proof failed).
    Rejected,
    /// Claimed by the provider after the claim delay.
    Claimed,
    /// Refunded to the requester after the deadline.
    Refunded,
    /// Refunded to the requester by the provider's `decline` (it could not serve).
    Declined,
    /// A value this client does not know (a newer contract?).
    Unknown(u8),
}

impl StakeStatus {
    /// Maps the contract's enum value.
    pub fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::None,
            1 => Self::Staked,
            2 => Self::Submitted,
            3 => Self::Released,
            4 => Self::Rejected,
            5 => Self::Claimed,
            6 => Self::Refunded,
            7 => Self::Declined,
            other => Self::Unknown(other),
        }
    }

    /// True once the funds have left the escrow.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Released | Self::Rejected | Self::Claimed | Self::Refunded | Self::Declined
        )
    }

    /// True while the funds are locked (Staked or Submitted).
    pub fn is_locked(self) -> bool {
        matches!(self, Self::Staked | Self::Submitted)
    }
}

impl fmt::Display for StakeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Staked => f.write_str("staked"),
            Self::Submitted => f.write_str("submitted"),
            Self::Released => f.write_str("released"),
            Self::Rejected => f.write_str("rejected"),
            Self::Claimed => f.write_str("claimed"),
            Self::Refunded => f.write_str("refunded"),
            Self::Declined => f.write_str("declined"),
            Self::Unknown(v) => write!(f, "unknown({v})"),
        }
    }
}

/// A stake as the escrow stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StakeInfo {
    /// Who staked.
    pub requester: Address,
    /// Who gets paid.
    pub provider: Address,
    /// Poseidon commitment to the provider's AXL key ([`key_commitment`]): `submit` needs a
    /// proof under it.
    pub key_commitment: B256,
    /// USDC base units (6 decimals).
    pub amount: U256,
    /// Block time of the stake, unix seconds.
    pub created_at: u64,
    /// Block time of `submit`, 0 if not submitted.
    pub submitted_at: u64,
    /// Deadline, unix seconds.
    pub deadline: u64,
    /// The output hash submitted or released (zero before).
    pub output_hash: B256,
    /// Current state.
    pub status: StakeStatus,
}

impl From<EdgentEscrow::Stake> for StakeInfo {
    fn from(s: EdgentEscrow::Stake) -> Self {
        Self {
            requester: s.requester,
            provider: s.provider,
            key_commitment: s.keyCommitment,
            amount: s.amount,
            created_at: s.createdAt,
            submitted_at: s.submittedAt,
            deadline: s.deadline,
            output_hash: s.outputHash,
            status: StakeStatus::from_u8(s.status),
        }
    }
}

/// The commitment a stake names for the provider with AXL public key `provider_key`: the
/// circuit's walletCommitment, `Poseidon(hi128, lo128)` of the key. The escrow checks the
/// provider's proof against it at `submit`.
pub fn key_commitment(provider_key: &[u8; 32]) -> B256 {
    B256::from(crate::zk::wallet_commitment(provider_key))
}

/// A proof as `EdgentEscrow.submit` takes it: `[a.x, a.y, b.x.c1, b.x.c0, b.y.c1, b.y.c0,
/// c.x, c.y]`, the order of `snarkjs zkey export soliditycalldata`.
pub fn proof_words(proof: &crate::zk::SnarkjsProof) -> [U256; 8] {
    proof.solidity_words().map(|w| U256::from_be_bytes(w))
}

/// The escrow's EIP-3009 nonce for a stake: `keccak256(abi.encode(jobId, requester,
/// provider, keyCommitment, amount, uint64 deadline))`, what `EdgentEscrow.stakeNonce`
/// computes. The requester signs it, so whoever submits the authorization cannot change
/// those terms.
pub fn stake_nonce(
    job_id: B256,
    requester: Address,
    provider: Address,
    key_commitment: B256,
    amount: U256,
    deadline: u64,
) -> B256 {
    keccak256(
        (
            job_id,
            requester,
            provider,
            key_commitment,
            amount,
            deadline,
        )
            .abi_encode_params(),
    )
}

/// A requester's signed EIP-3009 `ReceiveWithAuthorization` for one stake: the escrow
/// may pull `amount` from `requester` for `job_id`, payable to `provider`, refundable
/// after `deadline`, if submitted while `valid_after < now < valid_before`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StakeAuthorization {
    /// The job (the escrow's `bytes32`).
    pub job_id: B256,
    /// Who pays (the signer, EIP-3009's `from`).
    pub requester: Address,
    /// Who is paid.
    pub provider: Address,
    /// The provider's key commitment the stake names ([`key_commitment`]).
    pub key_commitment: B256,
    /// USDC base units.
    pub amount: U256,
    /// The stake's deadline, unix seconds.
    pub deadline: u64,
    /// EIP-3009 `validAfter`, unix seconds.
    pub valid_after: u64,
    /// EIP-3009 `validBefore`, unix seconds.
    pub valid_before: u64,
    /// The requester's signature (low-s, v 27/28 on the wire).
    pub signature: Signature,
}

impl StakeAuthorization {
    /// The EIP-3009 nonce the signature covers (see [`stake_nonce`]).
    pub fn nonce(&self) -> B256 {
        stake_nonce(
            self.job_id,
            self.requester,
            self.provider,
            self.key_commitment,
            self.amount,
            self.deadline,
        )
    }

    /// The typed message signed, for the escrow at `escrow`.
    pub fn message(&self, escrow: Address) -> ReceiveWithAuthorization {
        ReceiveWithAuthorization {
            from: self.requester,
            to: escrow,
            value: self.amount,
            validAfter: U256::from(self.valid_after),
            validBefore: U256::from(self.valid_before),
            nonce: self.nonce(),
        }
    }

    /// Who signed this authorization for `escrow` under the token's `domain` (a wrong
    /// term anywhere gives some other address, or an error for a malformed signature).
    pub fn signer(&self, escrow: Address, domain: &Eip712Domain) -> Option<Address> {
        let hash = self.message(escrow).eip712_signing_hash(domain);
        self.signature.recover_address_from_prehash(&hash).ok()
    }

    /// The 65-byte `r || s || v` signature with v 27 or 28, as the token expects.
    pub fn signature_bytes(&self) -> [u8; 65] {
        self.signature.as_bytes()
    }
}

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
        self.escrow
            .operator()
            .call()
            .await
            .map_err(EscrowError::from_contract)
    }

    /// USDC balance of `owner`, base units.
    pub async fn usdc_balance(&self, owner: Address) -> Result<U256, EscrowError> {
        IERC20::new(self.usdc, &self.provider)
            .balanceOf(owner)
            .call()
            .await
            .map_err(EscrowError::from_contract)
    }

    /// The escrow's USDC allowance from `owner`.
    pub async fn allowance(&self, owner: Address) -> Result<U256, EscrowError> {
        IERC20::new(self.usdc, &self.provider)
            .allowance(owner, self.escrow_address())
            .call()
            .await
            .map_err(EscrowError::from_contract)
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
        self.escrow
            .getStake(job_id)
            .call()
            .await
            .map(StakeInfo::from)
            .map_err(EscrowError::from_contract)
    }

    /// The transaction that moved `job_id` into a final state, found in the escrow's
    /// Released/Rejected/Claimed/Refunded/Declined events within the last `lookback_blocks`.
    /// `None` if no such event is in range.
    pub async fn settlement_tx(
        &self,
        job_id: B256,
        lookback_blocks: u64,
    ) -> Result<Option<TxHash>, EscrowError> {
        use alloy::sol_types::SolEvent;
        let latest = self
            .provider
            .get_block_number()
            .await
            .map_err(|e| EscrowError::Rpc(e.to_string()))?;
        let filter = alloy::rpc::types::Filter::new()
            .address(self.escrow_address())
            .event_signature(vec![
                EdgentEscrow::Released::SIGNATURE_HASH,
                EdgentEscrow::Rejected::SIGNATURE_HASH,
                EdgentEscrow::Claimed::SIGNATURE_HASH,
                EdgentEscrow::Refunded::SIGNATURE_HASH,
                EdgentEscrow::Declined::SIGNATURE_HASH,
            ])
            .topic1(job_id)
            .from_block(latest.saturating_sub(lookback_blocks))
            .to_block(latest);
        let logs = self
            .provider
            .get_logs(&filter)
            .await
            .map_err(|e| EscrowError::Rpc(e.to_string()))?;
        Ok(logs.last().and_then(|l| l.transaction_hash))
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
        let v = self
            .escrow
            .version()
            .call()
            .await
            .map_err(EscrowError::from_contract)?;
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
                    async { token.name().call().await.map_err(EscrowError::from_contract) },
                    async { token.version().call().await.map_err(EscrowError::from_contract) },
                    async {
                        token
                            .DOMAIN_SEPARATOR()
                            .call()
                            .await
                            .map_err(EscrowError::from_contract)
                    },
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

    /// Submits a requester's signed authorization as a stake (normally the provider, before
    /// any work): one transaction, paid by this wallet; the requester needs no ETH.
    pub async fn stake_with_authorization(
        &self,
        auth: &StakeAuthorization,
    ) -> Result<TxHash, EscrowError> {
        self.require_wallet()?;
        let sig = auth.signature_bytes();
        let escrow = EdgentEscrow::new(self.escrow_address(), &self.provider);
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
        let escrow = EdgentEscrow::new(self.escrow_address(), &self.provider);
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
        let nonce = IEip2612::new(self.usdc, &self.provider)
            .nonces(owner)
            .call()
            .await
            .map_err(EscrowError::from_contract)?;
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
        let escrow = EdgentEscrow::new(self.escrow_address(), &self.provider);
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
        let escrow = EdgentEscrow::new(self.escrow_address(), &self.provider);
        let tx = self
            .send(escrow.submit(job_id, output_hash, proof_words(proof)))
            .await?;
        tracing::info!(%job_id, %tx, %output_hash, "submitted output hash");
        Ok(tx)
    }

    /// Operator: pays the provider. Used by the direct settler.
    pub async fn release(&self, job_id: B256, output_hash: B256) -> Result<TxHash, EscrowError> {
        let escrow = EdgentEscrow::new(self.escrow_address(), &self.provider);
        let tx = self.send(escrow.release(job_id, output_hash)).await?;
        tracing::info!(%job_id, %tx, url = %self.tx_url(tx), "released");
        Ok(tx)
    }

    /// Operator: refunds the requester (the proof failed).
    pub async fn reject(&self, job_id: B256) -> Result<TxHash, EscrowError> {
        let escrow = EdgentEscrow::new(self.escrow_address(), &self.provider);
        let tx = self.send(escrow.reject(job_id)).await?;
        tracing::info!(%job_id, %tx, url = %self.tx_url(tx), "rejected");
        Ok(tx)
    }

    /// Provider: cannot serve a staked job; the requester is refunded in this transaction.
    pub async fn decline(&self, job_id: B256) -> Result<TxHash, EscrowError> {
        let escrow = EdgentEscrow::new(self.escrow_address(), &self.provider);
        let tx = self.send(escrow.decline(job_id)).await?;
        tracing::info!(%job_id, %tx, url = %self.tx_url(tx), "declined: the requester is refunded");
        Ok(tx)
    }

    /// Provider: takes the stake once the claim delay after `submit` has run out.
    pub async fn claim_timeout(&self, job_id: B256) -> Result<TxHash, EscrowError> {
        let escrow = EdgentEscrow::new(self.escrow_address(), &self.provider);
        let tx = self.send(escrow.claimTimeout(job_id)).await?;
        tracing::info!(%job_id, %tx, url = %self.tx_url(tx), "claimed after timeout");
        Ok(tx)
    }

    /// Requester: takes the stake back after the deadline when nothing was submitted.
    pub async fn refund(&self, job_id: B256) -> Result<TxHash, EscrowError> {
        let escrow = EdgentEscrow::new(self.escrow_address(), &self.provider);
        let tx = self.send(escrow.refund(job_id)).await?;
        tracing::info!(%job_id, %tx, url = %self.tx_url(tx), "refunded");
        Ok(tx)
    }
}
