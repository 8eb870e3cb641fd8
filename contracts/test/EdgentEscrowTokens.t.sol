// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "./utils/Test.sol";
import {NoReturnToken, FalseReturnToken, FeeOnTransferToken, ReentrantToken} from "./utils/Tokens.sol";
import {EdgentEscrow} from "../src/EdgentEscrow.sol";
import {TEST_KEY, TestProofs} from "./utils/AcceptAllVerifier.sol";

/// @notice The escrow against misbehaving tokens: no return value, `false`
///         instead of a revert, fee-on-transfer, and a token that re-enters.
contract EdgentEscrowTokensTest is Test {
    uint256 internal constant AMOUNT = 1_000_000;
    bytes32 internal constant JOB = keccak256("job-1");
    bytes32 internal constant JOB2 = keccak256("job-2");
    bytes32 internal constant HASH = keccak256("out");

    address internal requester;
    address internal provider;
    address internal operator;

    function setUp() public {
        vm.warp(1_700_000_000);
        requester = makeAddr("requester");
        provider = makeAddr("provider");
        operator = makeAddr("operator");
    }

    function _deadline() internal view returns (uint64) {
        return uint64(block.timestamp + 600);
    }

    // ---------------------------------------------------------------- no return value

    function test_noReturnToken_stakeAndReleaseWork() public {
        NoReturnToken token = new NoReturnToken();
        EdgentEscrow escrow = new EdgentEscrow(address(token), operator);
        token.mint(requester, AMOUNT);
        vm.startPrank(requester);
        token.approve(address(escrow), AMOUNT);
        escrow.stake(JOB, provider, TEST_KEY, AMOUNT, _deadline());
        vm.stopPrank();
        assertEq(token.balanceOf(address(escrow)), AMOUNT, "escrow holds stake");
        vm.prank(operator);
        escrow.release(JOB, HASH);
        assertEq(token.balanceOf(provider), AMOUNT, "provider paid");
    }

    // ---------------------------------------------------------------- false instead of revert

    function test_falseReturnToken_stakeRevertsTransferFailed() public {
        FalseReturnToken token = new FalseReturnToken();
        EdgentEscrow escrow = new EdgentEscrow(address(token), operator);
        token.mint(requester, AMOUNT);
        vm.prank(requester);
        token.approve(address(escrow), AMOUNT);
        token.setFailing(true);
        uint64 deadline = _deadline();
        vm.prank(requester);
        vm.expectRevert(EdgentEscrow.TransferFailed.selector);
        escrow.stake(JOB, provider, TEST_KEY, AMOUNT, deadline);
        assertEq(uint256(escrow.getStake(JOB).status), 0, "no stake recorded");
    }

    function test_falseReturnToken_payoutRevertsAndStakeSurvives() public {
        FalseReturnToken token = new FalseReturnToken();
        EdgentEscrow escrow = new EdgentEscrow(address(token), operator);
        token.mint(requester, AMOUNT);
        vm.startPrank(requester);
        token.approve(address(escrow), AMOUNT);
        escrow.stake(JOB, provider, TEST_KEY, AMOUNT, _deadline());
        vm.stopPrank();
        token.setFailing(true);
        vm.prank(operator);
        vm.expectRevert(EdgentEscrow.TransferFailed.selector);
        escrow.release(JOB, HASH);
        // The failed payout rolled back: the job can still be settled.
        assertEq(uint256(escrow.getStake(JOB).status), uint256(EdgentEscrow.Status.Staked), "still staked");
        token.setFailing(false);
        vm.prank(operator);
        escrow.release(JOB, HASH);
        assertEq(token.balanceOf(provider), AMOUNT, "provider paid once the token works");
    }

    // ---------------------------------------------------------------- fee on transfer

    function test_feeOnTransferToken_stakeRevertsTransferFailed() public {
        FeeOnTransferToken token = new FeeOnTransferToken();
        EdgentEscrow escrow = new EdgentEscrow(address(token), operator);
        token.mint(requester, AMOUNT);
        vm.prank(requester);
        token.approve(address(escrow), AMOUNT);
        uint64 deadline = _deadline();
        vm.prank(requester);
        vm.expectRevert(EdgentEscrow.TransferFailed.selector);
        escrow.stake(JOB, provider, TEST_KEY, AMOUNT, deadline);
    }

    // ---------------------------------------------------------------- token without code

    function test_tokenWithoutCode_stakeReverts() public {
        EdgentEscrow escrow = new EdgentEscrow(makeAddr("not-a-contract"), operator);
        uint64 deadline = _deadline();
        vm.prank(requester);
        vm.expectRevert(); // allowance() on an address without code cannot be decoded
        escrow.stake(JOB, provider, TEST_KEY, AMOUNT, deadline);
    }

    // ---------------------------------------------------------------- re-entrancy

    /// @dev An escrow whose token (and operator) is the malicious contract, with
    ///      two jobs staked by `requester`, so re-entry from the token is authorised.
    function _reentrantSetup() internal returns (ReentrantToken token, EdgentEscrow escrow) {
        token = new ReentrantToken();
        escrow = new EdgentEscrow(address(token), address(token));
        token.mint(requester, 2 * AMOUNT);
        vm.startPrank(requester);
        token.approve(address(escrow), type(uint256).max);
        escrow.stake(JOB, provider, TEST_KEY, AMOUNT, _deadline());
        escrow.stake(JOB2, provider, TEST_KEY, AMOUNT, _deadline());
        vm.stopPrank();
    }

    function test_reentrancy_releaseReenteringReleaseReverts() public {
        (ReentrantToken token, EdgentEscrow escrow) = _reentrantSetup();
        token.arm(address(escrow), abi.encodeCall(EdgentEscrow.release, (JOB2, HASH)), false);
        vm.prank(address(token));
        vm.expectRevert(EdgentEscrow.Reentrancy.selector);
        escrow.release(JOB, HASH);
        assertEq(uint256(escrow.getStake(JOB).status), uint256(EdgentEscrow.Status.Staked), "JOB rolled back");
        assertEq(uint256(escrow.getStake(JOB2).status), uint256(EdgentEscrow.Status.Staked), "JOB2 untouched");
        assertEq(token.balanceOf(address(escrow)), 2 * AMOUNT, "nothing left the escrow");
    }

    function test_reentrancy_swallowedReentryCannotPayTwice() public {
        (ReentrantToken token, EdgentEscrow escrow) = _reentrantSetup();
        // Re-enter the same job from inside its own payout, and swallow the failure.
        token.arm(address(escrow), abi.encodeCall(EdgentEscrow.reject, (JOB)), true);
        vm.prank(address(token));
        escrow.release(JOB, HASH);
        assertTrue(token.hookRan(), "token re-entered");
        assertFalse(token.hookSucceeded(), "re-entry failed");
        assertEq(token.hookRevertData(), abi.encodeWithSelector(EdgentEscrow.Reentrancy.selector), "blocked by guard");
        assertEq(token.balanceOf(provider), AMOUNT, "provider paid exactly once");
        assertEq(token.balanceOf(requester), 0, "requester not also refunded");
        assertEq(token.balanceOf(address(escrow)), AMOUNT, "JOB2 still held");
        assertEq(uint256(escrow.getStake(JOB).status), uint256(EdgentEscrow.Status.Released), "JOB released");
    }

    function test_reentrancy_stakeReenteringStakeReverts() public {
        ReentrantToken token = new ReentrantToken();
        EdgentEscrow escrow = new EdgentEscrow(address(token), operator);
        token.mint(requester, AMOUNT);
        token.mint(address(token), AMOUNT);
        vm.prank(requester);
        token.approve(address(escrow), type(uint256).max);
        vm.prank(address(token));
        token.approve(address(escrow), type(uint256).max);
        uint64 deadline = _deadline();
        token.arm(
            address(escrow), abi.encodeCall(EdgentEscrow.stake, (JOB2, provider, TEST_KEY, AMOUNT, deadline)), false
        );
        vm.prank(requester);
        vm.expectRevert(EdgentEscrow.Reentrancy.selector);
        escrow.stake(JOB, provider, TEST_KEY, AMOUNT, deadline);
        assertEq(token.balanceOf(address(escrow)), 0, "nothing staked");
    }

    function test_reentrancy_refundReenteringRefundBlocked() public {
        ReentrantToken token = new ReentrantToken();
        EdgentEscrow escrow = new EdgentEscrow(address(token), operator);
        // The token itself is the requester of both jobs.
        token.mint(address(token), 2 * AMOUNT);
        vm.startPrank(address(token));
        token.approve(address(escrow), type(uint256).max);
        escrow.stake(JOB, provider, TEST_KEY, AMOUNT, _deadline());
        escrow.stake(JOB2, provider, TEST_KEY, AMOUNT, _deadline());
        vm.stopPrank();
        vm.warp(block.timestamp + 601);
        token.arm(address(escrow), abi.encodeCall(EdgentEscrow.refund, (JOB2)), true);
        vm.prank(address(token));
        escrow.refund(JOB);
        assertEq(token.hookRevertData(), abi.encodeWithSelector(EdgentEscrow.Reentrancy.selector), "blocked by guard");
        assertEq(uint256(escrow.getStake(JOB2).status), uint256(EdgentEscrow.Status.Staked), "JOB2 not refunded");
        assertEq(token.balanceOf(address(escrow)), AMOUNT, "JOB2 still held");
        // Once the outer call finished, the lock is released again.
        vm.prank(address(token));
        escrow.refund(JOB2);
        assertEq(token.balanceOf(address(token)), 2 * AMOUNT, "both refunded, each once");
    }
}
