//! Deploying an EdgentEscrow: `edgent escrow deploy` on a real chain, and the local chain of
//! the tests and `edgent demo` ([`crate::harness::anvil`]).

use alloy::primitives::Address;
use alloy::providers::DynProvider;

use super::bindings::{EdgentEscrow, EdgentEscrowV4};
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

/// Deploys version 4 of the escrow (the fair exchange) for `usdc`, with `arbiter` deciding
/// disputes and a dispute window of `dispute_window` seconds (30 to 86,400; the default is
/// [`super::fair_escrow::DEFAULT_DISPUTE_WINDOW_SECS`]), and returns its address.
pub async fn deploy_fair_escrow(
    provider: &DynProvider,
    usdc: Address,
    arbiter: Address,
    dispute_window: u64,
) -> Result<Address, EscrowError> {
    EdgentEscrowV4::deploy_builder(provider, usdc, arbiter, dispute_window)
        .deploy()
        .await
        .map_err(EscrowError::from_contract)
}
