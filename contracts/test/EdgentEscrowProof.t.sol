// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EscrowFixture} from "./utils/EscrowFixture.sol";
import {EdgentEscrow} from "../src/EdgentEscrow.sol";
import {ProofVectors} from "./vectors/ProofVectors.sol";

/// @notice `submit` against the real verifier (exported by snarkjs from the committed key)
///         with a proof made by edgent's Rust prover (test/vectors/make.sh): the escrow
///         derives the public signals itself from the job id, the stake's key commitment
///         and the submitted output commitment, so a proof for anything else reverts.
contract EdgentEscrowProofTest is EscrowFixture {
    uint256 internal constant SNARK_FIELD =
        21888242871839275222246405745257275088548364400416034343698204186575808495617;
    uint256 internal constant BASE_FIELD =
        21888242871839275222246405745257275088696311157297823662689037894645226208583;

    function setUp() public override {
        super.setUp();
        // The fixture's escrow accepts every proof; this suite needs the real verifier.
        escrow = new EdgentEscrow(address(usdc), operator);
        vm.prank(requester);
        usdc.approve(address(escrow), type(uint256).max);
    }

    function _stakeFor(bytes32 jobId, bytes32 keyCommitment) internal {
        vm.prank(requester);
        escrow.stake(jobId, provider, keyCommitment, AMOUNT, _deadline());
    }

    function _invalid(bytes32 jobId) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(EdgentEscrow.InvalidProof.selector, jobId);
    }

    function test_verifier_acceptsTheRustProversProof() public view {
        uint256[8] memory p = ProofVectors.proof();
        uint256 id = uint256(ProofVectors.JOB);
        bool ok = escrow.verifier()
            .verifyProof(
                [p[0], p[1]],
                [[p[2], p[3]], [p[4], p[5]]],
                [p[6], p[7]],
                [uint256(ProofVectors.OUTPUT), uint256(ProofVectors.KEY), id >> 128, id & type(uint128).max]
            );
        assertTrue(ok, "the exported verifier accepts the committed key's proof");
    }

    function test_submit_withTheJobsProofRecordsAndPays() public {
        _stakeFor(ProofVectors.JOB, ProofVectors.KEY);
        vm.expectEmit(true, false, false, true, address(escrow));
        emit EdgentEscrow.Submitted(ProofVectors.JOB, ProofVectors.OUTPUT);
        vm.prank(provider);
        escrow.submit(ProofVectors.JOB, ProofVectors.OUTPUT, ProofVectors.proof());

        EdgentEscrow.Stake memory s = escrow.getStake(ProofVectors.JOB);
        assertEq(uint256(s.status), uint256(EdgentEscrow.Status.Submitted), "submitted");
        assertEq(s.outputHash, ProofVectors.OUTPUT, "output commitment recorded");
        assertEq(s.keyCommitment, ProofVectors.KEY, "key commitment kept");
        vm.prank(operator);
        escrow.release(ProofVectors.JOB, ProofVectors.OUTPUT);
        assertEq(usdc.balanceOf(provider), AMOUNT, "provider paid");
    }

    function test_submit_proofForAnotherJobReverts() public {
        bytes32 other = bytes32(uint256(ProofVectors.JOB) + 1);
        _stakeFor(other, ProofVectors.KEY);
        vm.prank(provider);
        vm.expectRevert(_invalid(other));
        escrow.submit(other, ProofVectors.OUTPUT, ProofVectors.proof());
        // Only the high half differs.
        bytes32 otherHi = ProofVectors.JOB ^ bytes32(uint256(1) << 200);
        _stakeFor(otherHi, ProofVectors.KEY);
        vm.prank(provider);
        vm.expectRevert(_invalid(otherHi));
        escrow.submit(otherHi, ProofVectors.OUTPUT, ProofVectors.proof());
        assertEq(uint256(_status(other)), uint256(EdgentEscrow.Status.Staked), "still refundable");
    }

    function test_submit_proofForAnotherKeyReverts() public {
        bytes32 otherKey = bytes32(uint256(ProofVectors.KEY) + 1);
        _stakeFor(ProofVectors.JOB, otherKey);
        vm.prank(provider);
        vm.expectRevert(_invalid(ProofVectors.JOB));
        escrow.submit(ProofVectors.JOB, ProofVectors.OUTPUT, ProofVectors.proof());
        assertEq(uint256(_status(ProofVectors.JOB)), uint256(EdgentEscrow.Status.Staked), "still staked");
    }

    function test_submit_proofForAnotherOutputReverts() public {
        _stakeFor(ProofVectors.JOB, ProofVectors.KEY);
        bytes32 otherOutput = bytes32(uint256(ProofVectors.OUTPUT) + 1);
        vm.prank(provider);
        vm.expectRevert(_invalid(ProofVectors.JOB));
        escrow.submit(ProofVectors.JOB, otherOutput, ProofVectors.proof());
        // The same output plus the field's modulus is the same field element: refused too.
        bytes32 aliased = bytes32(uint256(ProofVectors.OUTPUT) + SNARK_FIELD);
        vm.prank(provider);
        vm.expectRevert(_invalid(ProofVectors.JOB));
        escrow.submit(ProofVectors.JOB, aliased, ProofVectors.proof());
        // The right output still goes through afterwards.
        vm.prank(provider);
        escrow.submit(ProofVectors.JOB, ProofVectors.OUTPUT, ProofVectors.proof());
        assertEq(uint256(_status(ProofVectors.JOB)), uint256(EdgentEscrow.Status.Submitted), "submitted");
    }

    function test_submit_malformedProofsRevert() public {
        _stakeFor(ProofVectors.JOB, ProofVectors.KEY);
        uint256[8][5] memory bad;
        for (uint256 i = 0; i < 5; i++) {
            bad[i] = ProofVectors.proof();
        }
        bad[0][0] += 1; // A off the curve
        bad[1] = [uint256(0), 0, 0, 0, 0, 0, 0, 0]; // all zero
        bad[2][6] = BASE_FIELD + bad[2][6]; // C's x not reduced
        (bad[3][2], bad[3][3]) = (bad[3][3], bad[3][2]); // B's coordinates in the wrong order
        (bad[4][0], bad[4][6]) = (bad[4][6], bad[4][0]); // A and C mixed up
        for (uint256 i = 0; i < 5; i++) {
            vm.prank(provider);
            vm.expectRevert(_invalid(ProofVectors.JOB));
            escrow.submit{gas: 1_000_000}(ProofVectors.JOB, ProofVectors.OUTPUT, bad[i]);
        }
        assertEq(uint256(_status(ProofVectors.JOB)), uint256(EdgentEscrow.Status.Staked), "still staked");
    }

    function test_submit_theProofDoesNotLetAnotherSenderSubmit() public {
        _stakeFor(ProofVectors.JOB, ProofVectors.KEY);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.NotProvider.selector, stranger));
        escrow.submit(ProofVectors.JOB, ProofVectors.OUTPUT, ProofVectors.proof());
    }

    function test_stake_keyCommitmentOutsideTheFieldReverts() public {
        bytes32 big = bytes32(SNARK_FIELD);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.KeyCommitmentOutOfField.selector, big));
        escrow.stake(ProofVectors.JOB, provider, big, AMOUNT, _deadline());
    }
}
