// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EscrowFixture} from "./utils/EscrowFixture.sol";
import {EdgentEscrow} from "../src/EdgentEscrow.sol";
import {TEST_KEY, TestProofs} from "./utils/AcceptAllVerifier.sol";

/// @notice The edges of every time window, one second either side:
///         stake needs deadline > now; submit needs now <= deadline;
///         refund needs now > deadline; claimTimeout needs now >= submittedAt + 3600.
contract EdgentEscrowTimingTest is EscrowFixture {
    // ---------------------------------------------------------------- stake deadline

    function test_stake_deadlineOneSecondAgoReverts() public {
        uint64 deadline = uint64(block.timestamp - 1);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.DeadlinePassed.selector, deadline));
        escrow.stake(JOB, provider, TEST_KEY, AMOUNT, deadline);
    }

    function test_stake_deadlineNowReverts() public {
        uint64 deadline = uint64(block.timestamp);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.DeadlinePassed.selector, deadline));
        escrow.stake(JOB, provider, TEST_KEY, AMOUNT, deadline);
    }

    function test_stake_deadlineOneSecondAheadAccepted() public {
        uint64 deadline = uint64(block.timestamp + 1);
        vm.prank(requester);
        escrow.stake(JOB, provider, TEST_KEY, AMOUNT, deadline);
        assertEq(uint256(escrow.getStake(JOB).deadline), uint256(deadline), "deadline stored");
    }

    // ---------------------------------------------------------------- submit deadline

    function test_submit_oneSecondBeforeDeadline() public {
        uint64 deadline = _stake(JOB);
        vm.warp(uint256(deadline) - 1);
        _submit(JOB);
        assertEq(uint256(_status(JOB)), uint256(EdgentEscrow.Status.Submitted), "submitted");
    }

    function test_submit_atDeadline() public {
        uint64 deadline = _stake(JOB);
        vm.warp(uint256(deadline));
        _submit(JOB);
        assertEq(uint256(escrow.getStake(JOB).submittedAt), uint256(deadline), "submitted at the deadline");
    }

    function test_submit_oneSecondAfterDeadlineReverts() public {
        uint64 deadline = _stake(JOB);
        vm.warp(uint256(deadline) + 1);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.DeadlinePassed.selector, deadline));
        escrow.submit(JOB, HASH, TestProofs.any());
    }

    // ---------------------------------------------------------------- refund after deadline

    function test_refund_oneSecondBeforeDeadlineReverts() public {
        uint64 deadline = _stake(JOB);
        vm.warp(uint256(deadline) - 1);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.DeadlineNotPassed.selector, deadline));
        escrow.refund(JOB);
    }

    function test_refund_atDeadlineReverts() public {
        uint64 deadline = _stake(JOB);
        vm.warp(uint256(deadline));
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.DeadlineNotPassed.selector, deadline));
        escrow.refund(JOB);
    }

    function test_refund_oneSecondAfterDeadline() public {
        uint64 deadline = _stake(JOB);
        vm.warp(uint256(deadline) + 1);
        vm.prank(requester);
        escrow.refund(JOB);
        assertEq(usdc.balanceOf(requester), FUNDS, "refunded");
    }

    /// @dev At the deadline second both the provider (submit) and nobody else
    ///      can act; one second later only the requester can. There is no
    ///      second in which both submit and refund are possible.
    function test_submitAndRefundWindowsDoNotOverlap() public {
        uint64 deadline = _stake(JOB);
        vm.warp(uint256(deadline));
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.DeadlineNotPassed.selector, deadline));
        escrow.refund(JOB);
        vm.warp(uint256(deadline) + 1);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.DeadlinePassed.selector, deadline));
        escrow.submit(JOB, HASH, TestProofs.any());
    }

    // ---------------------------------------------------------------- claimTimeout window

    function _submittedAt() internal returns (uint256 submittedAt) {
        _stake(JOB);
        vm.warp(T0 + 77);
        _submit(JOB);
        submittedAt = T0 + 77;
    }

    function test_claimTimeout_oneSecondEarlyReverts() public {
        uint256 submittedAt = _submittedAt();
        vm.warp(submittedAt + 3599);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.ClaimTooEarly.selector, uint64(submittedAt + 3600)));
        escrow.claimTimeout(JOB);
    }

    function test_claimTimeout_exactlyOneHour() public {
        uint256 submittedAt = _submittedAt();
        vm.warp(submittedAt + 3600);
        vm.prank(provider);
        escrow.claimTimeout(JOB);
        assertEq(usdc.balanceOf(provider), AMOUNT, "claimed at submittedAt + 3600");
    }

    function test_claimTimeout_oneSecondLate() public {
        uint256 submittedAt = _submittedAt();
        vm.warp(submittedAt + 3601);
        vm.prank(provider);
        escrow.claimTimeout(JOB);
        assertEq(usdc.balanceOf(provider), AMOUNT, "claimed at submittedAt + 3601");
    }

    function test_claimTimeout_immediatelyAfterSubmitReverts() public {
        uint256 submittedAt = _submittedAt();
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.ClaimTooEarly.selector, uint64(submittedAt + 3600)));
        escrow.claimTimeout(JOB);
    }

    /// @dev The operator can still settle while the claim window is open.
    function test_operatorCanRejectAfterClaimWindowOpens() public {
        uint256 submittedAt = _submittedAt();
        vm.warp(submittedAt + 3600);
        vm.prank(operator);
        escrow.reject(JOB);
        vm.prank(provider);
        vm.expectRevert(_wrongStatus(JOB, EdgentEscrow.Status.Rejected));
        escrow.claimTimeout(JOB);
        assertEq(usdc.balanceOf(requester), FUNDS, "requester refunded");
    }
}
