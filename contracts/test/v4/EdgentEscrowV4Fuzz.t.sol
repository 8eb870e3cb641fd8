// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EscrowV4Fixture, acceptAllV4} from "../utils/EscrowV4Fixture.sol";
import {EdgentEscrowV4} from "../../src/EdgentEscrowV4.sol";

/// @notice Fuzzed windows: at any second after a submit exactly one of dispute and
///         finalize is open (the fuzzer picks the second and the deployment's window).
contract EdgentEscrowV4FuzzTest is EscrowV4Fixture {
    function testFuzz_disputeXorFinalizeAtEverySecond(uint256 dt, uint256 window) public {
        uint64 w = uint64(bound(window, 30, 1 days));
        escrow = new EdgentEscrowV4(address(usdc), arbiter, w);
        vm.prank(requester);
        usdc.approve(address(escrow), type(uint256).max);
        acceptAllV4(vm, escrow);
        _stake(JOB);
        _submit(JOB);
        dt = bound(dt, 0, 2 days);
        uint256 snap = block.timestamp;
        vm.warp(snap + dt);
        vm.prank(requester);
        (bool disputed,) = address(escrow).call(abi.encodeCall(EdgentEscrowV4.dispute, (JOB, TASK, RESULT)));
        if (disputed) {
            assertTrue(dt < w, "disputed after the window");
            (bool finalized,) = address(escrow).call(abi.encodeCall(EdgentEscrowV4.finalize, (JOB)));
            assertFalse(finalized, "finalized a disputed job");
        } else {
            assertTrue(dt >= w, "dispute refused inside the window");
            escrow.finalize(JOB);
            assertEq(usdc.balanceOf(provider), AMOUNT, "provider paid");
        }
    }
}

contract EdgentEscrowV4RefundFuzzTest is EscrowV4Fixture {
    /// @notice At any second, exactly one of submit (now <= deadline) and refund (now > deadline).
    function testFuzz_submitXorRefundAtEverySecond(uint256 dt) public {
        uint64 deadline = _stake(JOB);
        dt = bound(dt, 0, 2 * WINDOW);
        vm.warp(T0 + dt);
        vm.prank(requester);
        (bool refunded,) = address(escrow).call(abi.encodeCall(EdgentEscrowV4.refund, (JOB)));
        assertEq(refunded, T0 + dt > deadline, "refund open iff the deadline passed");
        if (!refunded) {
            _submit(JOB);
            _assertStatus(JOB, EdgentEscrowV4.Status.Submitted, "submitted");
        }
    }
}
