// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Vm} from "./Test.sol";
import {EdgentEscrow} from "../../src/EdgentEscrow.sol";

// A provider key commitment for tests that do not look at proofs (any value
//         below the BN254 scalar field is a valid stake term).
bytes32 constant TEST_KEY = bytes32(uint256(0x0ed6e47));

/// @notice A verifier that accepts every proof: the lifecycle tests (timing, fuzz,
///         invariants, tokens) run with it so they need no proof per random job id.
///         The proof checks themselves run against the real verifier in
///         EdgentEscrowProof.t.sol, with proofs made by edgent's prover.
contract AcceptAllVerifier {
    function verifyProof(uint256[2] calldata, uint256[2][2] calldata, uint256[2] calldata, uint256[4] calldata)
        external
        pure
        returns (bool)
    {
        return true;
    }
}

/// @notice Test helpers around the escrow's proof check.
library TestProofs {
    /// @notice Replace `escrow`'s verifier with AcceptAllVerifier's code.
    function acceptAll(Vm vm, EdgentEscrow escrow) internal {
        vm.etch(address(escrow.verifier()), address(new AcceptAllVerifier()).code);
    }

    /// @notice A proof the AcceptAllVerifier takes (the real one refuses it).
    function any() internal pure returns (uint256[8] memory p) {
        p[0] = 1;
        p[1] = 2;
    }
}
