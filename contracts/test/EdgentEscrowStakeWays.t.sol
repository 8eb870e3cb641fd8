// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EscrowFixture} from "./utils/EscrowFixture.sol";
import {EdgentEscrow} from "../src/EdgentEscrow.sol";
import {TEST_KEY, TestProofs} from "./utils/AcceptAllVerifier.sol";
import {MockUSDC} from "../src/MockUSDC.sol";

/// @notice version(), decline, and the two one-transaction stakes: stakeWithPermit
///         (EIP-2612) and stakeWithAuthorization (EIP-3009, submitted by the provider).
contract EdgentEscrowStakeWaysTest is EscrowFixture {
    uint256 internal constant PAYER_KEY = 0xB0B;
    address internal payer; // a requester with USDC, no allowance and no ETH

    function setUp() public override {
        super.setUp();
        payer = vm.addr(PAYER_KEY);
        usdc.mint(payer, FUNDS);
    }

    // ------------------------------------------------------------------ helpers

    function _digest(bytes32 structHash) internal view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", usdc.DOMAIN_SEPARATOR(), structHash));
    }

    struct Terms {
        bytes32 jobId;
        address requester;
        address provider;
        uint256 amount;
        uint64 deadline;
        uint256 validAfter;
        uint256 validBefore;
    }

    function _terms(bytes32 jobId) internal view returns (Terms memory t) {
        t = Terms(jobId, payer, provider, AMOUNT, _deadline(), 0, block.timestamp + 5 minutes);
    }

    /// @dev What a requester signs: ReceiveWithAuthorization to the escrow, nonce = the stake's terms.
    function _authorize(uint256 key, Terms memory t) internal view returns (uint8 v, bytes32 r, bytes32 s) {
        bytes32 nonce = keccak256(abi.encode(t.jobId, t.requester, t.provider, TEST_KEY, t.amount, t.deadline));
        bytes32 h = keccak256(
            abi.encode(
                usdc.RECEIVE_WITH_AUTHORIZATION_TYPEHASH(),
                t.requester,
                address(escrow),
                t.amount,
                t.validAfter,
                t.validBefore,
                nonce
            )
        );
        return vm.sign(key, _digest(h));
    }

    function _submitAuth(Terms memory t, uint8 v, bytes32 r, bytes32 s) internal {
        escrow.stakeWithAuthorization(
            t.jobId, t.requester, t.provider, TEST_KEY, t.amount, t.deadline, t.validAfter, t.validBefore, v, r, s
        );
    }

    // ------------------------------------------------------------------ version

    function test_version_isThree() public view {
        assertEq(escrow.version(), 3, "interface version");
    }

    // ------------------------------------------------------------------ decline

    function test_decline_refundsRequesterAtOnceAndEmits() public {
        _stake(JOB);
        uint256 before = usdc.balanceOf(requester);
        vm.expectEmit(true, true, false, true, address(escrow));
        emit EdgentEscrow.Declined(JOB, requester, AMOUNT);
        vm.prank(provider);
        escrow.decline(JOB);
        assertEq(usdc.balanceOf(requester), before + AMOUNT, "requester refunded in the same transaction");
        assertEq(usdc.balanceOf(address(escrow)), 0, "escrow empty");
        assertEq(usdc.balanceOf(provider), 0, "provider paid nothing");
        assertEq(uint256(_status(JOB)), uint256(EdgentEscrow.Status.Declined), "status Declined");
    }

    function test_decline_onlyTheProvider() public {
        _stake(JOB);
        address[3] memory others = [requester, operator, stranger];
        for (uint256 i = 0; i < 3; i++) {
            vm.prank(others[i]);
            vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.NotProvider.selector, others[i]));
            escrow.decline(JOB);
        }
        assertEq(uint256(_status(JOB)), uint256(EdgentEscrow.Status.Staked), "still staked");
    }

    function test_decline_unknownJob() public {
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.UnknownJob.selector, JOB));
        escrow.decline(JOB);
    }

    function test_decline_onlyFromStaked() public {
        _stake(JOB);
        _submit(JOB);
        vm.prank(provider);
        vm.expectRevert(_wrongStatus(JOB, EdgentEscrow.Status.Submitted));
        escrow.decline(JOB);

        bytes32 job2 = keccak256("job-2");
        _stake(job2);
        vm.prank(provider);
        escrow.decline(job2);
        vm.prank(provider);
        vm.expectRevert(_wrongStatus(job2, EdgentEscrow.Status.Declined));
        escrow.decline(job2);
    }

    function test_decline_isFinal() public {
        uint64 deadline = _stake(JOB);
        vm.prank(provider);
        escrow.decline(JOB);
        vm.prank(operator);
        vm.expectRevert(_wrongStatus(JOB, EdgentEscrow.Status.Declined));
        escrow.release(JOB, HASH);
        vm.prank(operator);
        vm.expectRevert(_wrongStatus(JOB, EdgentEscrow.Status.Declined));
        escrow.reject(JOB);
        vm.prank(provider);
        vm.expectRevert(_wrongStatus(JOB, EdgentEscrow.Status.Declined));
        escrow.submit(JOB, HASH, TestProofs.any());
        vm.warp(deadline + 1);
        vm.prank(requester);
        vm.expectRevert(_wrongStatus(JOB, EdgentEscrow.Status.Declined));
        escrow.refund(JOB);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.JobExists.selector, JOB));
        escrow.stake(JOB, provider, TEST_KEY, AMOUNT, _deadline());
    }

    function test_decline_worksAfterTheDeadlineToo() public {
        uint64 deadline = _stake(JOB);
        vm.warp(deadline + 100);
        vm.prank(provider);
        escrow.decline(JOB);
        assertEq(usdc.balanceOf(requester), FUNDS, "refunded");
    }

    // ------------------------------------------------------------------ stakeWithPermit

    function test_stakeWithPermit_oneTransactionNoPriorApprove() public {
        uint64 deadline = _deadline();
        bytes32 h = keccak256(
            abi.encode(usdc.PERMIT_TYPEHASH(), payer, address(escrow), AMOUNT, usdc.nonces(payer), block.timestamp + 60)
        );
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(PAYER_KEY, _digest(h));
        vm.expectEmit(true, true, true, true, address(escrow));
        emit EdgentEscrow.Staked(JOB, payer, provider, AMOUNT, deadline);
        vm.prank(payer);
        escrow.stakeWithPermit(JOB, provider, TEST_KEY, AMOUNT, deadline, block.timestamp + 60, v, r, s);
        assertEq(usdc.balanceOf(address(escrow)), AMOUNT, "escrow holds the stake");
        assertEq(usdc.balanceOf(payer), FUNDS - AMOUNT, "payer debited");
        assertEq(escrow.getStake(JOB).requester, payer, "requester is the sender");
        assertEq(usdc.allowance(payer, address(escrow)), 0, "allowance spent exactly");
    }

    function test_stakeWithPermit_frontRunPermitStillStakes() public {
        uint64 deadline = _deadline();
        bytes32 h = keccak256(
            abi.encode(usdc.PERMIT_TYPEHASH(), payer, address(escrow), AMOUNT, usdc.nonces(payer), block.timestamp + 60)
        );
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(PAYER_KEY, _digest(h));
        // Someone copies the permit out of the mempool and uses it first.
        usdc.permit(payer, address(escrow), AMOUNT, block.timestamp + 60, v, r, s);
        vm.prank(payer);
        escrow.stakeWithPermit(JOB, provider, TEST_KEY, AMOUNT, deadline, block.timestamp + 60, v, r, s);
        assertEq(uint256(_status(JOB)), uint256(EdgentEscrow.Status.Staked), "staked anyway");
    }

    function test_stakeWithPermit_badPermitAndNoAllowanceReverts() public {
        uint64 deadline = _deadline();
        vm.prank(payer);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.InsufficientAllowance.selector, 0, AMOUNT));
        escrow.stakeWithPermit(
            JOB, provider, TEST_KEY, AMOUNT, deadline, block.timestamp + 60, 27, bytes32(0), bytes32(0)
        );
    }

    // ------------------------------------------------------------------ stakeWithAuthorization

    function test_stakeNonce_bindsEveryTerm() public view {
        Terms memory t = _terms(JOB);
        bytes32 n = escrow.stakeNonce(t.jobId, t.requester, t.provider, TEST_KEY, t.amount, t.deadline);
        assertEq(n, keccak256(abi.encode(t.jobId, t.requester, t.provider, TEST_KEY, t.amount, t.deadline)), "formula");
        assertFalse(
            n == escrow.stakeNonce(keccak256("x"), t.requester, t.provider, TEST_KEY, t.amount, t.deadline), "job"
        );
        assertFalse(n == escrow.stakeNonce(t.jobId, stranger, t.provider, TEST_KEY, t.amount, t.deadline), "requester");
        assertFalse(n == escrow.stakeNonce(t.jobId, t.requester, stranger, TEST_KEY, t.amount, t.deadline), "provider");
        assertFalse(
            n == escrow.stakeNonce(t.jobId, t.requester, t.provider, TEST_KEY, t.amount + 1, t.deadline), "amount"
        );
        assertFalse(
            n == escrow.stakeNonce(t.jobId, t.requester, t.provider, TEST_KEY, t.amount, t.deadline + 1), "deadline"
        );
        assertFalse(n == escrow.stakeNonce(t.jobId, t.requester, t.provider, bytes32(0), t.amount, t.deadline), "key");
    }

    function test_stakeWithAuthorization_providerSubmitsRequesterNeedsNoEth() public {
        Terms memory t = _terms(JOB);
        (uint8 v, bytes32 r, bytes32 s) = _authorize(PAYER_KEY, t);
        assertEq(payer.balance, 0, "the requester holds no ETH");
        assertEq(usdc.allowance(payer, address(escrow)), 0, "and no allowance");
        vm.expectEmit(true, true, true, true, address(escrow));
        emit EdgentEscrow.Staked(JOB, payer, provider, AMOUNT, t.deadline);
        vm.prank(provider);
        _submitAuth(t, v, r, s);

        EdgentEscrow.Stake memory st = escrow.getStake(JOB);
        assertEq(st.requester, payer, "requester");
        assertEq(st.provider, provider, "provider");
        assertEq(st.amount, AMOUNT, "amount");
        assertEq(uint256(st.deadline), uint256(t.deadline), "deadline");
        assertEq(uint256(st.status), uint256(EdgentEscrow.Status.Staked), "staked");
        assertEq(usdc.balanceOf(address(escrow)), AMOUNT, "escrow holds the stake");
        assertEq(usdc.balanceOf(payer), FUNDS - AMOUNT, "payer debited");
        bytes32 nonce = escrow.stakeNonce(t.jobId, t.requester, t.provider, TEST_KEY, t.amount, t.deadline);
        assertTrue(usdc.authorizationState(payer, nonce), "authorization used");

        // The rest of the life is the ordinary one: submit and release pay the provider.
        _submit(JOB);
        vm.prank(operator);
        escrow.release(JOB, HASH);
        assertEq(usdc.balanceOf(provider), AMOUNT, "provider paid");
    }

    function test_stakeWithAuthorization_replayReverts() public {
        Terms memory t = _terms(JOB);
        (uint8 v, bytes32 r, bytes32 s) = _authorize(PAYER_KEY, t);
        vm.prank(provider);
        _submitAuth(t, v, r, s);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.JobExists.selector, JOB));
        _submitAuth(t, v, r, s);
        // Another escrow on the same token (where the job id is free): the token
        // refuses the used nonce before it looks at the signature.
        EdgentEscrow other = new EdgentEscrow(address(usdc), operator);
        bytes32 nonce = escrow.stakeNonce(t.jobId, t.requester, t.provider, TEST_KEY, t.amount, t.deadline);
        vm.expectRevert(abi.encodeWithSelector(MockUSDC.AuthorizationAlreadyUsed.selector, payer, nonce));
        other.stakeWithAuthorization(
            t.jobId, t.requester, t.provider, TEST_KEY, t.amount, t.deadline, t.validAfter, t.validBefore, v, r, s
        );
        assertTrue(usdc.authorizationState(payer, nonce), "used once");
        assertEq(usdc.balanceOf(payer), FUNDS - AMOUNT, "debited once");
    }

    function test_stakeWithAuthorization_termsChangedBySubmitterRevert() public {
        Terms memory t = _terms(JOB);
        (uint8 v, bytes32 r, bytes32 s) = _authorize(PAYER_KEY, t);

        Terms[5] memory changed;
        for (uint256 i = 0; i < 5; i++) {
            changed[i] = _terms(JOB);
            changed[i].deadline = t.deadline;
        }
        changed[0].provider = stranger; // paid to someone else
        changed[1].amount = AMOUNT * 2; // more money
        changed[2].deadline = t.deadline + 1 hours; // later deadline
        changed[3].jobId = keccak256("another job");
        changed[4].validBefore = t.validBefore + 1; // window is signed too
        for (uint256 i = 0; i < 5; i++) {
            vm.prank(stranger);
            vm.expectRevert(); // the token recovers some other signer
            _submitAuth(changed[i], v, r, s);
        }
        // And a requester who never signed cannot be charged with someone else's signature.
        Terms memory victim = _terms(JOB);
        victim.requester = requester;
        vm.prank(provider);
        vm.expectRevert();
        _submitAuth(victim, v, r, s);

        assertEq(uint256(_status(JOB)), uint256(EdgentEscrow.Status.None), "nothing staked");
        assertEq(usdc.balanceOf(payer), FUNDS, "nothing moved");
        assertEq(usdc.balanceOf(address(escrow)), 0, "escrow empty");
        // The untouched authorization still works.
        vm.prank(provider);
        _submitAuth(t, v, r, s);
        assertEq(usdc.balanceOf(address(escrow)), AMOUNT, "the signed terms stake");
    }

    function test_stakeWithAuthorization_wrongSignerReverts() public {
        Terms memory t = _terms(JOB);
        (uint8 v, bytes32 r, bytes32 s) = _authorize(0xBAD, t);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(MockUSDC.AuthorizationInvalidSigner.selector, vm.addr(0xBAD), payer));
        _submitAuth(t, v, r, s);
    }

    function test_stakeWithAuthorization_expiredAuthorizationReverts() public {
        Terms memory t = _terms(JOB);
        t.deadline = uint64(block.timestamp + 1 hours);
        (uint8 v, bytes32 r, bytes32 s) = _authorize(PAYER_KEY, t);
        vm.warp(t.validBefore);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(MockUSDC.AuthorizationExpired.selector, t.validBefore));
        _submitAuth(t, v, r, s);
    }

    function test_stakeWithAuthorization_sameChecksAsStake() public {
        Terms memory t = _terms(JOB);
        (uint8 v, bytes32 r, bytes32 s) = _authorize(PAYER_KEY, t);
        Terms memory bad = _terms(JOB);
        bad.deadline = uint64(block.timestamp);
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.DeadlinePassed.selector, bad.deadline));
        _submitAuth(bad, v, r, s);
        bad = _terms(JOB);
        bad.amount = 0;
        vm.expectRevert(EdgentEscrow.ZeroAmount.selector);
        _submitAuth(bad, v, r, s);
        bad = _terms(JOB);
        bad.requester = address(0);
        vm.expectRevert(EdgentEscrow.ZeroAddress.selector);
        _submitAuth(bad, v, r, s);
        bad = _terms(JOB);
        bad.amount = FUNDS + 1;
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.InsufficientBalance.selector, FUNDS, FUNDS + 1));
        _submitAuth(bad, v, r, s);
        _stake(JOB); // the job id is taken by an ordinary stake
        vm.expectRevert(abi.encodeWithSelector(EdgentEscrow.JobExists.selector, JOB));
        _submitAuth(t, v, r, s);
    }

    function test_stakeWithAuthorization_thenDeclineRefundsTheSigner() public {
        Terms memory t = _terms(JOB);
        (uint8 v, bytes32 r, bytes32 s) = _authorize(PAYER_KEY, t);
        vm.prank(provider);
        _submitAuth(t, v, r, s);
        vm.prank(provider);
        escrow.decline(JOB);
        assertEq(usdc.balanceOf(payer), FUNDS, "refunded to the signer");
        assertEq(usdc.balanceOf(address(escrow)), 0, "escrow empty");
    }
}
