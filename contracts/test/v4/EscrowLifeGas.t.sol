// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "../utils/Test.sol";
import {EdgentEscrow} from "../../src/EdgentEscrow.sol";
import {EdgentEscrowV4} from "../../src/EdgentEscrowV4.sol";
import {MockUSDC} from "../../src/MockUSDC.sol";
import {ProofVectors} from "../vectors/ProofVectors.sol";

/// @notice A job's whole life on version 3 and on version 4, with the real verifier and
///         the Rust prover's proof, one life per test, for the gas comparison in
///         docs/benchmarks.md: `bash contracts/test.sh --match-contract EscrowLifeGas --gas-report`.
contract EscrowLifeGasTest is Test {
    uint256 internal constant AMOUNT = 2_500_000;
    bytes32 internal constant J = ProofVectors.JOB;
    bytes32 internal constant OUT = ProofVectors.OUTPUT;

    MockUSDC internal usdc;
    EdgentEscrow internal v3;
    EdgentEscrowV4 internal v4;
    address internal operator;
    address internal requester;
    address internal provider;

    function setUp() public {
        vm.warp(1_700_000_000);
        operator = makeAddr("operator");
        requester = makeAddr("requester");
        provider = makeAddr("provider");
        usdc = new MockUSDC();
        v3 = new EdgentEscrow(address(usdc), operator);
        v4 = new EdgentEscrowV4(address(usdc), operator, 180);
        usdc.mint(requester, 10 * AMOUNT);
        vm.startPrank(requester);
        usdc.approve(address(v3), type(uint256).max);
        usdc.approve(address(v4), type(uint256).max);
        v3.stake(J, provider, ProofVectors.KEY, AMOUNT, uint64(block.timestamp + 600));
        v4.stake(J, provider, ProofVectors.KEY, AMOUNT, uint64(block.timestamp + 600));
        vm.stopPrank();
    }

    function test_v3_stakeRelease() public {
        vm.prank(operator);
        v3.release(J, OUT);
        assertEq(usdc.balanceOf(provider), AMOUNT, "paid");
    }

    function test_v3_stakeSubmitRelease() public {
        vm.prank(provider);
        v3.submit(J, OUT, ProofVectors.proof());
        vm.prank(operator);
        v3.release(J, OUT);
        assertEq(usdc.balanceOf(provider), AMOUNT, "paid");
    }

    function test_v3_stakeSubmitClaimTimeout() public {
        vm.prank(provider);
        v3.submit(J, OUT, ProofVectors.proof());
        vm.warp(block.timestamp + 1 hours);
        vm.prank(provider);
        v3.claimTimeout(J);
        assertEq(usdc.balanceOf(provider), AMOUNT, "paid");
    }

    /// v3's contested job: the provider submits, the operator (whose credential every
    /// requester held) rejects and the requester is refunded.
    function test_v3_stakeSubmitReject() public {
        vm.prank(provider);
        v3.submit(J, OUT, ProofVectors.proof());
        vm.prank(operator);
        v3.reject(J);
        assertEq(usdc.balanceOf(requester), 9 * AMOUNT, "refunded (its v4 stake is still held)");
    }

    function test_v4_stakeRelease() public {
        vm.prank(requester);
        v4.release(J, OUT);
        assertEq(usdc.balanceOf(provider), AMOUNT, "paid");
    }

    function test_v4_stakeSubmitRelease() public {
        vm.prank(provider);
        v4.submit(J, OUT, ProofVectors.proof());
        vm.prank(requester);
        v4.release(J, OUT);
        assertEq(usdc.balanceOf(provider), AMOUNT, "paid");
    }

    function test_v4_stakeSubmitFinalize() public {
        vm.prank(provider);
        v4.submit(J, OUT, ProofVectors.proof());
        vm.warp(block.timestamp + 180);
        vm.prank(provider);
        v4.finalize(J);
        assertEq(usdc.balanceOf(provider), AMOUNT, "paid");
    }

    function test_v4_stakeSubmitDisputeResolve() public {
        vm.prank(provider);
        v4.submit(J, OUT, ProofVectors.proof());
        vm.prank(requester);
        v4.dispute(J, keccak256("task"), keccak256("result"));
        vm.prank(operator);
        v4.resolve(J, true);
        assertEq(usdc.balanceOf(provider), AMOUNT, "paid");
    }
}
