// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "./utils/Test.sol";
import {MockUSDC} from "../src/MockUSDC.sol";
import {IERC20} from "../src/interfaces/IERC20.sol";

/// @notice MockUSDC's EIP-2612 `permit` and EIP-3009 authorizations, checked against
///         the EIP texts: the typehashes they print, the EIP-712 domain, nonces,
///         validity windows, replay, cancellation, wrong signers and malleable signatures.
contract MockUSDCAuthorizationsTest is Test {
    uint256 internal constant T0 = 1_700_000_000;
    uint256 internal constant ALICE_KEY = 0xA11CE;
    bytes32 internal constant NONCE = keccak256("nonce-1");
    uint256 internal constant HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;
    uint256 internal constant N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    MockUSDC internal usdc;
    address internal alice;
    address internal bob;
    address internal carol;

    event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);
    event AuthorizationCanceled(address indexed authorizer, bytes32 indexed nonce);

    function setUp() public {
        vm.warp(T0);
        usdc = new MockUSDC();
        alice = vm.addr(ALICE_KEY);
        bob = makeAddr("bob");
        carol = makeAddr("carol");
        usdc.mint(alice, 100e6);
    }

    // ------------------------------------------------------------------ helpers

    function _digest(bytes32 structHash) internal view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", usdc.DOMAIN_SEPARATOR(), structHash));
    }

    function _signPermit(uint256 key, address owner, address spender, uint256 value, uint256 nonce, uint256 deadline)
        internal
        view
        returns (uint8 v, bytes32 r, bytes32 s)
    {
        bytes32 h = keccak256(abi.encode(usdc.PERMIT_TYPEHASH(), owner, spender, value, nonce, deadline));
        return vm.sign(key, _digest(h));
    }

    function _signAuth(
        uint256 key,
        bytes32 typehash,
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce
    ) internal view returns (uint8 v, bytes32 r, bytes32 s) {
        bytes32 h = keccak256(abi.encode(typehash, from, to, value, validAfter, validBefore, nonce));
        return vm.sign(key, _digest(h));
    }

    function _transferAuth(address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce)
        internal
        view
        returns (uint8, bytes32, bytes32)
    {
        return _signAuth(
            ALICE_KEY, usdc.TRANSFER_WITH_AUTHORIZATION_TYPEHASH(), alice, to, value, validAfter, validBefore, nonce
        );
    }

    function _receiveAuth(address to, uint256 value, bytes32 nonce) internal view returns (uint8, bytes32, bytes32) {
        return
            _signAuth(ALICE_KEY, usdc.RECEIVE_WITH_AUTHORIZATION_TYPEHASH(), alice, to, value, 0, T0 + 1 hours, nonce);
    }

    // ------------------------------------------------------------------ the EIP texts' constants

    function test_typehashesMatchTheEipTexts() public view {
        // Values printed in EIP-2612 and EIP-3009, and the keccak of the type strings.
        assertEq(
            usdc.PERMIT_TYPEHASH(),
            keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"),
            "permit typehash"
        );
        assertEq(
            usdc.TRANSFER_WITH_AUTHORIZATION_TYPEHASH(),
            keccak256(
                "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
            ),
            "transfer typehash"
        );
        assertEq(
            usdc.TRANSFER_WITH_AUTHORIZATION_TYPEHASH(),
            0x7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267,
            "EIP-3009's printed transfer typehash"
        );
        assertEq(
            usdc.RECEIVE_WITH_AUTHORIZATION_TYPEHASH(),
            keccak256(
                "ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
            ),
            "receive typehash"
        );
        assertEq(
            usdc.RECEIVE_WITH_AUTHORIZATION_TYPEHASH(),
            0xd099cc98ef71107a616c4f0f941f04c322d8e254fe26b3c6668db87aae413de8,
            "EIP-3009's printed receive typehash"
        );
        assertEq(
            usdc.CANCEL_AUTHORIZATION_TYPEHASH(),
            keccak256("CancelAuthorization(address authorizer,bytes32 nonce)"),
            "cancel typehash"
        );
        assertEq(
            usdc.CANCEL_AUTHORIZATION_TYPEHASH(),
            0x158b0a9edf7a828aad02f63cd515c68ef2f50ba807396f6d12842833a1597429,
            "EIP-3009's printed cancel typehash"
        );
    }

    function test_domainSeparatorIsEip712OverNameVersionChainAndAddress() public {
        bytes32 expected = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("Mock USDC"),
                keccak256("2"),
                block.chainid,
                address(usdc)
            )
        );
        assertEq(usdc.DOMAIN_SEPARATOR(), expected, "domain separator");
        assertEq(usdc.version(), "2", "version");
        // After a fork to another chain id, the separator follows the chain.
        vm.chainId(block.chainid + 1);
        assertFalse(usdc.DOMAIN_SEPARATOR() == expected, "separator changes with the chain id");
    }

    // ------------------------------------------------------------------ EIP-2612 permit

    function test_permit_setsAllowanceBumpsNonceAndEmits() public {
        (uint8 v, bytes32 r, bytes32 s) = _signPermit(ALICE_KEY, alice, bob, 7e6, 0, T0 + 60);
        vm.expectEmit(true, true, false, true, address(usdc));
        emit IERC20.Approval(alice, bob, 7e6);
        vm.prank(carol); // anyone may submit it
        usdc.permit(alice, bob, 7e6, T0 + 60, v, r, s);
        assertEq(usdc.allowance(alice, bob), 7e6, "allowance");
        assertEq(usdc.nonces(alice), 1, "nonce bumped");
        vm.prank(bob);
        usdc.transferFrom(alice, bob, 7e6);
        assertEq(usdc.balanceOf(bob), 7e6, "spent the permitted allowance");
    }

    function test_permit_worksAtTheDeadlineNotAfter() public {
        (uint8 v, bytes32 r, bytes32 s) = _signPermit(ALICE_KEY, alice, bob, 1, 0, T0);
        usdc.permit(alice, bob, 1, T0, v, r, s); // block.timestamp == deadline is still valid
        (v, r, s) = _signPermit(ALICE_KEY, alice, bob, 2, 1, T0 - 1);
        vm.expectRevert(abi.encodeWithSelector(MockUSDC.ERC2612ExpiredSignature.selector, T0 - 1));
        usdc.permit(alice, bob, 2, T0 - 1, v, r, s);
    }

    function test_permit_replayFails() public {
        (uint8 v, bytes32 r, bytes32 s) = _signPermit(ALICE_KEY, alice, bob, 5, 0, T0 + 60);
        usdc.permit(alice, bob, 5, T0 + 60, v, r, s);
        // The nonce is now 1: the same signature recovers to some other address.
        vm.expectRevert();
        usdc.permit(alice, bob, 5, T0 + 60, v, r, s);
        assertEq(usdc.nonces(alice), 1, "nonce unchanged by the failed replay");
    }

    function test_permit_wrongSignerOrChangedTermsFail() public {
        uint256 mallory = 0xBAD;
        (uint8 v, bytes32 r, bytes32 s) = _signPermit(mallory, alice, bob, 5, 0, T0 + 60);
        vm.expectRevert(abi.encodeWithSelector(MockUSDC.ERC2612InvalidSigner.selector, vm.addr(mallory), alice));
        usdc.permit(alice, bob, 5, T0 + 60, v, r, s);

        (v, r, s) = _signPermit(ALICE_KEY, alice, bob, 5, 0, T0 + 60);
        vm.expectRevert(); // value changed: recovers to another address
        usdc.permit(alice, bob, 6, T0 + 60, v, r, s);
        vm.expectRevert(); // spender changed
        usdc.permit(alice, carol, 5, T0 + 60, v, r, s);
        assertEq(usdc.allowance(alice, bob), 0, "nothing approved");
    }

    function test_permit_signatureForAnotherChainFails() public {
        (uint8 v, bytes32 r, bytes32 s) = _signPermit(ALICE_KEY, alice, bob, 5, 0, T0 + 60);
        vm.chainId(block.chainid + 1);
        vm.expectRevert();
        usdc.permit(alice, bob, 5, T0 + 60, v, r, s);
    }

    function test_permit_highSAndBadVAreRefused() public {
        (uint8 v, bytes32 r, bytes32 s) = _signPermit(ALICE_KEY, alice, bob, 5, 0, T0 + 60);
        // The malleable twin (s' = n - s, v flipped) recovers the same key: EIP-2 forbids it.
        bytes32 twinS = bytes32(N - uint256(s));
        uint8 twinV = v == 27 ? 28 : 27;
        assertTrue(uint256(twinS) > HALF_N, "twin is high-s");
        vm.expectRevert(MockUSDC.InvalidSignature.selector);
        usdc.permit(alice, bob, 5, T0 + 60, twinV, r, twinS);
        vm.expectRevert(MockUSDC.InvalidSignature.selector);
        usdc.permit(alice, bob, 5, T0 + 60, 29, r, s);
        usdc.permit(alice, bob, 5, T0 + 60, v, r, s); // the original still works
    }

    // ------------------------------------------------------------------ EIP-3009 transferWithAuthorization

    function test_transferWithAuthorization_movesMarksAndEmits() public {
        (uint8 v, bytes32 r, bytes32 s) = _transferAuth(bob, 3e6, T0 - 1, T0 + 1, NONCE);
        assertFalse(usdc.authorizationState(alice, NONCE), "unused before");
        vm.expectEmit(true, true, false, true, address(usdc));
        emit AuthorizationUsed(alice, NONCE);
        vm.expectEmit(true, true, false, true, address(usdc));
        emit IERC20.Transfer(alice, bob, 3e6);
        vm.prank(carol); // any relayer
        usdc.transferWithAuthorization(alice, bob, 3e6, T0 - 1, T0 + 1, NONCE, v, r, s);
        assertEq(usdc.balanceOf(bob), 3e6, "bob paid");
        assertEq(usdc.balanceOf(alice), 97e6, "alice debited");
        assertTrue(usdc.authorizationState(alice, NONCE), "used after");
    }

    function test_transferWithAuthorization_windowIsStrictOnBothEnds() public {
        // EIP-3009: valid when validAfter < now < validBefore.
        (uint8 v, bytes32 r, bytes32 s) = _transferAuth(bob, 1, T0, T0 + 10, NONCE);
        vm.expectRevert(abi.encodeWithSelector(MockUSDC.AuthorizationNotYetValid.selector, T0));
        usdc.transferWithAuthorization(alice, bob, 1, T0, T0 + 10, NONCE, v, r, s);
        vm.warp(T0 + 10);
        vm.expectRevert(abi.encodeWithSelector(MockUSDC.AuthorizationExpired.selector, T0 + 10));
        usdc.transferWithAuthorization(alice, bob, 1, T0, T0 + 10, NONCE, v, r, s);
        vm.warp(T0 + 9);
        usdc.transferWithAuthorization(alice, bob, 1, T0, T0 + 10, NONCE, v, r, s);
        assertEq(usdc.balanceOf(bob), 1, "valid inside the window");
    }

    function test_transferWithAuthorization_replayFails() public {
        (uint8 v, bytes32 r, bytes32 s) = _transferAuth(bob, 1e6, 0, T0 + 60, NONCE);
        usdc.transferWithAuthorization(alice, bob, 1e6, 0, T0 + 60, NONCE, v, r, s);
        vm.expectRevert(abi.encodeWithSelector(MockUSDC.AuthorizationAlreadyUsed.selector, alice, NONCE));
        usdc.transferWithAuthorization(alice, bob, 1e6, 0, T0 + 60, NONCE, v, r, s);
        assertEq(usdc.balanceOf(bob), 1e6, "paid once");
    }

    function test_transferWithAuthorization_wrongSignerOrChangedTermsFail() public {
        uint256 mallory = 0xBAD;
        bytes32 th = usdc.TRANSFER_WITH_AUTHORIZATION_TYPEHASH();
        (uint8 v, bytes32 r, bytes32 s) = _signAuth(mallory, th, alice, bob, 1e6, 0, T0 + 60, NONCE);
        vm.expectRevert(abi.encodeWithSelector(MockUSDC.AuthorizationInvalidSigner.selector, vm.addr(mallory), alice));
        usdc.transferWithAuthorization(alice, bob, 1e6, 0, T0 + 60, NONCE, v, r, s);

        (v, r, s) = _transferAuth(bob, 1e6, 0, T0 + 60, NONCE);
        vm.expectRevert(); // to changed
        usdc.transferWithAuthorization(alice, carol, 1e6, 0, T0 + 60, NONCE, v, r, s);
        vm.expectRevert(); // value changed
        usdc.transferWithAuthorization(alice, bob, 2e6, 0, T0 + 60, NONCE, v, r, s);
        vm.expectRevert(); // nonce changed
        usdc.transferWithAuthorization(alice, bob, 1e6, 0, T0 + 60, keccak256("other"), v, r, s);
        assertEq(usdc.balanceOf(alice), 100e6, "nothing moved");
    }

    function test_aReceiveSignatureIsNotATransferSignature() public {
        // Same fields, other typehash: a relayer cannot turn one into the other.
        (uint8 v, bytes32 r, bytes32 s) = _receiveAuth(bob, 1e6, NONCE);
        vm.expectRevert();
        usdc.transferWithAuthorization(alice, bob, 1e6, 0, T0 + 1 hours, NONCE, v, r, s);
    }

    // ------------------------------------------------------------------ EIP-3009 receiveWithAuthorization

    function test_receiveWithAuthorization_onlyThePayeeMaySubmit() public {
        (uint8 v, bytes32 r, bytes32 s) = _receiveAuth(bob, 2e6, NONCE);
        vm.prank(carol);
        vm.expectRevert(abi.encodeWithSelector(MockUSDC.CallerNotPayee.selector, carol, bob));
        usdc.receiveWithAuthorization(alice, bob, 2e6, 0, T0 + 1 hours, NONCE, v, r, s);

        vm.prank(bob);
        usdc.receiveWithAuthorization(alice, bob, 2e6, 0, T0 + 1 hours, NONCE, v, r, s);
        assertEq(usdc.balanceOf(bob), 2e6, "payee received");
        assertTrue(usdc.authorizationState(alice, NONCE), "used");

        vm.prank(bob);
        vm.expectRevert(abi.encodeWithSelector(MockUSDC.AuthorizationAlreadyUsed.selector, alice, NONCE));
        usdc.receiveWithAuthorization(alice, bob, 2e6, 0, T0 + 1 hours, NONCE, v, r, s);
    }

    function test_receiveWithAuthorization_insufficientBalanceReverts() public {
        (uint8 v, bytes32 r, bytes32 s) = _receiveAuth(bob, 101e6, NONCE);
        vm.prank(bob);
        vm.expectRevert(abi.encodeWithSelector(MockUSDC.ERC20InsufficientBalance.selector, alice, 100e6, 101e6));
        usdc.receiveWithAuthorization(alice, bob, 101e6, 0, T0 + 1 hours, NONCE, v, r, s);
        assertFalse(usdc.authorizationState(alice, NONCE), "a failed transfer does not use the nonce");
    }

    // ------------------------------------------------------------------ EIP-3009 cancelAuthorization

    function test_cancelAuthorization_blocksLaterUse() public {
        (uint8 v, bytes32 r, bytes32 s) =
            vm.sign(ALICE_KEY, _digest(keccak256(abi.encode(usdc.CANCEL_AUTHORIZATION_TYPEHASH(), alice, NONCE))));
        vm.expectEmit(true, true, false, true, address(usdc));
        emit AuthorizationCanceled(alice, NONCE);
        vm.prank(carol);
        usdc.cancelAuthorization(alice, NONCE, v, r, s);
        assertTrue(usdc.authorizationState(alice, NONCE), "cancelled counts as used");

        (uint8 tv, bytes32 tr, bytes32 ts) = _transferAuth(bob, 1, 0, T0 + 60, NONCE);
        vm.expectRevert(abi.encodeWithSelector(MockUSDC.AuthorizationAlreadyUsed.selector, alice, NONCE));
        usdc.transferWithAuthorization(alice, bob, 1, 0, T0 + 60, NONCE, tv, tr, ts);

        vm.expectRevert(abi.encodeWithSelector(MockUSDC.AuthorizationAlreadyUsed.selector, alice, NONCE));
        usdc.cancelAuthorization(alice, NONCE, v, r, s);
    }

    function test_cancelAuthorization_wrongSignerFails() public {
        uint256 mallory = 0xBAD;
        (uint8 v, bytes32 r, bytes32 s) =
            vm.sign(mallory, _digest(keccak256(abi.encode(usdc.CANCEL_AUTHORIZATION_TYPEHASH(), alice, NONCE))));
        vm.expectRevert(abi.encodeWithSelector(MockUSDC.AuthorizationInvalidSigner.selector, vm.addr(mallory), alice));
        usdc.cancelAuthorization(alice, NONCE, v, r, s);
        assertFalse(usdc.authorizationState(alice, NONCE), "still usable");
    }

    function testFuzz_transferWithAuthorization_onlyTheSignedTermsPass(uint256 value, uint256 other) public {
        value = bound(value, 1, 100e6);
        other = bound(other, 1, 100e6);
        vm.assume(other != value);
        (uint8 v, bytes32 r, bytes32 s) = _transferAuth(bob, value, 0, T0 + 60, NONCE);
        vm.expectRevert();
        usdc.transferWithAuthorization(alice, bob, other, 0, T0 + 60, NONCE, v, r, s);
        usdc.transferWithAuthorization(alice, bob, value, 0, T0 + 60, NONCE, v, r, s);
        assertEq(usdc.balanceOf(bob), value, "the signed value moved");
    }
}
