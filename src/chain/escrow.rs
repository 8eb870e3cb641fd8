//! The escrow client: approve + stake, getStake, submit, release, reject, claimTimeout,
//! refund. Every write waits for its receipt (bounded by `tx_timeout`) and returns a
//! typed [`EscrowError`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, TxHash, B256, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::signers::local::PrivateKeySigner;
use tokio::sync::Mutex;

use super::bindings::{EdgentEscrow, IERC20};
use super::error::{ChainError, EscrowError, EscrowRevert};
use super::rpc::{http_provider, send_and_confirm};
use super::settings::ChainSettings;

/// Where a stake is in its life. Every stake ends in exactly one of Released, Rejected,
/// Claimed or Refunded.
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
            other => Self::Unknown(other),
        }
    }

    /// True once the funds have left the escrow.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Released | Self::Rejected | Self::Claimed | Self::Refunded
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
            amount: s.amount,
            created_at: s.createdAt,
            submitted_at: s.submittedAt,
            deadline: s.deadline,
            output_hash: s.outputHash,
            status: StakeStatus::from_u8(s.status),
        }
    }
}

/// Client for one EdgentEscrow deployment, optionally signing with one wallet.
#[derive(Clone)]
pub struct EscrowClient {
    provider: DynProvider,
    escrow: EdgentEscrow::EdgentEscrowInstance<DynProvider>,
    usdc: Address,
    wallet: Option<Address>,
    tx_timeout: Duration,
    explorer_url: String,
    /// Serialises this wallet's writes so nonces never race.
    send_lock: Arc<Mutex<()>>,
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
        let provider = http_provider(&settings.rpc_url, signer)?;
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
        Ok(Self {
            provider,
            escrow,
            usdc,
            wallet,
            tx_timeout: settings.tx_timeout,
            explorer_url: settings.explorer_url.clone(),
            send_lock: Arc::new(Mutex::new(())),
        })
    }

    /// The signing wallet's address, if any.
    pub fn wallet_address(&self) -> Option<Address> {
        self.wallet
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
    /// Released/Rejected/Claimed/Refunded events within the last `lookback_blocks`.
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

    /// Locks `amount` USDC for `job_id`, payable to `provider`, refundable after
    /// `deadline` (unix seconds, must be in the future). Approves the escrow first only
    /// when the allowance is short; checks the balance before spending gas.
    pub async fn stake(
        &self,
        job_id: B256,
        provider: Address,
        amount: U256,
        deadline: u64,
    ) -> Result<TxHash, EscrowError> {
        let owner = self.require_wallet()?;
        // Refuse what the escrow would refuse before spending gas on an approve.
        if amount.is_zero() {
            return Err(EscrowRevert::ZeroAmount.into());
        }
        if provider == Address::ZERO {
            return Err(EscrowRevert::ZeroAddress.into());
        }
        if deadline <= self.chain_time().await? {
            return Err(EscrowRevert::DeadlinePassed { deadline }.into());
        }
        let _guard = self.send_lock.lock().await;
        // Three independent reads: one round trip, not three, before the first transaction.
        let (existing, balance, allowance) = tokio::try_join!(
            self.get_stake(job_id),
            self.usdc_balance(owner),
            self.allowance(owner)
        )?;
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
        if allowance < amount {
            let token = IERC20::new(self.usdc, &self.provider);
            let tx = send_and_confirm(
                &self.provider,
                token.approve(self.escrow_address(), amount),
                self.tx_timeout,
            )
            .await?;
            tracing::info!(%job_id, %tx, %amount, "approved escrow to spend USDC");
        }
        let escrow = EdgentEscrow::new(self.escrow_address(), &self.provider);
        let tx = send_and_confirm(
            &self.provider,
            escrow.stake(job_id, provider, amount, deadline),
            self.tx_timeout,
        )
        .await?;
        tracing::info!(%job_id, %tx, %provider, %amount, deadline, url = %self.tx_url(tx), "staked");
        Ok(tx)
    }

    /// Provider: records the output hash, which locks the stake against refund.
    pub async fn submit(&self, job_id: B256, output_hash: B256) -> Result<TxHash, EscrowError> {
        self.require_wallet()?;
        let _guard = self.send_lock.lock().await;
        let escrow = EdgentEscrow::new(self.escrow_address(), &self.provider);
        let tx = send_and_confirm(
            &self.provider,
            escrow.submit(job_id, output_hash),
            self.tx_timeout,
        )
        .await?;
        tracing::info!(%job_id, %tx, %output_hash, "submitted output hash");
        Ok(tx)
    }

    /// Operator: pays the provider. Used by the direct settler.
    pub async fn release(&self, job_id: B256, output_hash: B256) -> Result<TxHash, EscrowError> {
        self.require_wallet()?;
        let _guard = self.send_lock.lock().await;
        let escrow = EdgentEscrow::new(self.escrow_address(), &self.provider);
        let tx = send_and_confirm(
            &self.provider,
            escrow.release(job_id, output_hash),
            self.tx_timeout,
        )
        .await?;
        tracing::info!(%job_id, %tx, url = %self.tx_url(tx), "released");
        Ok(tx)
    }

    /// Operator: refunds the requester (the proof failed).
    pub async fn reject(&self, job_id: B256) -> Result<TxHash, EscrowError> {
        self.require_wallet()?;
        let _guard = self.send_lock.lock().await;
        let escrow = EdgentEscrow::new(self.escrow_address(), &self.provider);
        let tx = send_and_confirm(&self.provider, escrow.reject(job_id), self.tx_timeout).await?;
        tracing::info!(%job_id, %tx, url = %self.tx_url(tx), "rejected");
        Ok(tx)
    }

    /// Provider: takes the stake once the claim delay after `submit` has run out.
    pub async fn claim_timeout(&self, job_id: B256) -> Result<TxHash, EscrowError> {
        self.require_wallet()?;
        let _guard = self.send_lock.lock().await;
        let escrow = EdgentEscrow::new(self.escrow_address(), &self.provider);
        let tx =
            send_and_confirm(&self.provider, escrow.claimTimeout(job_id), self.tx_timeout).await?;
        tracing::info!(%job_id, %tx, url = %self.tx_url(tx), "claimed after timeout");
        Ok(tx)
    }

    /// Requester: takes the stake back after the deadline when nothing was submitted.
    pub async fn refund(&self, job_id: B256) -> Result<TxHash, EscrowError> {
        self.require_wallet()?;
        let _guard = self.send_lock.lock().await;
        let escrow = EdgentEscrow::new(self.escrow_address(), &self.provider);
        let tx = send_and_confirm(&self.provider, escrow.refund(job_id), self.tx_timeout).await?;
        tracing::info!(%job_id, %tx, url = %self.tx_url(tx), "refunded");
        Ok(tx)
    }
}
