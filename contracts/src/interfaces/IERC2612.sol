// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IERC2612
/// @notice EIP-2612 `permit`: an allowance set by the owner's EIP-712 signature.
interface IERC2612 {
    /// @notice Sets `allowance[owner][spender] = value` if `owner` signed
    ///         Permit(owner, spender, value, nonces(owner), deadline) and now <= deadline.
    function permit(address owner, address spender, uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external;

    /// @notice The next permit nonce of `owner`.
    function nonces(address owner) external view returns (uint256);
}
