//! A stake as the escrow stores it ([`StakeInfo`], [`StakeStatus`]), the commitments and
//! nonce it is made of, and the requester's signed EIP-3009 authorization to make one
//! ([`StakeAuthorization`]).

use alloy::dyn_abi::Eip712Domain;
use alloy::primitives::{keccak256, Address, Signature, B256, U256};
use alloy::sol_types::{SolStruct, SolValue};

use super::bindings::{EdgentEscrow, ReceiveWithAuthorization};

/// Where a stake is in its life. Every stake ends in exactly one of Released, Rejected,
/// Claimed, Refunded or Declined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::Display)]
#[strum(serialize_all = "lowercase")]
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
    #[strum(to_string = "unknown({0})")]
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

    /// The contract's enum value back (the inverse of [`Self::from_u8`]).
    pub fn as_u8(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Staked => 1,
            Self::Submitted => 2,
            Self::Released => 3,
            Self::Rejected => 4,
            Self::Claimed => 5,
            Self::Refunded => 6,
            Self::Declined => 7,
            Self::Unknown(v) => v,
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

/// Where a stake is in its life on version 4 of the escrow (the fair exchange). Every stake
/// ends in exactly one of Released, Finalized, ResolvedPaid, ResolvedRefunded, Refunded or
/// Declined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::Display)]
#[strum(serialize_all = "snake_case")]
pub enum FairStatus {
    /// No stake for this job id.
    None,
    /// Funds locked, nothing submitted yet.
    Staked,
    /// The provider submitted a proved output hash: the dispute window runs.
    Submitted,
    /// The requester disputed the submit within the window: the arbiter decides.
    Disputed,
    /// Paid to the provider by the requester's own `release`.
    Released,
    /// Paid to the provider by `finalize` after an undisputed window.
    Finalized,
    /// Paid to the provider by the arbiter's decision.
    ResolvedPaid,
    /// Refunded to the requester by the arbiter's decision.
    ResolvedRefunded,
    /// Refunded to the requester after the deadline (nothing submitted).
    Refunded,
    /// Refunded to the requester by the provider's `decline` (before any submit).
    Declined,
    /// A value this client does not know.
    #[strum(to_string = "unknown({0})")]
    Unknown(u8),
}

impl FairStatus {
    /// Maps the contract's enum value.
    pub fn from_u8(v: u8) -> Self {
        const ALL: [FairStatus; 10] = [
            FairStatus::None,
            FairStatus::Staked,
            FairStatus::Submitted,
            FairStatus::Disputed,
            FairStatus::Released,
            FairStatus::Finalized,
            FairStatus::ResolvedPaid,
            FairStatus::ResolvedRefunded,
            FairStatus::Refunded,
            FairStatus::Declined,
        ];
        ALL.get(usize::from(v)).copied().unwrap_or(Self::Unknown(v))
    }

    /// True once the funds have left the escrow.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Released
                | Self::Finalized
                | Self::ResolvedPaid
                | Self::ResolvedRefunded
                | Self::Refunded
                | Self::Declined
        )
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

/// A stake as version 4 of the escrow stores it: the same record as [`StakeInfo`], with
/// version 4's states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FairStake {
    /// The record, its `status` read as version 3's (do not use it: see `status` here).
    pub info: StakeInfo,
    /// Current state.
    pub status: FairStatus,
}

impl FairStake {
    /// Reads a record fetched through version 3's `getStake` binding (the same ABI) with
    /// version 4's states.
    pub fn from_shared(info: StakeInfo) -> Self {
        let status = FairStatus::from_u8(info.status.as_u8());
        Self { info, status }
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

/// What a requester that sent its stake itself (`approve`/`permit`) signs, EIP-191, to bind
/// the stake to the node that sends its task: `keccak256(abi.encode("edgent stake binding
/// v1", chainId, escrow, jobId, providerKey, requesterKey))`, the keys being the two nodes'
/// 32-byte AXL keys. A provider takes such a stake only from that node, and only when the
/// signature recovers to the stake's `requester` (docs/threat-model.md, rule 2).
pub fn stake_binding_digest(
    chain_id: u64,
    escrow: Address,
    job_id: B256,
    provider_key: &[u8; 32],
    requester_key: &[u8; 32],
) -> B256 {
    keccak256(
        (
            String::from("edgent stake binding v1"),
            U256::from(chain_id),
            escrow,
            job_id,
            B256::from(*provider_key),
            B256::from(*requester_key),
        )
            .abi_encode(),
    )
}

/// The wallet whose EIP-191 signature `signature` (`0x` + 130 hex) is over `digest`, or
/// `None` when it is malformed.
pub fn stake_binding_signer(digest: B256, signature: &str) -> Option<Address> {
    let bytes = alloy::hex::decode(signature.trim_start_matches("0x")).ok()?;
    let sig = Signature::from_raw(&bytes).ok()?;
    sig.recover_address_from_msg(digest.as_slice()).ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A binding recovers to its signer over its own terms only: another job, provider
    /// key or requester key gives another address.
    #[test]
    fn a_stake_binding_recovers_to_its_signer_for_its_terms_only() {
        use alloy::signers::SignerSync;
        let wallet = alloy::signers::local::PrivateKeySigner::random();
        let escrow = Address::repeat_byte(0xee);
        let job = B256::repeat_byte(7);
        let digest = stake_binding_digest(31337, escrow, job, &[1; 32], &[2; 32]);
        let sig = wallet.sign_message_sync(digest.as_slice()).unwrap();
        let hex = format!("0x{}", alloy::hex::encode(sig.as_bytes()));
        assert_eq!(stake_binding_signer(digest, &hex), Some(wallet.address()));
        for other in [
            stake_binding_digest(31337, escrow, B256::repeat_byte(8), &[1; 32], &[2; 32]),
            stake_binding_digest(31337, escrow, job, &[1; 32], &[3; 32]),
            stake_binding_digest(31337, escrow, job, &[4; 32], &[2; 32]),
            stake_binding_digest(1, escrow, job, &[1; 32], &[2; 32]),
        ] {
            assert_ne!(stake_binding_signer(other, &hex), Some(wallet.address()));
        }
        assert_eq!(stake_binding_signer(digest, "0x1234"), None);
    }

    /// Both versions' statuses print as the contracts name them (version 3's
    /// `StakeStatus`, version 4's `FairStatus`), an unknown value as `unknown(n)`.
    #[test]
    fn statuses_print_as_the_contract_names_them() {
        let v3: Vec<String> = (0..=8)
            .map(|v| StakeStatus::from_u8(v).to_string())
            .collect();
        let v4: Vec<String> = (0..=10)
            .map(|v| FairStatus::from_u8(v).to_string())
            .collect();
        let v3_names = [
            "none",
            "staked",
            "submitted",
            "released",
            "rejected",
            "claimed",
            "refunded",
            "declined",
            "unknown(8)",
        ];
        let v4_names = [
            "none",
            "staked",
            "submitted",
            "disputed",
            "released",
            "finalized",
            "resolved_paid",
            "resolved_refunded",
            "refunded",
            "declined",
            "unknown(10)",
        ];
        assert_eq!(v3, v3_names);
        assert_eq!(v4, v4_names);
        let finals = (0..=10)
            .filter(|&v| FairStatus::from_u8(v).is_final())
            .count();
        assert_eq!(finals, 6);
    }
}
