// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EscrowV4Fixture} from "../utils/EscrowV4Fixture.sol";
import {EdgentEscrowV4} from "../../src/EdgentEscrowV4.sol";
import {TEST_KEY, TestProofs} from "../utils/AcceptAllVerifier.sol";

/// @notice Unit tests of the version-4 escrow (fair exchange): every function, its
///         roles, its states and its windows to the second, and every event.
contract EdgentEscrowV4Test is EscrowV4Fixture {
    // ---------------------------------------------------------------- constructor

    function test_constructor_setsImmutables() public view {
        assertEq(address(escrow.usdc()), address(usdc), "usdc");
        assertEq(escrow.arbiter(), arbiter, "arbiter");
        assertEq(uint256(escrow.disputeWindow()), DISPUTE, "dispute window");
        assertEq(escrow.version(), 4, "version");
    }

    function test_constructor_revertsOnZeroAddresses() public {
        vm.expectRevert(EdgentEscrowV4.ZeroAddress.selector);
        new EdgentEscrowV4(address(0), arbiter, DISPUTE);
        vm.expectRevert(EdgentEscrowV4.ZeroAddress.selector);
        new EdgentEscrowV4(address(usdc), address(0), DISPUTE);
    }

    function test_constructor_disputeWindowBounds() public {
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrowV4.BadDisputeWindow.selector, uint64(29)));
        new EdgentEscrowV4(address(usdc), arbiter, 29);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrowV4.BadDisputeWindow.selector, uint64(86_401)));
        new EdgentEscrowV4(address(usdc), arbiter, 86_401);
        assertEq(uint256(new EdgentEscrowV4(address(usdc), arbiter, 30).disputeWindow()), 30, "min");
        assertEq(uint256(new EdgentEscrowV4(address(usdc), arbiter, 86_400).disputeWindow()), 86_400, "max");
    }

    // ---------------------------------------------------------------- the arbiter is never a party

    function test_stake_arbiterAsRequesterReverts() public {
        usdc.mint(arbiter, AMOUNT);
        vm.startPrank(arbiter);
        usdc.approve(address(escrow), AMOUNT);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrowV4.ArbiterIsParty.selector, arbiter));
        escrow.stake(JOB, provider, TEST_KEY, AMOUNT, _deadline());
        vm.stopPrank();
        _assertStatus(JOB, EdgentEscrowV4.Status.None, "nothing staked");
    }

    function test_stake_arbiterAsProviderReverts() public {
        uint64 deadline = _deadline();
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrowV4.ArbiterIsParty.selector, arbiter));
        escrow.stake(JOB, arbiter, TEST_KEY, AMOUNT, deadline);
    }

    // ---------------------------------------------------------------- release (the requester's own)

    function test_release_byRequesterWhileStakedPaysProvider() public {
        _stake(JOB);
        vm.expectEmit(true, true, false, true, address(escrow));
        emit EdgentEscrowV4.Released(JOB, provider, AMOUNT, HASH);
        vm.prank(requester);
        escrow.release(JOB, HASH);
        _assertStatus(JOB, EdgentEscrowV4.Status.Released, "released");
        assertEq(usdc.balanceOf(provider), AMOUNT, "provider paid");
        assertEq(usdc.balanceOf(address(escrow)), 0, "escrow empty");
        assertEq(escrow.getStake(JOB).outputHash, HASH, "hash recorded");
    }

    function test_release_afterSubmitNeedsTheSubmittedHash() public {
        _stake(JOB);
        _submit(JOB);
        bytes32 other = keccak256("other");
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrowV4.OutputMismatch.selector, HASH, other));
        escrow.release(JOB, other);
        vm.prank(requester);
        escrow.release(JOB, HASH);
        _assertStatus(JOB, EdgentEscrowV4.Status.Released, "released");
        assertEq(usdc.balanceOf(provider), AMOUNT, "provider paid");
    }

    function test_release_whileDisputedConcedes() public {
        _stake(JOB);
        _submit(JOB);
        _dispute(JOB);
        vm.prank(requester);
        escrow.release(JOB, HASH);
        _assertStatus(JOB, EdgentEscrowV4.Status.Released, "released");
        assertEq(usdc.balanceOf(provider), AMOUNT, "provider paid");
        vm.prank(arbiter);
        vm.expectRevert(_wrongStatus(JOB, EdgentEscrowV4.Status.Released));
        escrow.resolve(JOB, false);
    }

    function test_release_byAnyoneButTheRequesterReverts() public {
        _stake(JOB);
        address[3] memory others = [arbiter, provider, stranger];
        for (uint256 i = 0; i < 3; i++) {
            vm.prank(others[i]);
            vm.expectRevert(abi.encodeWithSelector(EdgentEscrowV4.NotRequester.selector, others[i]));
            escrow.release(JOB, HASH);
        }
        _assertStatus(JOB, EdgentEscrowV4.Status.Staked, "still staked");
    }

    function test_release_unknownJobReverts() public {
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrowV4.UnknownJob.selector, JOB));
        escrow.release(JOB, HASH);
    }

    function test_release_twiceReverts() public {
        _stake(JOB);
        vm.startPrank(requester);
        escrow.release(JOB, HASH);
        vm.expectRevert(_wrongStatus(JOB, EdgentEscrowV4.Status.Released));
        escrow.release(JOB, HASH);
        vm.stopPrank();
        assertEq(usdc.balanceOf(provider), AMOUNT, "paid once");
    }

    // ---------------------------------------------------------------- submit

    function test_submit_recordsAndEmits() public {
        _stake(JOB);
        vm.warp(T0 + 30);
        vm.expectEmit(true, false, false, true, address(escrow));
        emit EdgentEscrowV4.Submitted(JOB, HASH);
        _submit(JOB);
        EdgentEscrowV4.Stake memory s = escrow.getStake(JOB);
        assertEq(uint256(s.status), uint256(EdgentEscrowV4.Status.Submitted), "submitted");
        assertEq(uint256(s.submittedAt), T0 + 30, "submittedAt");
        assertEq(s.outputHash, HASH, "hash");
        assertEq(usdc.balanceOf(address(escrow)), AMOUNT, "still held");
    }

    function test_submit_onlyTheProvider() public {
        _stake(JOB);
        address[3] memory others = [arbiter, requester, stranger];
        for (uint256 i = 0; i < 3; i++) {
            vm.prank(others[i]);
            vm.expectRevert(abi.encodeWithSelector(EdgentEscrowV4.NotProvider.selector, others[i]));
            escrow.submit(JOB, HASH, TestProofs.any());
        }
    }

    function test_submit_invalidProofRevertsAndStakeStaysRefundable() public {
        uint64 deadline = _stake(JOB);
        // The real verifier (not etched) refuses a made-up proof.
        EdgentEscrowV4 real = new EdgentEscrowV4(address(usdc), arbiter, DISPUTE);
        vm.prank(requester);
        usdc.approve(address(real), AMOUNT);
        vm.prank(requester);
        real.stake(JOB, provider, TEST_KEY, AMOUNT, deadline);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrowV4.InvalidProof.selector, JOB));
        real.submit(JOB, HASH, TestProofs.any());
        vm.warp(uint256(deadline) + 1);
        vm.prank(requester);
        real.refund(JOB);
        assertEq(uint256(real.getStake(JOB).status), uint256(EdgentEscrowV4.Status.Refunded), "refunded");
    }

    // ---------------------------------------------------------------- finalize (anyone, after the window)

    function test_finalize_byAnyoneAtWindowEndPaysProvider() public {
        _stake(JOB);
        _submit(JOB);
        vm.warp(T0 + DISPUTE);
        vm.expectEmit(true, true, false, true, address(escrow));
        emit EdgentEscrowV4.Finalized(JOB, provider, AMOUNT);
        vm.prank(stranger);
        escrow.finalize(JOB);
        _assertStatus(JOB, EdgentEscrowV4.Status.Finalized, "finalized");
        assertEq(usdc.balanceOf(provider), AMOUNT, "provider paid");
        assertEq(usdc.balanceOf(stranger), 0, "the caller gets nothing");
    }

    function test_finalize_oneSecondBeforeWindowEndReverts() public {
        _stake(JOB);
        _submit(JOB);
        vm.warp(T0 + DISPUTE - 1);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrowV4.DisputeWindowOpen.selector, uint64(T0 + DISPUTE)));
        escrow.finalize(JOB);
    }

    function test_finalize_withoutSubmitReverts() public {
        uint64 deadline = _stake(JOB);
        vm.warp(uint256(deadline) + DISPUTE + 1);
        vm.prank(provider);
        vm.expectRevert(_wrongStatus(JOB, EdgentEscrowV4.Status.Staked));
        escrow.finalize(JOB);
    }

    function test_finalize_disputedReverts() public {
        _stake(JOB);
        _submit(JOB);
        _dispute(JOB);
        vm.warp(T0 + 7 days);
        vm.prank(provider);
        vm.expectRevert(_wrongStatus(JOB, EdgentEscrowV4.Status.Disputed));
        escrow.finalize(JOB);
        assertEq(usdc.balanceOf(address(escrow)), AMOUNT, "held for the arbiter");
    }

    function test_finalize_twiceReverts() public {
        _stake(JOB);
        _submit(JOB);
        vm.warp(T0 + DISPUTE);
        escrow.finalize(JOB);
        vm.expectRevert(_wrongStatus(JOB, EdgentEscrowV4.Status.Finalized));
        escrow.finalize(JOB);
        assertEq(usdc.balanceOf(provider), AMOUNT, "paid once");
    }

    // ---------------------------------------------------------------- dispute (the requester, within the window)

    function test_dispute_emitsTheEvidenceHashes() public {
        _stake(JOB);
        _submit(JOB);
        vm.warp(T0 + DISPUTE - 1);
        vm.expectEmit(true, true, false, true, address(escrow));
        emit EdgentEscrowV4.Disputed(JOB, requester, TASK, RESULT, HASH);
        _dispute(JOB);
        _assertStatus(JOB, EdgentEscrowV4.Status.Disputed, "disputed");
        assertEq(usdc.balanceOf(address(escrow)), AMOUNT, "nothing moved");
    }

    function test_dispute_atWindowEndReverts() public {
        _stake(JOB);
        _submit(JOB);
        vm.warp(T0 + DISPUTE);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrowV4.DisputeWindowClosed.selector, uint64(T0 + DISPUTE)));
        escrow.dispute(JOB, TASK, RESULT);
    }

    function test_dispute_beforeSubmitReverts() public {
        _stake(JOB);
        vm.prank(requester);
        vm.expectRevert(_wrongStatus(JOB, EdgentEscrowV4.Status.Staked));
        escrow.dispute(JOB, TASK, RESULT);
    }

    function test_dispute_onlyTheRequester() public {
        _stake(JOB);
        _submit(JOB);
        address[3] memory others = [arbiter, provider, stranger];
        for (uint256 i = 0; i < 3; i++) {
            vm.prank(others[i]);
            vm.expectRevert(abi.encodeWithSelector(EdgentEscrowV4.NotRequester.selector, others[i]));
            escrow.dispute(JOB, TASK, RESULT);
        }
    }

    function test_dispute_twiceReverts() public {
        _stake(JOB);
        _submit(JOB);
        _dispute(JOB);
        vm.prank(requester);
        vm.expectRevert(_wrongStatus(JOB, EdgentEscrowV4.Status.Disputed));
        escrow.dispute(JOB, TASK, RESULT);
    }

    // ---------------------------------------------------------------- resolve (the arbiter)

    function test_resolve_arbiterPaysProvider() public {
        _stake(JOB);
        _submit(JOB);
        _dispute(JOB);
        vm.expectEmit(true, true, false, true, address(escrow));
        emit EdgentEscrowV4.Resolved(JOB, provider, AMOUNT, true);
        vm.prank(arbiter);
        escrow.resolve(JOB, true);
        _assertStatus(JOB, EdgentEscrowV4.Status.ResolvedPaid, "resolved paid");
        assertEq(usdc.balanceOf(provider), AMOUNT, "provider paid");
        assertEq(usdc.balanceOf(arbiter), 0, "the arbiter takes nothing");
    }

    function test_resolve_arbiterRefundsRequester() public {
        _stake(JOB);
        _submit(JOB);
        _dispute(JOB);
        vm.expectEmit(true, true, false, true, address(escrow));
        emit EdgentEscrowV4.Resolved(JOB, requester, AMOUNT, false);
        vm.prank(arbiter);
        escrow.resolve(JOB, false);
        _assertStatus(JOB, EdgentEscrowV4.Status.ResolvedRefunded, "resolved refunded");
        assertEq(usdc.balanceOf(requester), FUNDS, "requester refunded");
        assertEq(usdc.balanceOf(provider), 0, "provider unpaid");
    }

    function test_resolve_onlyTheArbiter() public {
        _stake(JOB);
        _submit(JOB);
        _dispute(JOB);
        address[3] memory others = [requester, provider, stranger];
        for (uint256 i = 0; i < 3; i++) {
            vm.prank(others[i]);
            vm.expectRevert(abi.encodeWithSelector(EdgentEscrowV4.NotArbiter.selector, others[i]));
            escrow.resolve(JOB, i % 2 == 0);
        }
        _assertStatus(JOB, EdgentEscrowV4.Status.Disputed, "still disputed");
    }

    function test_resolve_undisputedReverts() public {
        _stake(JOB);
        vm.prank(arbiter);
        vm.expectRevert(_wrongStatus(JOB, EdgentEscrowV4.Status.Staked));
        escrow.resolve(JOB, false);
        _submit(JOB);
        vm.prank(arbiter);
        vm.expectRevert(_wrongStatus(JOB, EdgentEscrowV4.Status.Submitted));
        escrow.resolve(JOB, false);
    }

    // ---------------------------------------------------------------- reject and claimTimeout are gone

    function test_rejectAndClaimTimeoutDoNotExist() public {
        _stake(JOB);
        _submit(JOB);
        address[4] memory callers = [arbiter, requester, provider, stranger];
        for (uint256 i = 0; i < 4; i++) {
            vm.prank(callers[i]);
            (bool ok,) = address(escrow).call(abi.encodeWithSignature("reject(bytes32)", JOB));
            assertFalse(ok, "reject(bytes32) answered");
            vm.prank(callers[i]);
            (ok,) = address(escrow).call(abi.encodeWithSignature("claimTimeout(bytes32)", JOB));
            assertFalse(ok, "claimTimeout(bytes32) answered");
        }
        _assertStatus(JOB, EdgentEscrowV4.Status.Submitted, "untouched");
    }

    function test_requesterAloneCannotTakeBackAfterSubmit() public {
        uint64 deadline = _stake(JOB);
        _submit(JOB);
        vm.warp(uint256(deadline) + 1);
        vm.prank(requester);
        vm.expectRevert(_wrongStatus(JOB, EdgentEscrowV4.Status.Submitted));
        escrow.refund(JOB);
        // The provider cannot hand it back either (no decline after submit).
        vm.prank(provider);
        vm.expectRevert(_wrongStatus(JOB, EdgentEscrowV4.Status.Submitted));
        escrow.decline(JOB);
        // The window closed long ago: the provider is paid.
        escrow.finalize(JOB);
        assertEq(usdc.balanceOf(provider), AMOUNT, "provider paid");
    }

    // ---------------------------------------------------------------- decline (provider, before submit)

    function test_decline_beforeSubmitRefunds() public {
        _stake(JOB);
        vm.expectEmit(true, true, false, true, address(escrow));
        emit EdgentEscrowV4.Declined(JOB, requester, AMOUNT);
        vm.prank(provider);
        escrow.decline(JOB);
        _assertStatus(JOB, EdgentEscrowV4.Status.Declined, "declined");
        assertEq(usdc.balanceOf(requester), FUNDS, "refunded");
    }

    function test_decline_onlyTheProvider() public {
        _stake(JOB);
        address[3] memory others = [arbiter, requester, stranger];
        for (uint256 i = 0; i < 3; i++) {
            vm.prank(others[i]);
            vm.expectRevert(abi.encodeWithSelector(EdgentEscrowV4.NotProvider.selector, others[i]));
            escrow.decline(JOB);
        }
    }

    // ---------------------------------------------------------------- refund (requester, after the deadline, no submit)

    function test_refund_edgesOfTheDeadline() public {
        uint64 deadline = _stake(JOB);
        vm.warp(uint256(deadline));
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrowV4.DeadlineNotPassed.selector, deadline));
        escrow.refund(JOB);
        // At the deadline the provider may still submit; one second later it may not.
        vm.warp(uint256(deadline) + 1);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrowV4.DeadlinePassed.selector, deadline));
        escrow.submit(JOB, HASH, TestProofs.any());
        vm.expectEmit(true, true, false, true, address(escrow));
        emit EdgentEscrowV4.Refunded(JOB, requester, AMOUNT);
        vm.prank(requester);
        escrow.refund(JOB);
        assertEq(usdc.balanceOf(requester), FUNDS, "refunded");
    }

    function test_refund_onlyTheRequester() public {
        uint64 deadline = _stake(JOB);
        vm.warp(uint256(deadline) + 1);
        address[3] memory others = [arbiter, provider, stranger];
        for (uint256 i = 0; i < 3; i++) {
            vm.prank(others[i]);
            vm.expectRevert(abi.encodeWithSelector(EdgentEscrowV4.NotRequester.selector, others[i]));
            escrow.refund(JOB);
        }
    }

    function test_submitAtDeadlineThenWindowPaysProvider() public {
        uint64 deadline = _stake(JOB);
        vm.warp(uint256(deadline));
        _submit(JOB);
        vm.warp(uint256(deadline) + DISPUTE);
        escrow.finalize(JOB);
        assertEq(usdc.balanceOf(provider), AMOUNT, "provider paid");
    }

    function test_independentJobs() public {
        bytes32 other = keccak256("job-2");
        _stake(JOB);
        _stake(other);
        _submit(JOB);
        _dispute(JOB);
        vm.prank(requester);
        escrow.release(other, HASH);
        vm.prank(arbiter);
        escrow.resolve(JOB, false);
        assertEq(usdc.balanceOf(provider), AMOUNT, "other job paid");
        assertEq(usdc.balanceOf(requester), FUNDS - AMOUNT, "JOB refunded");
        assertEq(usdc.balanceOf(address(escrow)), 0, "escrow empty");
    }
}
