// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IERC3009
/// @notice The EIP-3009 call the escrow uses to pull a stake with the requester's
///         signed authorization (Circle's USDC implements it, as does MockUSDC).
interface IERC3009 {
    /// @notice Moves `value` from `from` to the caller (`to` must be msg.sender),
    ///         authorized by `from`'s EIP-712 signature over
    ///         ReceiveWithAuthorization(from, to, value, validAfter, validBefore, nonce).
    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external;

    /// @notice True once `nonce` of `authorizer` was used or cancelled.
    function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
}
