// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "./utils/Test.sol";
import {MockUSDC} from "../src/MockUSDC.sol";
import {IERC20} from "../src/interfaces/IERC20.sol";

/// @notice MockUSDC behaves like a standard 6-decimal ERC-20.
contract MockUSDCTest is Test {
    MockUSDC internal usdc;
    address internal alice;
    address internal bob;

    function setUp() public {
        usdc = new MockUSDC();
        alice = makeAddr("alice");
        bob = makeAddr("bob");
    }

    function test_metadata() public view {
        assertEq(usdc.name(), "Mock USDC", "name");
        assertEq(usdc.symbol(), "USDC", "symbol");
        assertEq(uint256(usdc.decimals()), 6, "decimals");
    }

    function test_mintCreditsAndEmits() public {
        vm.expectEmit(true, true, false, true, address(usdc));
        emit IERC20.Transfer(address(0), alice, 5e6);
        usdc.mint(alice, 5e6);
        assertEq(usdc.balanceOf(alice), 5e6, "balance");
        assertEq(usdc.totalSupply(), 5e6, "supply");
    }

    function test_transferMovesAndEmits() public {
        usdc.mint(alice, 5e6);
        vm.expectEmit(true, true, false, true, address(usdc));
        emit IERC20.Transfer(alice, bob, 2e6);
        vm.prank(alice);
        assertTrue(usdc.transfer(bob, 2e6), "returns true");
        assertEq(usdc.balanceOf(alice), 3e6, "alice");
        assertEq(usdc.balanceOf(bob), 2e6, "bob");
    }

    function test_transferRevertsOnInsufficientBalance() public {
        usdc.mint(alice, 1);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(MockUSDC.ERC20InsufficientBalance.selector, alice, 1, 2));
        usdc.transfer(bob, 2);
    }

    function test_approveAndTransferFromSpendAllowance() public {
        usdc.mint(alice, 5e6);
        vm.expectEmit(true, true, false, true, address(usdc));
        emit IERC20.Approval(alice, bob, 3e6);
        vm.prank(alice);
        usdc.approve(bob, 3e6);
        vm.prank(bob);
        usdc.transferFrom(alice, bob, 2e6);
        assertEq(usdc.allowance(alice, bob), 1e6, "allowance spent");
        vm.prank(bob);
        vm.expectRevert(abi.encodeWithSelector(MockUSDC.ERC20InsufficientAllowance.selector, bob, 1e6, 2e6));
        usdc.transferFrom(alice, bob, 2e6);
    }

    function test_infiniteAllowanceIsNotSpent() public {
        usdc.mint(alice, 5e6);
        vm.prank(alice);
        usdc.approve(bob, type(uint256).max);
        vm.prank(bob);
        usdc.transferFrom(alice, bob, 5e6);
        assertEq(usdc.allowance(alice, bob), type(uint256).max, "still infinite");
    }

    function test_zeroAddressesRejected() public {
        usdc.mint(alice, 1);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(MockUSDC.ERC20InvalidReceiver.selector, address(0)));
        usdc.transfer(address(0), 1);
        vm.expectRevert(abi.encodeWithSelector(MockUSDC.ERC20InvalidReceiver.selector, address(0)));
        usdc.mint(address(0), 1);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(MockUSDC.ERC20InvalidSpender.selector, address(0)));
        usdc.approve(address(0), 1);
    }

    function testFuzz_transferConservesSupply(uint256 minted, uint256 sent) public {
        minted = bound(minted, 0, type(uint128).max);
        sent = bound(sent, 0, minted);
        usdc.mint(alice, minted);
        vm.prank(alice);
        usdc.transfer(bob, sent);
        assertEq(usdc.balanceOf(alice) + usdc.balanceOf(bob), usdc.totalSupply(), "conserved");
        assertEq(usdc.balanceOf(bob), sent, "bob got exactly what was sent");
    }
}
