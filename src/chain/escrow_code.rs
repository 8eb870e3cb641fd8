//! Recognising this repository's escrow at `ESCROW_ADDRESS` before any money moves.
//!
//! The daemon reads the contract's runtime code (`eth_getCode`) and requires the selector
//! of every function in this repository's escrow ABI, version 4 (`EdgentEscrowV4`, the fair
//! exchange; the committed artifact the `sol!` bindings come from). solc's dispatcher pushes each public selector with a `PUSHn`
//! opcode, so a deployment of another ABI (the original project's, whose `stake` has no
//! deadline) lacks some of them and is refused with a message naming what is missing. This
//! needs no `version()` view, so it also recognises deployments made before one existed.

use alloy::primitives::{keccak256, Address};
use alloy::providers::{DynProvider, Provider};

use super::bindings::EdgentEscrowV4::EdgentEscrowV4Calls;

/// The original project's `stake`, without a deadline: the mark of the older ABI.
pub const OLD_STAKE_SIGNATURE: &str = "stake(bytes32,address,uint256)";

/// Version 2's `submit`, which takes no proof: the mark of this repository's previous escrow
/// (the chain never checks the provider's proof there).
pub const V2_SUBMIT_SIGNATURE: &str = "submit(bytes32,bytes32)";

/// Version 3's `reject`, by the operator after a submit: the mark of the escrow where the
/// requester's side judges its own case (it has no dispute window and no arbiter).
pub const V3_REJECT_SIGNATURE: &str = "reject(bytes32)";

/// Why the contract at `ESCROW_ADDRESS` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EscrowCodeError {
    /// Nothing is deployed there.
    #[error(
        "no contract at ESCROW_ADDRESS {0} on this chain (deploy one with `edgent escrow deploy`)"
    )]
    NoCode(Address),
    /// A contract is there, but not with this repository's escrow ABI.
    #[error(
        "ESCROW_ADDRESS {address} is not this repository's escrow (version 4){old}: its code lacks {missing}. \
         Deploy this repository's escrow with `edgent escrow deploy --usdc ADDR --arbiter ADDR` \
         and set ESCROW_ADDRESS to its address"
    )]
    WrongAbi {
        /// The address checked.
        address: Address,
        /// The missing functions' signatures, comma-separated.
        missing: String,
        /// `" (it is the original project's deployment, whose stake has no deadline)"` when
        /// the old `stake` is there, a note naming version 2 or 3 when their marks are
        /// there, else empty.
        old: &'static str,
    },
    /// The chain could not be asked.
    #[error("cannot read the code at ESCROW_ADDRESS {address}: {detail}")]
    Rpc {
        /// The address.
        address: Address,
        /// The RPC error.
        detail: String,
    },
}

impl EscrowCodeError {
    /// True when asking again later may succeed (the RPC failed), false when the contract
    /// itself is wrong.
    pub fn is_transient(&self) -> bool {
        matches!(self, EscrowCodeError::Rpc { .. })
    }
}

/// Whether `code` pushes `selector` the way solc's dispatcher does (`PUSHn` with the
/// selector's leading zero bytes dropped).
fn pushes_selector(code: &[u8], selector: [u8; 4]) -> bool {
    let skip = selector.iter().take_while(|b| **b == 0).count().min(3);
    let value = &selector[skip..];
    // PUSH1 is 0x60; PUSHn is 0x5f + n.
    let opcode = 0x5f + value.len() as u8;
    code.windows(value.len() + 1)
        .any(|w| w[0] == opcode && &w[1..] == value)
}

/// The 4-byte selector of a function signature.
pub fn selector_of(signature: &str) -> [u8; 4] {
    let h = keccak256(signature.as_bytes());
    [h[0], h[1], h[2], h[3]]
}

/// Check runtime `code` found at `address` against this repository's escrow ABI.
pub fn check_runtime_code(address: Address, code: &[u8]) -> Result<(), EscrowCodeError> {
    if code.is_empty() {
        return Err(EscrowCodeError::NoCode(address));
    }
    let missing: Vec<&str> = EdgentEscrowV4Calls::SELECTORS
        .iter()
        .zip(EdgentEscrowV4Calls::SIGNATURES)
        .filter(|(sel, _)| !pushes_selector(code, **sel))
        .map(|(_, sig)| *sig)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let old = if pushes_selector(code, selector_of(OLD_STAKE_SIGNATURE)) {
        " (it is the original project's deployment, whose stake has no deadline)"
    } else if pushes_selector(code, selector_of(V2_SUBMIT_SIGNATURE)) {
        " (it is this repository's previous escrow, version 2, whose submit takes no proof \
         and whose stakes name no provider key: the chain would not check the provider's proof)"
    } else if pushes_selector(code, selector_of(V3_REJECT_SIGNATURE)) {
        " (it is this repository's previous escrow, version 3, where the operator rejects after \
         a submit and every requester holds the operator's credential: it has no dispute window \
         and no arbiter)"
    } else {
        ""
    };
    Err(EscrowCodeError::WrongAbi {
        address,
        missing: missing.join(", "),
        old,
    })
}

/// Read the code at `address` and check it with [`check_runtime_code`].
pub async fn check_escrow(provider: &DynProvider, address: Address) -> Result<(), EscrowCodeError> {
    let code = provider
        .get_code_at(address)
        .await
        .map_err(|e| EscrowCodeError::Rpc {
            address,
            detail: e.to_string(),
        })?;
    check_runtime_code(address, &code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::hex;

    fn artifact_code(json: &str) -> Vec<u8> {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        hex::decode(v["deployedBytecode"]["object"].as_str().unwrap()).unwrap()
    }

    #[test]
    fn this_repositorys_escrow_passes() {
        let code = artifact_code(include_str!(
            "../../contracts/artifacts/EdgentEscrowV4.json"
        ));
        check_runtime_code(Address::ZERO, &code).unwrap();
    }

    /// Another contract is refused, not as a transient error, naming what its code lacks
    /// and what it is: version 3, the original project's, version 2, or none of them.
    #[test]
    fn other_code_is_refused_and_named() {
        type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a str]);
        let cases: [Case; 4] = [
            (
                include_str!("../../contracts/artifacts/EdgentEscrow.json"),
                &["finalize(bytes32)", "arbiter()", "version 3"],
                &["original project"],
            ),
            (
                include_str!("../../contracts/test-fixtures/artifacts/OldEscrow.json"),
                &[
                    "stake(bytes32,address,bytes32,uint256,uint64)",
                    "original project",
                ],
                &[],
            ),
            (
                include_str!("../../contracts/test-fixtures/artifacts/EdgentEscrowV2.json"),
                &[
                    "submit(bytes32,bytes32,uint256[8])",
                    "version 2",
                    "submit takes no proof",
                ],
                &["original project"],
            ),
            (
                include_str!("../../contracts/artifacts/MockUSDC.json"),
                &["getStake(bytes32)"],
                &["original project", "version 2"],
            ),
        ];
        for (artifact, named, unnamed) in cases {
            let e = check_runtime_code(Address::ZERO, &artifact_code(artifact)).unwrap_err();
            let text = e.to_string();
            for t in named {
                assert!(text.contains(t), "{t} not in {text}");
            }
            for t in unnamed {
                assert!(!text.contains(t), "{t} in {text}");
            }
            assert!(!e.is_transient());
        }
        assert!(matches!(
            check_runtime_code(Address::ZERO, &[]),
            Err(EscrowCodeError::NoCode(_))
        ));
    }

    #[test]
    fn selectors_with_leading_zeros_match_shorter_pushes() {
        // PUSH3 0xabcdef for selector 0x00abcdef.
        assert!(pushes_selector(
            &[0x00, 0x62, 0xab, 0xcd, 0xef],
            [0, 0xab, 0xcd, 0xef]
        ));
        assert!(!pushes_selector(
            &[0x63, 0xab, 0xcd, 0xef, 0x01],
            [0, 0xab, 0xcd, 0xef]
        ));
    }
}
