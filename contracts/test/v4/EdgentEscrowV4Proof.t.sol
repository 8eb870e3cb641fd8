// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EscrowV4Fixture} from "../utils/EscrowV4Fixture.sol";
import {EdgentEscrowV4} from "../../src/EdgentEscrowV4.sol";
import {ProofVectors} from "../vectors/ProofVectors.sol";

/// @notice The version-4 escrow against the real verifier with the Rust prover's proof:
///         every life a job can have, end to end (`--gas-report` on this suite gives the
///         gas of each step, docs/benchmarks.md).
contract EdgentEscrowV4ProofTest is EscrowV4Fixture {
    bytes32 internal constant J = ProofVectors.JOB;
    bytes32 internal constant OUT = ProofVectors.OUTPUT;

    function setUp() public override {
        super.setUp();
        // The fixture's escrow accepts every proof; this suite needs the real verifier.
        escrow = new EdgentEscrowV4(address(usdc), arbiter, DISPUTE);
        vm.prank(requester);
        usdc.approve(address(escrow), type(uint256).max);
        vm.prank(requester);
        escrow.stake(J, provider, ProofVectors.KEY, AMOUNT, _deadline());
    }

    function _submitProof() internal {
        vm.prank(provider);
        escrow.submit(J, OUT, ProofVectors.proof());
    }

    /// @notice The happy path: the requester checked the proof off chain and releases.
    function test_life_stakeRelease() public {
        vm.prank(requester);
        escrow.release(J, OUT);
        assertEq(usdc.balanceOf(provider), AMOUNT, "provider paid");
    }

    /// @notice The requester went silent: the provider submits and finalizes after the window.
    function test_life_stakeSubmitFinalize() public {
        _submitProof();
        vm.warp(block.timestamp + DISPUTE);
        vm.prank(provider);
        escrow.finalize(J);
        assertEq(usdc.balanceOf(provider), AMOUNT, "provider paid");
    }

    /// @notice A submit, then the requester's release within the window.
    function test_life_stakeSubmitRelease() public {
        _submitProof();
        vm.prank(requester);
        escrow.release(J, OUT);
        assertEq(usdc.balanceOf(provider), AMOUNT, "provider paid");
    }

    /// @notice A dispute, decided by the arbiter.
    function test_life_stakeSubmitDisputeResolve() public {
        _submitProof();
        _dispute(J);
        vm.prank(arbiter);
        escrow.resolve(J, false);
        assertEq(usdc.balanceOf(requester), FUNDS, "requester refunded");
    }

    function test_submit_proofForAnotherOutputReverts() public {
        bytes32 other = bytes32(uint256(OUT) + 1);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrowV4.InvalidProof.selector, J));
        escrow.submit(J, other, ProofVectors.proof());
        _assertStatus(J, EdgentEscrowV4.Status.Staked, "still staked");
    }

    function test_submit_proofForAnotherKeyReverts() public {
        bytes32 j2 = bytes32(uint256(J) + 1);
        vm.prank(requester);
        escrow.stake(j2, provider, bytes32(uint256(ProofVectors.KEY) + 1), AMOUNT, _deadline());
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrowV4.InvalidProof.selector, j2));
        escrow.submit(j2, OUT, ProofVectors.proof());
    }
}
