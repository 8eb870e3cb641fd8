// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test, Vm} from "../utils/Test.sol";
import {EdgentEscrowV4} from "../../src/EdgentEscrowV4.sol";
import {TEST_KEY} from "../utils/AcceptAllVerifier.sol";
import {MockUSDC} from "../../src/MockUSDC.sol";

/// @notice A verifier with a notion of valid and invalid proofs, cheap enough for
///         random job ids: a proof is valid iff its first word is the keccak256 of
///         the public signals (the escrow derives those itself, as with the real one).
contract KeyedVerifier {
    function verifyProof(uint256[2] calldata a, uint256[2][2] calldata, uint256[2] calldata, uint256[4] calldata input)
        external
        pure
        returns (bool)
    {
        return a[0] == uint256(keccak256(abi.encode(input)));
    }
}

/// @notice A proof KeyedVerifier accepts for (jobId, outputHash, keyCommitment).
function keyedProof(bytes32 jobId, bytes32 outputHash, bytes32 keyCommitment) pure returns (uint256[8] memory p) {
    uint256 id = uint256(jobId);
    uint256[4] memory input = [uint256(outputHash), uint256(keyCommitment), id >> 128, id & type(uint128).max];
    p[0] = uint256(keccak256(abi.encode(input)));
}

/// @notice Drives the version-4 escrow with random stake / submit (valid or not) /
///         release / dispute / resolve / finalize / decline / refund / warp sequences
///         from the right roles and wrong ones, and keeps its own books from the
///         balances: per job, whether a valid submit happened, whether it was
///         disputed, and every payout (how much, to whom, by whose call).
contract EscrowV4Handler {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    EdgentEscrowV4 public immutable escrow;
    MockUSDC public immutable usdc;
    address public immutable arbiter;
    address public immutable stranger;
    address[3] internal requesters;
    address[3] internal providers;

    bytes32[] public jobIds;
    mapping(bytes32 => bool) public submitted; // a submit succeeded (so its proof was valid)
    mapping(bytes32 => bool) public disputed;
    mapping(bytes32 => uint256) public payouts;
    mapping(bytes32 => uint256) public paidOut;
    mapping(bytes32 => address) public paidTo;
    mapping(bytes32 => address) public paidBy; // whose call moved the money
    uint256 public wrongCallerSuccesses;
    uint256 public invalidProofSuccesses;
    mapping(string => uint256) public calls;

    constructor(EdgentEscrowV4 escrow_, MockUSDC usdc_, address arbiter_, address stranger_) {
        escrow = escrow_;
        usdc = usdc_;
        arbiter = arbiter_;
        stranger = stranger_;
        for (uint256 i = 0; i < 3; i++) {
            requesters[i] = vm.addr(1000 + i);
            providers[i] = vm.addr(2000 + i);
            vm.prank(requesters[i]);
            usdc_.approve(address(escrow_), type(uint256).max);
        }
    }

    function jobCount() external view returns (uint256) {
        return jobIds.length;
    }

    function actors() external view returns (address[8] memory all) {
        for (uint256 i = 0; i < 3; i++) {
            all[i] = requesters[i];
            all[3 + i] = providers[i];
        }
        all[6] = stranger;
        all[7] = arbiter;
    }

    function _bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        return lo + (x % (hi - lo + 1));
    }

    function _pick(uint256 seed) internal view returns (bytes32 jobId, bool ok) {
        if (jobIds.length == 0) return (bytes32(0), false);
        return (jobIds[seed % jobIds.length], true);
    }

    /// @dev Run `data` as `caller`; if the escrow's balance fell, book the payout.
    function _act(bytes32 jobId, address caller, bytes memory data, string memory action) internal returns (bool) {
        EdgentEscrowV4.Stake memory s = escrow.getStake(jobId);
        uint256 escrowBefore = usdc.balanceOf(address(escrow));
        uint256 reqBefore = usdc.balanceOf(s.requester);
        uint256 provBefore = usdc.balanceOf(s.provider);
        vm.prank(caller);
        (bool ok,) = address(escrow).call(data);
        if (!ok) return false;
        calls[action] += 1;
        uint256 escrowAfter = usdc.balanceOf(address(escrow));
        if (escrowAfter < escrowBefore) {
            payouts[jobId] += 1;
            paidOut[jobId] += escrowBefore - escrowAfter;
            paidBy[jobId] = caller;
            if (usdc.balanceOf(s.provider) > provBefore) paidTo[jobId] = s.provider;
            if (usdc.balanceOf(s.requester) > reqBefore) paidTo[jobId] = s.requester;
        }
        return true;
    }

    function stake(uint256 seed, uint256 amount, uint256 window) external {
        address requester = requesters[seed % 3];
        address provider = providers[(seed / 3) % 3];
        amount = _bound(amount, 1, 1_000e6);
        uint64 deadline = uint64(block.timestamp + _bound(window, 1, 30 minutes));
        usdc.mint(requester, amount);
        bytes32 jobId = keccak256(abi.encode("job", jobIds.length));
        vm.prank(requester);
        escrow.stake(jobId, provider, TEST_KEY, amount, deadline);
        jobIds.push(jobId);
        calls["stake"] += 1;
    }

    function submit(uint256 seed, bytes32 outputHash, bool valid) external {
        (bytes32 jobId, bool ok) = _pick(seed);
        if (!ok) return;
        uint256[8] memory proof = keyedProof(jobId, outputHash, TEST_KEY);
        if (!valid) proof[0] ^= 1 + (seed % 255); // any other word: invalid
        bool done = _act(
            jobId,
            escrow.getStake(jobId).provider,
            abi.encodeCall(EdgentEscrowV4.submit, (jobId, outputHash, proof)),
            valid ? "submit" : "submit (invalid proof)"
        );
        if (done && valid) submitted[jobId] = true;
        if (done && !valid) invalidProofSuccesses += 1;
    }

    function release(uint256 seed, bool useSubmittedHash, bytes32 otherHash) external {
        (bytes32 jobId, bool ok) = _pick(seed);
        if (!ok) return;
        EdgentEscrowV4.Stake memory s = escrow.getStake(jobId);
        bytes32 h = useSubmittedHash ? s.outputHash : otherHash;
        _act(jobId, s.requester, abi.encodeCall(EdgentEscrowV4.release, (jobId, h)), "release");
    }

    function dispute(uint256 seed, bytes32 taskHash, bytes32 resultHash) external {
        (bytes32 jobId, bool ok) = _pick(seed);
        if (!ok) return;
        bool done = _act(
            jobId,
            escrow.getStake(jobId).requester,
            abi.encodeCall(EdgentEscrowV4.dispute, (jobId, taskHash, resultHash)),
            "dispute"
        );
        if (done) disputed[jobId] = true;
    }

    function resolve(uint256 seed, bool payProvider) external {
        (bytes32 jobId, bool ok) = _pick(seed);
        if (!ok) return;
        _act(
            jobId,
            arbiter,
            abi.encodeCall(EdgentEscrowV4.resolve, (jobId, payProvider)),
            payProvider ? "resolve: pay" : "resolve: refund"
        );
    }

    /// @dev Anyone may finalize: the caller is any actor.
    function finalize(uint256 seed, uint8 who) external {
        (bytes32 jobId, bool ok) = _pick(seed);
        if (!ok) return;
        address caller = this.actors()[who % 8];
        _act(jobId, caller, abi.encodeCall(EdgentEscrowV4.finalize, (jobId)), "finalize");
    }

    function decline(uint256 seed) external {
        (bytes32 jobId, bool ok) = _pick(seed);
        if (!ok) return;
        _act(jobId, escrow.getStake(jobId).provider, abi.encodeCall(EdgentEscrowV4.decline, (jobId)), "decline");
    }

    function refund(uint256 seed) external {
        (bytes32 jobId, bool ok) = _pick(seed);
        if (!ok) return;
        _act(jobId, escrow.getStake(jobId).requester, abi.encodeCall(EdgentEscrowV4.refund, (jobId)), "refund");
    }

    /// @dev A party in the wrong role tries a role-bound call; none may succeed.
    function meddle(uint256 seed, uint8 which) external {
        (bytes32 jobId, bool ok) = _pick(seed);
        if (!ok) return;
        EdgentEscrowV4.Stake memory s = escrow.getStake(jobId);
        bytes memory valid = abi.encodeCall(
            EdgentEscrowV4.submit, (jobId, bytes32(uint256(7)), keyedProof(jobId, bytes32(uint256(7)), TEST_KEY))
        );
        bytes[6] memory attempts = [
            abi.encodeCall(EdgentEscrowV4.release, (jobId, s.outputHash)), // requester's
            abi.encodeCall(EdgentEscrowV4.dispute, (jobId, bytes32(0), bytes32(0))), // requester's
            abi.encodeCall(EdgentEscrowV4.refund, (jobId)), // requester's
            valid, // provider's
            abi.encodeCall(EdgentEscrowV4.decline, (jobId)), // provider's
            abi.encodeCall(EdgentEscrowV4.resolve, (jobId, seed % 2 == 0)) // arbiter's
        ];
        address[4] memory callers = [stranger, s.requester, s.provider, arbiter];
        address caller = callers[seed % 4];
        uint256 i = which % 6;
        if (caller == s.requester && i <= 2) i = 3 + (which % 3);
        if (caller == s.provider && (i == 3 || i == 4)) i = which % 3;
        if (caller == arbiter && i == 5) i = which % 5;
        vm.prank(caller);
        (bool success,) = address(escrow).call(attempts[i]);
        if (success) wrongCallerSuccesses += 1;
    }

    function warp(uint256 dt) external {
        vm.warp(block.timestamp + _bound(dt, 0, 10 minutes));
        calls["warp"] += 1;
    }
}

/// @notice The fair-exchange invariants of the version-4 escrow.
contract EdgentEscrowV4InvariantTest is Test {
    EdgentEscrowV4 internal escrow;
    MockUSDC internal usdc;
    EscrowV4Handler internal handler;
    address internal arbiter;

    function setUp() public {
        vm.warp(1_700_000_000);
        usdc = new MockUSDC();
        arbiter = makeAddr("arbiter");
        escrow = new EdgentEscrowV4(address(usdc), arbiter, 180);
        vm.etch(address(escrow.verifier()), address(new KeyedVerifier()).code);
        handler = new EscrowV4Handler(escrow, usdc, arbiter, makeAddr("stranger"));
        targetContract(address(handler));
    }

    function _live(EdgentEscrowV4.Status s) internal pure returns (bool) {
        return s == EdgentEscrowV4.Status.Staked || s == EdgentEscrowV4.Status.Submitted
            || s == EdgentEscrowV4.Status.Disputed;
    }

    function _toProvider(EdgentEscrowV4.Status s) internal pure returns (bool) {
        return s == EdgentEscrowV4.Status.Released || s == EdgentEscrowV4.Status.Finalized
            || s == EdgentEscrowV4.Status.ResolvedPaid;
    }

    /// @notice USDC is conserved: the balances of every party plus the escrow's are the supply.
    function invariant_usdcConserved() public view {
        address[8] memory all = handler.actors();
        uint256 sum = usdc.balanceOf(address(escrow));
        for (uint256 i = 0; i < all.length; i++) {
            sum += usdc.balanceOf(all[i]);
        }
        assertEq(sum, usdc.totalSupply(), "USDC created or destroyed");
    }

    function invariant_escrowHoldsExactlyLiveStakes() public view {
        uint256 live;
        uint256 n = handler.jobCount();
        for (uint256 i = 0; i < n; i++) {
            EdgentEscrowV4.Stake memory s = escrow.getStake(handler.jobIds(i));
            if (_live(s.status)) live += s.amount;
        }
        assertEq(usdc.balanceOf(address(escrow)), live, "escrow balance == sum of live stakes");
    }

    function invariant_eachJobPaysOnceInFullToTheRightParty() public view {
        uint256 n = handler.jobCount();
        for (uint256 i = 0; i < n; i++) {
            bytes32 id = handler.jobIds(i);
            EdgentEscrowV4.Stake memory s = escrow.getStake(id);
            uint256 payouts = handler.payouts(id);
            assertLe(payouts, 1, "a job paid out more than once");
            if (_live(s.status)) {
                assertEq(payouts, 0, "a live job paid out");
            } else {
                assertEq(payouts, 1, "a settled job did not pay out");
                assertEq(handler.paidOut(id), s.amount, "payout != stake");
                assertEq(handler.paidTo(id), _toProvider(s.status) ? s.provider : s.requester, "wrong party");
            }
        }
    }

    /// @notice No stake moves to the requester after a valid submit without the arbiter.
    function invariant_noRefundAfterSubmitWithoutArbiter() public view {
        uint256 n = handler.jobCount();
        for (uint256 i = 0; i < n; i++) {
            bytes32 id = handler.jobIds(i);
            EdgentEscrowV4.Stake memory s = escrow.getStake(id);
            if (handler.submitted(id) && handler.paidTo(id) == s.requester) {
                assertEq(handler.paidBy(id), arbiter, "refunded after a valid submit, not by the arbiter");
                assertTrue(handler.disputed(id), "refunded after a valid submit without a dispute");
            }
        }
    }

    /// @notice No stake moves to the provider without a valid submit, except by the
    ///         requester's own release.
    function invariant_noPaymentWithoutSubmitOrRequestersRelease() public view {
        uint256 n = handler.jobCount();
        for (uint256 i = 0; i < n; i++) {
            bytes32 id = handler.jobIds(i);
            EdgentEscrowV4.Stake memory s = escrow.getStake(id);
            if (handler.paidTo(id) == s.provider && !handler.submitted(id)) {
                assertEq(handler.paidBy(id), s.requester, "provider paid without a valid submit");
            }
        }
    }

    /// @notice The arbiter moves money only on a dispute.
    function invariant_arbiterActsOnlyOnDisputes() public view {
        uint256 n = handler.jobCount();
        for (uint256 i = 0; i < n; i++) {
            bytes32 id = handler.jobIds(i);
            if (handler.paidBy(id) == arbiter) assertTrue(handler.disputed(id), "arbiter moved an undisputed stake");
        }
    }

    function invariant_invalidProofsNeverAccepted() public view {
        assertEq(handler.invalidProofSuccesses(), 0, "a submit with an invalid proof succeeded");
    }

    function invariant_wrongCallersNeverSucceed() public view {
        assertEq(handler.wrongCallerSuccesses(), 0, "a call from the wrong role succeeded");
    }

    /// @dev Not a check: how far each run got (`./test.sh --match-contract V4Invariant -vv`).
    function afterInvariant() public view {
        string[11] memory names = [
            "stake",
            "submit",
            "release",
            "dispute",
            "resolve: pay",
            "resolve: refund",
            "finalize",
            "decline",
            "refund",
            "submit (invalid proof)",
            "warp"
        ];
        for (uint256 i = 0; i < names.length; i++) {
            (bool ok,) = address(0x000000000000000000636F6e736F6c652e6c6f67)
                .staticcall(abi.encodeWithSignature("log(string,uint256)", names[i], handler.calls(names[i])));
            ok;
        }
    }
}
