//! A wallet's balances: ETH for gas and USDC for stakes, read from the chain and formatted
//! with alloy's units (`edgent wallet`, `/status`, the dashboard).

use alloy::primitives::utils::format_units;
use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider};
use serde::Serialize;

use super::bindings::IERC20;
use super::error::ChainError;

/// USDC's decimals.
pub const USDC_DECIMALS: u8 = 6;

/// One wallet's balances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balances {
    /// The wallet.
    pub wallet: Address,
    /// Native balance, wei.
    pub eth_wei: U256,
    /// The token's balance, base units (6 decimals).
    pub usdc_units: U256,
}

/// [`Balances`] as shown to people: decimal strings next to the raw base units.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BalancesView {
    /// `0x` + 40 hex.
    pub wallet: String,
    /// ETH, e.g. `"0.010000000000000000"`.
    pub eth: String,
    /// USDC, e.g. `"100.000000"`.
    pub usdc: String,
    /// USDC base units, as a decimal string.
    pub usdc_units: String,
}

impl Balances {
    /// Decimal strings (alloy's `format_units`).
    pub fn view(&self) -> BalancesView {
        BalancesView {
            wallet: format!("{:#x}", self.wallet),
            eth: format_units(self.eth_wei, "ether").unwrap_or_else(|_| self.eth_wei.to_string()),
            usdc: format_units(self.usdc_units, USDC_DECIMALS)
                .unwrap_or_else(|_| self.usdc_units.to_string()),
            usdc_units: self.usdc_units.to_string(),
        }
    }
}

/// Read `wallet`'s ETH and `usdc` balances.
pub async fn balances(
    provider: &DynProvider,
    usdc: Address,
    wallet: Address,
) -> Result<Balances, ChainError> {
    let token = IERC20::new(usdc, provider);
    let balance_of = token.balanceOf(wallet);
    let (eth, token_units) = tokio::join!(provider.get_balance(wallet), balance_of.call());
    Ok(Balances {
        wallet,
        eth_wei: eth.map_err(|e| ChainError::Rpc(format!("eth_getBalance: {e}")))?,
        usdc_units: token_units.map_err(|e| ChainError::Rpc(format!("USDC balanceOf: {e}")))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_units() {
        let b = Balances {
            wallet: Address::ZERO,
            eth_wei: U256::from(10u64).pow(U256::from(16u64)),
            usdc_units: U256::from(100_500_000u64),
        };
        let v = b.view();
        assert_eq!(v.eth, "0.010000000000000000");
        assert_eq!(v.usdc, "100.500000");
        assert_eq!(v.usdc_units, "100500000");
    }
}
