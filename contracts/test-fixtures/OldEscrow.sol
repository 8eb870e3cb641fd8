// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title OldEscrow (TEST FIXTURE)
/// @notice The shape of the original project's escrow on Base Sepolia
///         (0x8633049775ef7952DD6C169865D426D7818Fd505): `stake` takes no deadline, and
///         there is no `submit`, `claimTimeout` or `refund`. edgent must recognise a
///         deployment like this at start and refuse it. Not for real money: no token moves.
contract OldEscrow {
    struct Stake {
        address requester;
        address provider;
        uint256 amount;
        bool released;
    }

    address public immutable usdc;
    address public immutable operator;
    mapping(bytes32 => Stake) private stakes;

    constructor(address usdc_, address operator_) {
        usdc = usdc_;
        operator = operator_;
    }

    function stake(bytes32 jobId, address provider, uint256 amount) external {
        require(stakes[jobId].requester == address(0), "exists");
        stakes[jobId] = Stake(msg.sender, provider, amount, false);
    }

    function release(bytes32 jobId, bytes32) external {
        require(msg.sender == operator, "operator");
        stakes[jobId].released = true;
    }

    function getStake(bytes32 jobId) external view returns (Stake memory) {
        return stakes[jobId];
    }
}
