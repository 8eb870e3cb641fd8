// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test, Vm} from "./Test.sol";
import {EdgentEscrowV4} from "../../src/EdgentEscrowV4.sol";
import {AcceptAllVerifier, TEST_KEY, TestProofs} from "./AcceptAllVerifier.sol";
import {MockUSDC} from "../../src/MockUSDC.sol";

/// @notice Replace a version-4 escrow's verifier with AcceptAllVerifier's code.
function acceptAllV4(Vm vm, EdgentEscrowV4 escrow) {
    vm.etch(address(escrow.verifier()), address(new AcceptAllVerifier()).code);
}

/// @notice Shared setup for the version-4 escrow: a MockUSDC, an escrow with a dedicated
///         arbiter and a DISPUTE-second window, and a funded requester who approved it.
abstract contract EscrowV4Fixture is Test {
    uint256 internal constant T0 = 1_700_000_000;
    uint256 internal constant FUNDS = 1_000_000e6; // 1M USDC
    uint256 internal constant AMOUNT = 2_500_000; // 2.5 USDC
    uint64 internal constant WINDOW = 10 minutes; // stake deadline - now
    uint64 internal constant DISPUTE = 180; // the deployment's dispute window
    bytes32 internal constant JOB = keccak256("job-1");
    bytes32 internal constant HASH = keccak256("output-commitment");
    bytes32 internal constant TASK = keccak256("signed task");
    bytes32 internal constant RESULT = keccak256("signed result");

    MockUSDC internal usdc;
    EdgentEscrowV4 internal escrow;
    address internal arbiter;
    address internal requester;
    address internal provider;
    address internal stranger;

    function setUp() public virtual {
        vm.warp(T0);
        arbiter = makeAddr("arbiter");
        requester = makeAddr("requester");
        provider = makeAddr("provider");
        stranger = makeAddr("stranger");
        usdc = new MockUSDC();
        escrow = new EdgentEscrowV4(address(usdc), arbiter, DISPUTE);
        acceptAllV4(vm, escrow);
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

    function _dispute(bytes32 jobId) internal {
        vm.prank(requester);
        escrow.dispute(jobId, TASK, RESULT);
    }

    function _status(bytes32 jobId) internal view returns (EdgentEscrowV4.Status) {
        return escrow.getStake(jobId).status;
    }

    function _assertStatus(bytes32 jobId, EdgentEscrowV4.Status want, string memory why) internal view {
        assertEq(uint256(_status(jobId)), uint256(want), why);
    }

    function _wrongStatus(bytes32 jobId, EdgentEscrowV4.Status s) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(EdgentEscrowV4.WrongStatus.selector, jobId, s);
    }
}
