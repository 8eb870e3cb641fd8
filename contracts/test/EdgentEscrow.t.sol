// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EscrowFixture} from "./utils/EscrowFixture.sol";
import {EdgentEscrow} from "../src/EdgentEscrow.sol";
import {TEST_KEY, TestProofs} from "./utils/AcceptAllVerifier.sol";
import {MockUSDC} from "../src/MockUSDC.sol";

/// @notice Unit tests: every function, every revert, every event.
contract EdgentEscrowTest is EscrowFixture {
    // ---------------------------------------------------------------- constructor

    function test_constructor_setsImmutables() public view {
        assertEq(address(escrow.usdc()), address(usdc), "usdc");
        assertEq(escrow.operator(), operator, "operator");
        assertEq(uint256(escrow.CLAIM_DELAY()), 3600, "claim delay is one hour");
    }

    function test_constructor_revertsOnZeroUsdc() public {
        vm.expectRevert(EdgentEscrow.ZeroAddress.selector);
        new EdgentEscrow(address(0), operator);
    }

    function test_constructor_revertsOnZeroOperator() public {
        vm.expectRevert(EdgentEscrow.ZeroAddress.selector);
        new EdgentEscrow(address(usdc), address(0));
    }

    // ---------------------------------------------------------------- stake

    function test_stake_recordsPullsAndEmits() public {
        uint64 deadline = _deadline();
        vm.expectEmit(true, true, true, true, address(escrow));
        emit EdgentEscrow.Staked(JOB, requester, provider, AMOUNT, deadline);
        vm.prank(requester);
        escrow.stake(JOB, provider, TEST_KEY, AMOUNT, deadline);

        EdgentEscrow.Stake memory s = escrow.getStake(JOB);
        assertEq(s.requester, requester, "requester");
        assertEq(s.provider, provider, "provider");
        assertEq(s.amount, AMOUNT, "amount");
        assertEq(uint256(s.createdAt), T0, "createdAt");
        assertEq(uint256(s.submittedAt), 0, "submittedAt");
        assertEq(uint256(s.deadline), uint256(deadline), "deadline");
        assertEq(s.outputHash, bytes32(0), "outputHash");
        assertEq(uint256(s.status), uint256(EdgentEscrow.Status.Staked), "status");
        assertEq(usdc.balanceOf(address(escrow)), AMOUNT, "escrow holds the stake");
        assertEq(usdc.balanceOf(requester), FUNDS - AMOUNT, "requester paid");
    }

    function test_stake_revertsJobExists() public {
        _stake(JOB);
        uint64 deadline = _deadline();
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.JobExists.selector, JOB));
        escrow.stake(JOB, provider, TEST_KEY, AMOUNT, deadline);
    }

    function test_stake_revertsJobExistsAfterSettlement() public {
        _stake(JOB);
        vm.prank(operator);
        escrow.reject(JOB);
        uint64 deadline = _deadline();
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.JobExists.selector, JOB));
        escrow.stake(JOB, provider, TEST_KEY, AMOUNT, deadline);
    }

    function test_stake_revertsZeroAmount() public {
        uint64 deadline = _deadline();
        vm.prank(requester);
        vm.expectRevert(EdgentEscrow.ZeroAmount.selector);
        escrow.stake(JOB, provider, TEST_KEY, 0, deadline);
    }

    function test_stake_revertsZeroProvider() public {
        uint64 deadline = _deadline();
        vm.prank(requester);
        vm.expectRevert(EdgentEscrow.ZeroAddress.selector);
        escrow.stake(JOB, address(0), TEST_KEY, AMOUNT, deadline);
    }

    function test_stake_revertsInsufficientAllowance() public {
        vm.prank(requester);
        usdc.approve(address(escrow), AMOUNT - 1);
        uint64 deadline = _deadline();
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.InsufficientAllowance.selector, AMOUNT - 1, AMOUNT));
        escrow.stake(JOB, provider, TEST_KEY, AMOUNT, deadline);
    }

    function test_stake_revertsInsufficientBalance() public {
        vm.prank(stranger);
        usdc.approve(address(escrow), type(uint256).max);
        usdc.mint(stranger, AMOUNT - 7);
        uint64 deadline = _deadline();
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.InsufficientBalance.selector, AMOUNT - 7, AMOUNT));
        escrow.stake(JOB, provider, TEST_KEY, AMOUNT, deadline);
    }

    function test_stake_failedStakeLeavesNoTrace() public {
        vm.prank(requester);
        usdc.approve(address(escrow), 1);
        uint64 deadline = _deadline();
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.InsufficientAllowance.selector, 1, AMOUNT));
        escrow.stake(JOB, provider, TEST_KEY, AMOUNT, deadline);
        assertEq(uint256(_status(JOB)), uint256(EdgentEscrow.Status.None), "no stake recorded");
        assertEq(usdc.balanceOf(address(escrow)), 0, "nothing pulled");
    }

    function test_stake_independentJobs() public {
        bytes32 other = keccak256("job-2");
        _stake(JOB);
        _stake(other);
        assertEq(usdc.balanceOf(address(escrow)), 2 * AMOUNT, "both stakes held");
        vm.prank(operator);
        escrow.release(JOB, HASH);
        assertEq(uint256(_status(other)), uint256(EdgentEscrow.Status.Staked), "other job untouched");
        assertEq(usdc.balanceOf(address(escrow)), AMOUNT, "other stake still held");
    }

    // ---------------------------------------------------------------- getStake

    function test_getStake_unknownIsZero() public view {
        EdgentEscrow.Stake memory s = escrow.getStake(keccak256("nope"));
        assertEq(s.requester, address(0), "requester");
        assertEq(s.provider, address(0), "provider");
        assertEq(s.amount, 0, "amount");
        assertEq(uint256(s.createdAt) + s.submittedAt + s.deadline, 0, "times");
        assertEq(s.outputHash, bytes32(0), "hash");
        assertEq(uint256(s.status), uint256(EdgentEscrow.Status.None), "status");
    }

    // ---------------------------------------------------------------- submit

    function test_submit_recordsAndEmits() public {
        uint64 deadline = _stake(JOB);
        vm.warp(T0 + 30);
        vm.expectEmit(true, false, false, true, address(escrow));
        emit EdgentEscrow.Submitted(JOB, HASH);
        _submit(JOB);
        EdgentEscrow.Stake memory s = escrow.getStake(JOB);
        assertEq(uint256(s.status), uint256(EdgentEscrow.Status.Submitted), "status");
        assertEq(uint256(s.submittedAt), T0 + 30, "submittedAt");
        assertEq(s.outputHash, HASH, "outputHash");
        assertEq(uint256(s.deadline), uint256(deadline), "deadline unchanged");
        assertEq(usdc.balanceOf(address(escrow)), AMOUNT, "no money moves on submit");
    }

    function test_submit_revertsUnknownJob() public {
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.UnknownJob.selector, JOB));
        escrow.submit(JOB, HASH, TestProofs.any());
    }

    function test_submit_revertsNotProvider() public {
        _stake(JOB);
        address[3] memory others = [requester, operator, stranger];
        for (uint256 i = 0; i < others.length; i++) {
            vm.prank(others[i]);
            vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.NotProvider.selector, others[i]));
            escrow.submit(JOB, HASH, TestProofs.any());
        }
    }

    function test_submit_revertsWhenAlreadySubmitted() public {
        _stake(JOB);
        _submit(JOB);
        vm.prank(provider);
        vm.expectRevert(_wrongStatus(JOB, EdgentEscrow.Status.Submitted));
        escrow.submit(JOB, keccak256("another"), TestProofs.any());
        assertEq(escrow.getStake(JOB).outputHash, HASH, "first hash kept");
    }

    // ---------------------------------------------------------------- release

    function test_release_fromStakedPaysProvider() public {
        _stake(JOB);
        vm.expectEmit(true, true, false, true, address(escrow));
        emit EdgentEscrow.Released(JOB, provider, AMOUNT, HASH);
        vm.prank(operator);
        escrow.release(JOB, HASH);
        assertEq(usdc.balanceOf(provider), AMOUNT, "provider paid");
        assertEq(usdc.balanceOf(address(escrow)), 0, "escrow empty");
        EdgentEscrow.Stake memory s = escrow.getStake(JOB);
        assertEq(uint256(s.status), uint256(EdgentEscrow.Status.Released), "status");
        assertEq(s.outputHash, HASH, "released hash recorded");
    }

    function test_release_fromSubmittedWithMatchingHash() public {
        _stake(JOB);
        _submit(JOB);
        vm.prank(operator);
        escrow.release(JOB, HASH);
        assertEq(usdc.balanceOf(provider), AMOUNT, "provider paid");
        assertEq(uint256(_status(JOB)), uint256(EdgentEscrow.Status.Released), "status");
    }

    function test_release_revertsOutputMismatch() public {
        _stake(JOB);
        _submit(JOB);
        bytes32 wrong = keccak256("tampered");
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.OutputMismatch.selector, HASH, wrong));
        escrow.release(JOB, wrong);
        assertEq(usdc.balanceOf(provider), 0, "provider not paid");
    }

    function test_release_revertsNotOperator() public {
        _stake(JOB);
        address[3] memory others = [requester, provider, stranger];
        for (uint256 i = 0; i < others.length; i++) {
            vm.prank(others[i]);
            vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.NotOperator.selector, others[i]));
            escrow.release(JOB, HASH);
        }
    }

    function test_release_revertsUnknownJob() public {
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.UnknownJob.selector, JOB));
        escrow.release(JOB, HASH);
    }

    // ---------------------------------------------------------------- reject

    function test_reject_fromStakedRefundsRequester() public {
        _stake(JOB);
        vm.expectEmit(true, true, false, true, address(escrow));
        emit EdgentEscrow.Rejected(JOB, requester, AMOUNT);
        vm.prank(operator);
        escrow.reject(JOB);
        assertEq(usdc.balanceOf(requester), FUNDS, "requester made whole");
        assertEq(usdc.balanceOf(address(escrow)), 0, "escrow empty");
        assertEq(uint256(_status(JOB)), uint256(EdgentEscrow.Status.Rejected), "status");
    }

    function test_reject_fromSubmittedRefundsRequester() public {
        _stake(JOB);
        _submit(JOB);
        vm.prank(operator);
        escrow.reject(JOB);
        assertEq(usdc.balanceOf(requester), FUNDS, "requester made whole");
        assertEq(usdc.balanceOf(provider), 0, "provider unpaid");
        assertEq(uint256(_status(JOB)), uint256(EdgentEscrow.Status.Rejected), "status");
    }

    function test_reject_revertsNotOperator() public {
        _stake(JOB);
        address[3] memory others = [requester, provider, stranger];
        for (uint256 i = 0; i < others.length; i++) {
            vm.prank(others[i]);
            vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.NotOperator.selector, others[i]));
            escrow.reject(JOB);
        }
    }

    function test_reject_revertsUnknownJob() public {
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.UnknownJob.selector, JOB));
        escrow.reject(JOB);
    }

    // ---------------------------------------------------------------- claimTimeout

    function test_claimTimeout_paysProviderAndEmits() public {
        _stake(JOB);
        _submit(JOB);
        vm.warp(T0 + 3600);
        vm.expectEmit(true, true, false, true, address(escrow));
        emit EdgentEscrow.Claimed(JOB, provider, AMOUNT);
        vm.prank(provider);
        escrow.claimTimeout(JOB);
        assertEq(usdc.balanceOf(provider), AMOUNT, "provider paid");
        assertEq(usdc.balanceOf(address(escrow)), 0, "escrow empty");
        assertEq(uint256(_status(JOB)), uint256(EdgentEscrow.Status.Claimed), "status");
    }

    function test_claimTimeout_revertsWhenNotSubmitted() public {
        _stake(JOB);
        vm.warp(T0 + 2 hours);
        vm.prank(provider);
        vm.expectRevert(_wrongStatus(JOB, EdgentEscrow.Status.Staked));
        escrow.claimTimeout(JOB);
    }

    function test_claimTimeout_revertsNotProvider() public {
        _stake(JOB);
        _submit(JOB);
        vm.warp(T0 + 2 hours);
        address[3] memory others = [requester, operator, stranger];
        for (uint256 i = 0; i < others.length; i++) {
            vm.prank(others[i]);
            vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.NotProvider.selector, others[i]));
            escrow.claimTimeout(JOB);
        }
    }

    function test_claimTimeout_revertsUnknownJob() public {
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.UnknownJob.selector, JOB));
        escrow.claimTimeout(JOB);
    }

    // ---------------------------------------------------------------- refund

    function test_refund_afterDeadlineRefundsAndEmits() public {
        uint64 deadline = _stake(JOB);
        vm.warp(uint256(deadline) + 1);
        vm.expectEmit(true, true, false, true, address(escrow));
        emit EdgentEscrow.Refunded(JOB, requester, AMOUNT);
        vm.prank(requester);
        escrow.refund(JOB);
        assertEq(usdc.balanceOf(requester), FUNDS, "requester made whole");
        assertEq(usdc.balanceOf(address(escrow)), 0, "escrow empty");
        assertEq(uint256(_status(JOB)), uint256(EdgentEscrow.Status.Refunded), "status");
    }

    function test_refund_revertsWhenSubmitted() public {
        uint64 deadline = _stake(JOB);
        _submit(JOB);
        vm.warp(uint256(deadline) + 1 days);
        vm.prank(requester);
        vm.expectRevert(_wrongStatus(JOB, EdgentEscrow.Status.Submitted));
        escrow.refund(JOB);
    }

    function test_refund_revertsNotRequester() public {
        uint64 deadline = _stake(JOB);
        vm.warp(uint256(deadline) + 1);
        address[3] memory others = [provider, operator, stranger];
        for (uint256 i = 0; i < others.length; i++) {
            vm.prank(others[i]);
            vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.NotRequester.selector, others[i]));
            escrow.refund(JOB);
        }
    }

    function test_refund_revertsUnknownJob() public {
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.UnknownJob.selector, JOB));
        escrow.refund(JOB);
    }

    // ---------------------------------------------------------------- terminal states

    /// @dev Drive JOB into `terminal`, then check that every transition out of
    ///      it reverts WrongStatus and that no further money moves.
    function _assertTerminalIsFinal(EdgentEscrow.Status terminal) internal {
        uint64 deadline = _stake(JOB);
        if (terminal == EdgentEscrow.Status.Released) {
            vm.prank(operator);
            escrow.release(JOB, HASH);
        } else if (terminal == EdgentEscrow.Status.Rejected) {
            vm.prank(operator);
            escrow.reject(JOB);
        } else if (terminal == EdgentEscrow.Status.Claimed) {
            _submit(JOB);
            vm.warp(block.timestamp + 1 hours);
            vm.prank(provider);
            escrow.claimTimeout(JOB);
        } else {
            vm.warp(uint256(deadline) + 1);
            vm.prank(requester);
            escrow.refund(JOB);
        }
        assertEq(uint256(_status(JOB)), uint256(terminal), "reached terminal state");
        uint256 providerBal = usdc.balanceOf(provider);
        uint256 requesterBal = usdc.balanceOf(requester);
        assertEq(providerBal + requesterBal, FUNDS, "stake paid out exactly once");
        // Make every window open so only the status can stop a transition.
        vm.warp(uint256(deadline) + 2 hours);
        bytes memory wrong = _wrongStatus(JOB, terminal);

        vm.prank(operator);
        vm.expectRevert(wrong);
        escrow.release(JOB, HASH);
        vm.prank(operator);
        vm.expectRevert(wrong);
        escrow.reject(JOB);
        vm.prank(provider);
        vm.expectRevert(wrong);
        escrow.claimTimeout(JOB);
        vm.prank(requester);
        vm.expectRevert(wrong);
        escrow.refund(JOB);
        vm.prank(provider);
        vm.expectRevert(wrong);
        escrow.submit(JOB, HASH, TestProofs.any());

        assertEq(usdc.balanceOf(provider), providerBal, "provider balance unchanged");
        assertEq(usdc.balanceOf(requester), requesterBal, "requester balance unchanged");
        assertEq(usdc.balanceOf(address(escrow)), 0, "escrow empty");
    }

    function test_released_isFinal() public {
        _assertTerminalIsFinal(EdgentEscrow.Status.Released);
    }

    function test_rejected_isFinal() public {
        _assertTerminalIsFinal(EdgentEscrow.Status.Rejected);
    }

    function test_claimed_isFinal() public {
        _assertTerminalIsFinal(EdgentEscrow.Status.Claimed);
    }

    function test_refunded_isFinal() public {
        _assertTerminalIsFinal(EdgentEscrow.Status.Refunded);
    }

    function test_unknownJob_everyFunction() public {
        bytes32 id = keccak256("never-staked");
        bytes memory unknown = abi.encodeWithSelector(EdgentEscrow.UnknownJob.selector, id);
        // Even the right roles get UnknownJob, and so does a stranger.
        address[2] memory callers = [operator, stranger];
        for (uint256 i = 0; i < callers.length; i++) {
            vm.startPrank(callers[i]);
            vm.expectRevert(unknown);
            escrow.submit(id, HASH, TestProofs.any());
            vm.expectRevert(unknown);
            escrow.release(id, HASH);
            vm.expectRevert(unknown);
            escrow.reject(id);
            vm.expectRevert(unknown);
            escrow.claimTimeout(id);
            vm.expectRevert(unknown);
            escrow.refund(id);
            vm.stopPrank();
        }
    }
}
