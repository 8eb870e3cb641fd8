// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EscrowFixture} from "./utils/EscrowFixture.sol";
import {EdgentEscrow} from "../src/EdgentEscrow.sol";
import {TEST_KEY, TestProofs} from "./utils/AcceptAllVerifier.sol";

/// @notice Property tests over random ids, amounts, callers and times.
contract EdgentEscrowFuzzTest is EscrowFixture {
    function testFuzz_stakeRecordsExactly(bytes32 jobId, address prov, uint256 amount, uint256 window) public {
        vm.assume(prov != address(0));
        amount = bound(amount, 1, FUNDS);
        window = bound(window, 1, 365 days);
        uint64 deadline = uint64(block.timestamp + window);
        vm.prank(requester);
        escrow.stake(jobId, prov, TEST_KEY, amount, deadline);
        EdgentEscrow.Stake memory s = escrow.getStake(jobId);
        assertEq(s.requester, requester, "requester");
        assertEq(s.provider, prov, "provider");
        assertEq(s.amount, amount, "amount");
        assertEq(uint256(s.deadline), uint256(deadline), "deadline");
        assertEq(usdc.balanceOf(address(escrow)), amount, "escrow holds exactly the stake");
        assertEq(usdc.balanceOf(requester), FUNDS - amount, "requester debited exactly");
    }

    function testFuzz_stakeNeedsAllowanceAndBalance(uint256 allowed, uint256 balance, uint256 amount) public {
        amount = bound(amount, 1, FUNDS);
        allowed = bound(allowed, 0, FUNDS);
        balance = bound(balance, 0, FUNDS);
        address who = makeAddr("fuzz-requester");
        usdc.mint(who, balance);
        vm.prank(who);
        usdc.approve(address(escrow), allowed);
        uint64 deadline = _deadline();
        if (allowed < amount) {
            vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.InsufficientAllowance.selector, allowed, amount));
        } else if (balance < amount) {
            vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.InsufficientBalance.selector, balance, amount));
        }
        vm.prank(who);
        escrow.stake(JOB, provider, TEST_KEY, amount, deadline);
        bool staked = allowed >= amount && balance >= amount;
        assertEq(usdc.balanceOf(address(escrow)), staked ? amount : 0, "escrow balance");
    }

    function testFuzz_onlyOperatorSettles(address caller) public {
        vm.assume(caller != operator);
        _stake(JOB);
        vm.prank(caller);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.NotOperator.selector, caller));
        escrow.release(JOB, HASH);
        vm.prank(caller);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.NotOperator.selector, caller));
        escrow.reject(JOB);
    }

    function testFuzz_releaseNeedsSubmittedHash(bytes32 submitted, bytes32 offered) public {
        _stake(JOB);
        vm.prank(provider);
        escrow.submit(JOB, submitted, TestProofs.any());
        if (submitted != offered) {
            vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.OutputMismatch.selector, submitted, offered));
        }
        vm.prank(operator);
        escrow.release(JOB, offered);
        assertEq(usdc.balanceOf(provider), submitted == offered ? AMOUNT : 0, "paid only on a match");
    }

    function testFuzz_submitWindow(uint256 window, uint256 elapsed) public {
        window = bound(window, 1, 30 days);
        elapsed = bound(elapsed, 0, 60 days);
        uint64 deadline = uint64(block.timestamp + window);
        vm.prank(requester);
        escrow.stake(JOB, provider, TEST_KEY, AMOUNT, deadline);
        vm.warp(block.timestamp + elapsed);
        bool open = block.timestamp <= deadline;
        if (!open) vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.DeadlinePassed.selector, deadline));
        vm.prank(provider);
        escrow.submit(JOB, HASH, TestProofs.any());
        assertEq(
            uint256(_status(JOB)), uint256(open ? EdgentEscrow.Status.Submitted : EdgentEscrow.Status.Staked), "status"
        );
    }

    function testFuzz_refundWindow(uint256 window, uint256 elapsed) public {
        window = bound(window, 1, 30 days);
        elapsed = bound(elapsed, 0, 60 days);
        uint64 deadline = uint64(block.timestamp + window);
        vm.prank(requester);
        escrow.stake(JOB, provider, TEST_KEY, AMOUNT, deadline);
        vm.warp(block.timestamp + elapsed);
        bool open = block.timestamp > deadline;
        if (!open) vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.DeadlineNotPassed.selector, deadline));
        vm.prank(requester);
        escrow.refund(JOB);
        assertEq(usdc.balanceOf(requester), open ? FUNDS : FUNDS - AMOUNT, "refunded only after the deadline");
    }

    function testFuzz_claimWindow(uint256 submitAfter, uint256 wait) public {
        uint64 deadline = _stake(JOB);
        submitAfter = bound(submitAfter, 0, WINDOW);
        wait = bound(wait, 0, 3 hours);
        vm.warp(block.timestamp + submitAfter);
        _submit(JOB);
        uint256 submittedAt = block.timestamp;
        vm.warp(submittedAt + wait);
        bool open = wait >= 3600;
        if (!open) {
            vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.ClaimTooEarly.selector, uint64(submittedAt + 3600)));
        }
        vm.prank(provider);
        escrow.claimTimeout(JOB);
        assertEq(usdc.balanceOf(provider), open ? AMOUNT : 0, "claimed only after one hour");
        assertTrue(deadline > 0, "deadline set");
    }

    /// @dev Whatever path a job takes, the stake leaves the escrow once, to
    ///      exactly one party, and the totals are conserved.
    function testFuzz_everyPathPaysOnce(uint8 path, uint256 amount) public {
        amount = bound(amount, 1, FUNDS);
        uint64 deadline = uint64(block.timestamp + WINDOW);
        vm.prank(requester);
        escrow.stake(JOB, provider, TEST_KEY, amount, deadline);
        path = uint8(bound(path, 0, 5));
        bool providerWins;
        if (path == 0) {
            vm.prank(operator);
            escrow.release(JOB, HASH);
            providerWins = true;
        } else if (path == 1) {
            _submit(JOB);
            vm.prank(operator);
            escrow.release(JOB, HASH);
            providerWins = true;
        } else if (path == 2) {
            vm.prank(operator);
            escrow.reject(JOB);
        } else if (path == 3) {
            _submit(JOB);
            vm.prank(operator);
            escrow.reject(JOB);
        } else if (path == 4) {
            _submit(JOB);
            vm.warp(block.timestamp + 1 hours);
            vm.prank(provider);
            escrow.claimTimeout(JOB);
            providerWins = true;
        } else {
            vm.warp(uint256(deadline) + 1);
            vm.prank(requester);
            escrow.refund(JOB);
        }
        assertEq(usdc.balanceOf(address(escrow)), 0, "escrow empty");
        assertEq(usdc.balanceOf(provider), providerWins ? amount : 0, "provider share");
        assertEq(usdc.balanceOf(requester), providerWins ? FUNDS - amount : FUNDS, "requester share");
    }
}
