//! Deploying an EdgentEscrow: `edgent escrow deploy` on a real chain, and the local chain of
//! the tests and `edgent demo` ([`crate::harness::anvil`]).

use alloy::primitives::Address;
use alloy::providers::DynProvider;

use super::bindings::EdgentEscrow;
use super::error::EscrowError;

/// Deploys an EdgentEscrow for `usdc` with `operator`, signed by the provider's wallet, and
/// returns its address. A revert decodes into [`EscrowError`].
pub async fn deploy_escrow(
    provider: &DynProvider,
    usdc: Address,
    operator: Address,
) -> Result<Address, EscrowError> {
    EdgentEscrow::deploy_builder(provider, usdc, operator)
        .deploy()
        .await
        .map_err(EscrowError::from_contract)
}
