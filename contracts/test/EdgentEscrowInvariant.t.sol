// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test, Vm} from "./utils/Test.sol";
import {EdgentEscrow} from "../src/EdgentEscrow.sol";
import {TEST_KEY, TestProofs} from "./utils/AcceptAllVerifier.sol";
import {MockUSDC} from "../src/MockUSDC.sol";

/// @notice forge's console (a precompile-like address the test runner intercepts).
library Console {
    address internal constant CONSOLE = 0x000000000000000000636F6e736F6c652e6c6f67;

    function log(string memory label, uint256 value) internal view {
        (bool ok,) = CONSOLE.staticcall(abi.encodeWithSignature("log(string,uint256)", label, value));
        ok; // logging is best effort
    }
}

/// @notice Drives the escrow with random stake/submit/release/reject/claim/
///         refund/warp sequences from the right roles (and strangers), and
///         keeps its own books: who staked what, and every payout per job,
///         measured from the escrow's USDC balance rather than its own report.
contract EscrowHandler {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    EdgentEscrow public immutable escrow;
    MockUSDC public immutable usdc;
    address public immutable operator;
    address public immutable stranger;
    address[3] internal requesters;
    address[3] internal providers;

    bytes32[] public jobIds;
    mapping(bytes32 => uint256) public payouts; // how many times money left the escrow for the job
    mapping(bytes32 => uint256) public paidOut; // how much left
    mapping(bytes32 => address) public paidTo; // who received it
    uint256 public strangerSuccesses;
    mapping(string => uint256) public calls; // successful calls per action, for the summary

    constructor(EdgentEscrow escrow_, MockUSDC usdc_, address operator_, address stranger_) {
        escrow = escrow_;
        usdc = usdc_;
        operator = operator_;
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

    function actors() external view returns (address[7] memory all) {
        for (uint256 i = 0; i < 3; i++) {
            all[i] = requesters[i];
            all[3 + i] = providers[i];
        }
        all[6] = stranger;
    }

    function _bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        return lo + (x % (hi - lo + 1));
    }

    function _pick(uint256 seed) internal view returns (bytes32 jobId, bool ok) {
        if (jobIds.length == 0) return (bytes32(0), false);
        return (jobIds[seed % jobIds.length], true);
    }

    /// @dev Run `data` against the escrow as `caller`; if the escrow's balance
    ///      fell, book a payout for `jobId` to whichever party's balance rose.
    function _settle(bytes32 jobId, address caller, bytes memory data, string memory action) internal {
        EdgentEscrow.Stake memory s = escrow.getStake(jobId);
        uint256 escrowBefore = usdc.balanceOf(address(escrow));
        uint256 reqBefore = usdc.balanceOf(s.requester);
        uint256 provBefore = usdc.balanceOf(s.provider);
        vm.prank(caller);
        (bool ok,) = address(escrow).call(data);
        if (!ok) return;
        calls[action] += 1;
        uint256 escrowAfter = usdc.balanceOf(address(escrow));
        if (escrowAfter < escrowBefore) {
            payouts[jobId] += 1;
            paidOut[jobId] += escrowBefore - escrowAfter;
            if (usdc.balanceOf(s.provider) > provBefore) paidTo[jobId] = s.provider;
            if (usdc.balanceOf(s.requester) > reqBefore) paidTo[jobId] = s.requester;
        }
    }

    function stake(uint256 seed, uint256 amount, uint256 window) external {
        address requester = requesters[seed % 3];
        address provider = providers[(seed / 3) % 3];
        amount = _bound(amount, 1, 1_000e6);
        uint64 deadline = uint64(block.timestamp + _bound(window, 1, 3 hours));
        usdc.mint(requester, amount);
        bytes32 jobId = keccak256(abi.encode("job", jobIds.length));
        vm.prank(requester);
        escrow.stake(jobId, provider, TEST_KEY, amount, deadline);
        jobIds.push(jobId);
        calls["stake"] += 1;
    }

    /// @dev A stake made with the requester's EIP-3009 authorization, submitted by the provider.
    function stakeWithAuthorization(uint256 seed, uint256 amount, uint256 window) external {
        uint256 i = seed % 3;
        address provider = providers[(seed / 3) % 3];
        amount = _bound(amount, 1, 1_000e6);
        uint64 deadline = uint64(block.timestamp + _bound(window, 1, 3 hours));
        usdc.mint(requesters[i], amount);
        bytes32 jobId = keccak256(abi.encode("job", jobIds.length));
        (uint8 v, bytes32 r, bytes32 s) = _signStake(i, jobId, provider, amount, deadline);
        vm.prank(provider);
        escrow.stakeWithAuthorization(
            jobId, requesters[i], provider, TEST_KEY, amount, deadline, 0, block.timestamp + 1 hours, v, r, s
        );
        jobIds.push(jobId);
        calls["stakeWithAuthorization"] += 1;
    }

    function _signStake(uint256 i, bytes32 jobId, address provider, uint256 amount, uint64 deadline)
        internal
        view
        returns (uint8, bytes32, bytes32)
    {
        bytes32 nonce = escrow.stakeNonce(jobId, requesters[i], provider, TEST_KEY, amount, deadline);
        bytes32 structHash = keccak256(
            abi.encode(
                usdc.RECEIVE_WITH_AUTHORIZATION_TYPEHASH(),
                requesters[i],
                address(escrow),
                amount,
                0,
                block.timestamp + 1 hours,
                nonce
            )
        );
        return vm.sign(1000 + i, keccak256(abi.encodePacked("\x19\x01", usdc.DOMAIN_SEPARATOR(), structHash)));
    }

    function decline(uint256 seed) external {
        (bytes32 jobId, bool ok) = _pick(seed);
        if (!ok) return;
        _settle(jobId, escrow.getStake(jobId).provider, abi.encodeCall(EdgentEscrow.decline, (jobId)), "decline");
    }

    function submit(uint256 seed, bytes32 outputHash) external {
        (bytes32 jobId, bool ok) = _pick(seed);
        if (!ok) return;
        _settle(
            jobId,
            escrow.getStake(jobId).provider,
            abi.encodeCall(EdgentEscrow.submit, (jobId, outputHash, TestProofs.any())),
            "submit"
        );
    }

    function release(uint256 seed, bool useSubmittedHash, bytes32 otherHash) external {
        (bytes32 jobId, bool ok) = _pick(seed);
        if (!ok) return;
        bytes32 h = useSubmittedHash ? escrow.getStake(jobId).outputHash : otherHash;
        _settle(jobId, operator, abi.encodeCall(EdgentEscrow.release, (jobId, h)), "release");
    }

    function reject(uint256 seed) external {
        (bytes32 jobId, bool ok) = _pick(seed);
        if (!ok) return;
        _settle(jobId, operator, abi.encodeCall(EdgentEscrow.reject, (jobId)), "reject");
    }

    function claimTimeout(uint256 seed) external {
        (bytes32 jobId, bool ok) = _pick(seed);
        if (!ok) return;
        _settle(jobId, escrow.getStake(jobId).provider, abi.encodeCall(EdgentEscrow.claimTimeout, (jobId)), "claim");
    }

    function refund(uint256 seed) external {
        (bytes32 jobId, bool ok) = _pick(seed);
        if (!ok) return;
        _settle(jobId, escrow.getStake(jobId).requester, abi.encodeCall(EdgentEscrow.refund, (jobId)), "refund");
    }

    /// @dev A stranger (or a party in the wrong role) tries every settlement; none may succeed.
    function meddle(uint256 seed, uint8 which) external {
        (bytes32 jobId, bool ok) = _pick(seed);
        if (!ok) return;
        EdgentEscrow.Stake memory s = escrow.getStake(jobId);
        bytes[6] memory attempts = [
            abi.encodeCall(EdgentEscrow.release, (jobId, s.outputHash)),
            abi.encodeCall(EdgentEscrow.reject, (jobId)),
            abi.encodeCall(EdgentEscrow.claimTimeout, (jobId)),
            abi.encodeCall(EdgentEscrow.refund, (jobId)),
            abi.encodeCall(EdgentEscrow.submit, (jobId, bytes32(uint256(1)), TestProofs.any())),
            abi.encodeCall(EdgentEscrow.decline, (jobId))
        ];
        // Requester cannot release/reject/claim/submit/decline; provider cannot release/reject/refund.
        address[3] memory wrongCallers = [stranger, s.requester, s.provider];
        address caller = wrongCallers[seed % 3];
        uint256 i = which % 6;
        if (caller == s.requester && i == 3) i = 2; // refund is the requester's own
        if (caller == s.provider && (i == 2 || i == 4 || i == 5)) i = 3; // claim/submit/decline are the provider's own
        vm.prank(caller);
        (bool success,) = address(escrow).call(attempts[i]);
        if (success) strangerSuccesses += 1;
    }

    function warp(uint256 dt) external {
        vm.warp(block.timestamp + _bound(dt, 0, 2 hours));
        calls["warp"] += 1;
    }
}

/// @notice Invariants: the escrow holds exactly the live stakes, and no job
///         ever pays out twice (or to the wrong party, or by a wrong caller).
contract EdgentEscrowInvariantTest is Test {
    EdgentEscrow internal escrow;
    MockUSDC internal usdc;
    EscrowHandler internal handler;

    function setUp() public {
        vm.warp(1_700_000_000);
        usdc = new MockUSDC();
        address operator = makeAddr("operator");
        escrow = new EdgentEscrow(address(usdc), operator);
        TestProofs.acceptAll(vm, escrow);
        handler = new EscrowHandler(escrow, usdc, operator, makeAddr("stranger"));
        targetContract(address(handler));
    }

    function _live(EdgentEscrow.Status s) internal pure returns (bool) {
        return s == EdgentEscrow.Status.Staked || s == EdgentEscrow.Status.Submitted;
    }

    function invariant_escrowHoldsExactlyLiveStakes() public view {
        uint256 live;
        uint256 n = handler.jobCount();
        for (uint256 i = 0; i < n; i++) {
            EdgentEscrow.Stake memory s = escrow.getStake(handler.jobIds(i));
            if (_live(s.status)) live += s.amount;
        }
        assertEq(usdc.balanceOf(address(escrow)), live, "escrow balance == sum of Staked|Submitted stakes");
    }

    function invariant_eachJobPaysOutAtMostOnceInFull() public view {
        uint256 n = handler.jobCount();
        for (uint256 i = 0; i < n; i++) {
            bytes32 id = handler.jobIds(i);
            EdgentEscrow.Stake memory s = escrow.getStake(id);
            uint256 payouts = handler.payouts(id);
            assertLe(payouts, 1, "a job paid out more than once");
            if (_live(s.status)) {
                assertEq(payouts, 0, "a live job paid out");
            } else {
                assertEq(payouts, 1, "a settled job did not pay out");
                assertEq(handler.paidOut(id), s.amount, "payout != stake");
                bool toProvider = s.status == EdgentEscrow.Status.Released || s.status == EdgentEscrow.Status.Claimed;
                assertEq(handler.paidTo(id), toProvider ? s.provider : s.requester, "paid to the wrong party");
            }
        }
    }

    function invariant_wrongCallersNeverSucceed() public view {
        assertEq(handler.strangerSuccesses(), 0, "a call from the wrong role succeeded");
    }

    /// @dev Not a check: prints how far each run got (`./test.sh --match-contract Invariant -vv`),
    ///      so a handler that stopped reaching the settlements is noticed.
    function afterInvariant() public view {
        Console.log("jobs staked", handler.jobCount());
        Console.log("submits", handler.calls("submit"));
        Console.log("releases", handler.calls("release"));
        Console.log("rejects", handler.calls("reject"));
        Console.log("claims", handler.calls("claim"));
        Console.log("refunds", handler.calls("refund"));
        Console.log("declines", handler.calls("decline"));
        Console.log("stakes by authorization", handler.calls("stakeWithAuthorization"));
    }

    function invariant_usdcConserved() public view {
        address[7] memory all = handler.actors();
        uint256 sum = usdc.balanceOf(address(escrow));
        for (uint256 i = 0; i < all.length; i++) {
            sum += usdc.balanceOf(all[i]);
        }
        assertEq(sum, usdc.totalSupply(), "USDC created or destroyed");
    }
}
