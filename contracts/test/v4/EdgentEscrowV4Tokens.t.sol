// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "../utils/Test.sol";
import {FalseReturnToken, ReentrantToken} from "../utils/Tokens.sol";
import {EdgentEscrowV4} from "../../src/EdgentEscrowV4.sol";
import {TEST_KEY, TestProofs} from "../utils/AcceptAllVerifier.sol";
import {acceptAllV4} from "../utils/EscrowV4Fixture.sol";

/// @notice The version-4 escrow's new payouts (release by the requester, finalize by
///         anyone, resolve by the arbiter) against a token that re-enters and one that
///         returns false: each pays once, or rolls back and can be retried.
contract EdgentEscrowV4TokensTest is Test {
    uint256 internal constant AMOUNT = 1_000_000;
    bytes32 internal constant JOB = keccak256("job-1");
    bytes32 internal constant JOB2 = keccak256("job-2");
    bytes32 internal constant HASH = keccak256("out");
    uint64 internal constant DISPUTE = 60;

    address internal provider;
    address internal arbiter;

    function setUp() public {
        vm.warp(1_700_000_000);
        provider = makeAddr("provider");
        arbiter = makeAddr("arbiter");
    }

    /// @dev The token is the requester of two jobs, both submitted.
    function _reentrantSetup() internal returns (ReentrantToken token, EdgentEscrowV4 escrow) {
        token = new ReentrantToken();
        escrow = new EdgentEscrowV4(address(token), arbiter, DISPUTE);
        acceptAllV4(vm, escrow);
        token.mint(address(token), 2 * AMOUNT);
        vm.startPrank(address(token));
        token.approve(address(escrow), type(uint256).max);
        escrow.stake(JOB, provider, TEST_KEY, AMOUNT, uint64(block.timestamp + 600));
        escrow.stake(JOB2, provider, TEST_KEY, AMOUNT, uint64(block.timestamp + 600));
        vm.stopPrank();
        vm.startPrank(provider);
        escrow.submit(JOB, HASH, TestProofs.any());
        escrow.submit(JOB2, HASH, TestProofs.any());
        vm.stopPrank();
    }

    function test_reentrancy_releaseReenteringDisputeIsBlocked() public {
        (ReentrantToken token, EdgentEscrowV4 escrow) = _reentrantSetup();
        // While paying JOB, the token (JOB2's requester) tries to dispute JOB2.
        token.arm(address(escrow), abi.encodeCall(EdgentEscrowV4.dispute, (JOB2, HASH, HASH)), true);
        vm.prank(address(token));
        escrow.release(JOB, HASH);
        assertEq(token.hookRevertData(), abi.encodeWithSelector(EdgentEscrowV4.Reentrancy.selector), "guard");
        assertEq(uint256(escrow.getStake(JOB2).status), uint256(EdgentEscrowV4.Status.Submitted), "JOB2 untouched");
        assertEq(token.balanceOf(provider), AMOUNT, "JOB paid once");
    }

    function test_reentrancy_finalizeReenteringFinalizeSameJobPaysOnce() public {
        (ReentrantToken token, EdgentEscrowV4 escrow) = _reentrantSetup();
        vm.warp(block.timestamp + DISPUTE);
        token.arm(address(escrow), abi.encodeCall(EdgentEscrowV4.finalize, (JOB)), true);
        escrow.finalize(JOB);
        assertTrue(token.hookRan(), "token re-entered");
        assertFalse(token.hookSucceeded(), "re-entry failed");
        assertEq(token.hookRevertData(), abi.encodeWithSelector(EdgentEscrowV4.Reentrancy.selector), "guard");
        assertEq(token.balanceOf(provider), AMOUNT, "paid exactly once");
        assertEq(token.balanceOf(address(escrow)), AMOUNT, "JOB2 still held");
    }

    function test_falseReturnToken_finalizeRollsBackAndCanBeRetried() public {
        FalseReturnToken token = new FalseReturnToken();
        EdgentEscrowV4 escrow = new EdgentEscrowV4(address(token), arbiter, DISPUTE);
        acceptAllV4(vm, escrow);
        address requester = makeAddr("requester");
        token.mint(requester, AMOUNT);
        vm.startPrank(requester);
        token.approve(address(escrow), AMOUNT);
        escrow.stake(JOB, provider, TEST_KEY, AMOUNT, uint64(block.timestamp + 600));
        vm.stopPrank();
        vm.prank(provider);
        escrow.submit(JOB, HASH, TestProofs.any());
        vm.warp(block.timestamp + DISPUTE);
        token.setFailing(true);
        vm.expectRevert(EdgentEscrowV4.TransferFailed.selector);
        escrow.finalize(JOB);
        assertEq(uint256(escrow.getStake(JOB).status), uint256(EdgentEscrowV4.Status.Submitted), "rolled back");
        token.setFailing(false);
        escrow.finalize(JOB);
        assertEq(token.balanceOf(provider), AMOUNT, "paid once the token works");
    }
}
