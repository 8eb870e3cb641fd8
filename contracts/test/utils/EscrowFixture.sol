// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "./Test.sol";
import {EdgentEscrow} from "../../src/EdgentEscrow.sol";
import {TEST_KEY, TestProofs} from "./AcceptAllVerifier.sol";
import {MockUSDC} from "../../src/MockUSDC.sol";

/// @notice Shared setup: a MockUSDC, an escrow with a dedicated operator, and
///         a funded requester who has approved the escrow.
abstract contract EscrowFixture is Test {
    uint256 internal constant T0 = 1_700_000_000;
    uint256 internal constant FUNDS = 1_000_000e6; // 1M USDC
    uint256 internal constant AMOUNT = 2_500_000; // 2.5 USDC
    uint64 internal constant WINDOW = 10 minutes;
    bytes32 internal constant JOB = keccak256("job-1");
    bytes32 internal constant HASH = keccak256("output-commitment");

    MockUSDC internal usdc;
    EdgentEscrow internal escrow;
    address internal operator;
    address internal requester;
    address internal provider;
    address internal stranger;

    function setUp() public virtual {
        vm.warp(T0);
        operator = makeAddr("operator");
        requester = makeAddr("requester");
        provider = makeAddr("provider");
        stranger = makeAddr("stranger");
        usdc = new MockUSDC();
        escrow = new EdgentEscrow(address(usdc), operator);
        TestProofs.acceptAll(vm, escrow);
        usdc.mint(requester, FUNDS);
        vm.prank(requester);
        usdc.approve(address(escrow), type(uint256).max);
    }

    function _deadline() internal view returns (uint64) {
        return uint64(block.timestamp) + WINDOW;
    }

    function _stake(bytes32 jobId) internal returns (uint64 deadline) {
        deadline = _deadline();
        vm.prank(requester);
        escrow.stake(jobId, provider, TEST_KEY, AMOUNT, deadline);
    }

    function _submit(bytes32 jobId) internal {
        vm.prank(provider);
        escrow.submit(jobId, HASH, TestProofs.any());
    }

    function _status(bytes32 jobId) internal view returns (EdgentEscrow.Status) {
        return escrow.getStake(jobId).status;
    }

    function _wrongStatus(bytes32 jobId, EdgentEscrow.Status s) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(EdgentEscrow.WrongStatus.selector, jobId, s);
    }
}
