// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "../utils/Test.sol";
import {ENSRegistry} from "../../src/ens/ENSRegistry.sol";
import {PublicResolver} from "../../src/ens/PublicResolver.sol";

/// @notice The test-only ENS registry and resolver resolve a name the way the
///         real ENS does (namehash, subnode ownership, resolver lookups).
contract ENSTest is Test {
    ENSRegistry internal ens;
    PublicResolver internal resolver;
    address internal alice;
    address internal mallory;

    bytes32 internal constant ETH_NODE = 0x93cdeb708b7545dc668eb9280176169d1c33cfd8ed6f04690a0bcc88a93fc4ae;

    function setUp() public {
        ens = new ENSRegistry();
        resolver = new PublicResolver(ens);
        alice = makeAddr("alice");
        mallory = makeAddr("mallory");
    }

    function _namehash(bytes32 parent, string memory label) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(parent, keccak256(bytes(label))));
    }

    /// @dev Root -> eth -> alice.eth owned by alice, using our resolver.
    function _registerAlice() internal returns (bytes32 node) {
        ens.setSubnodeOwner(bytes32(0), keccak256("eth"), address(this));
        node = _namehash(ETH_NODE, "alice");
        ens.setSubnodeRecord(ETH_NODE, keccak256("alice"), alice, address(resolver), 0);
    }

    function test_rootOwnedByDeployer() public view {
        assertEq(ens.owner(bytes32(0)), address(this), "root owner");
        assertEq(_namehash(bytes32(0), "eth"), ETH_NODE, "namehash(eth) matches the real one");
    }

    function test_registerAndResolveAddrNameText() public {
        bytes32 node = _registerAlice();
        assertEq(ens.owner(node), alice, "owner");
        assertEq(ens.resolver(node), address(resolver), "resolver");
        vm.startPrank(alice);
        resolver.setAddr(node, alice);
        resolver.setName(node, "alice.eth");
        resolver.setText(node, "edgent.axl", "abcd");
        vm.stopPrank();
        assertEq(resolver.addr(node), alice, "addr");
        assertEq(resolver.addr(node, 60), abi.encodePacked(alice), "multicoin ETH addr");
        assertEq(resolver.name(node), "alice.eth", "name");
        assertEq(resolver.text(node, "edgent.axl"), "abcd", "text");
    }

    function test_onlyNodeOwnerMaySetRecords() public {
        bytes32 node = _registerAlice();
        vm.startPrank(mallory);
        vm.expectRevert(bytes("PublicResolver: not authorised"));
        resolver.setAddr(node, mallory);
        vm.expectRevert(bytes("PublicResolver: not authorised"));
        resolver.setText(node, "k", "v");
        vm.expectRevert(bytes("PublicResolver: not authorised"));
        resolver.setName(node, "mallory.eth");
        vm.expectRevert(bytes("ENSRegistry: not authorised"));
        ens.setOwner(node, mallory);
        vm.expectRevert(bytes("ENSRegistry: not authorised"));
        ens.setResolver(node, mallory);
        vm.stopPrank();
    }

    function test_approvedOperatorMaySetRecords() public {
        bytes32 node = _registerAlice();
        vm.prank(alice);
        ens.setApprovalForAll(mallory, true);
        vm.prank(mallory);
        resolver.setAddr(node, mallory);
        assertEq(resolver.addr(node), mallory, "operator set addr");
    }

    function test_setRecordAndTransfer() public {
        bytes32 node = _registerAlice();
        vm.prank(alice);
        ens.setRecord(node, mallory, address(0), 300);
        assertEq(ens.owner(node), mallory, "new owner");
        assertEq(ens.resolver(node), address(0), "resolver cleared");
        assertEq(uint256(ens.ttl(node)), 300, "ttl");
        assertTrue(ens.recordExists(node), "exists");
    }

    function test_supportsInterface() public view {
        assertTrue(resolver.supportsInterface(0x3b3b57de), "addr(bytes32)");
        assertTrue(resolver.supportsInterface(0xf1cb7e06), "addr(bytes32,uint256)");
        assertTrue(resolver.supportsInterface(0x691f3431), "name(bytes32)");
        assertTrue(resolver.supportsInterface(0x59d1d43c), "text(bytes32,string)");
        assertTrue(resolver.supportsInterface(0x01ffc9a7), "erc165");
        assertFalse(resolver.supportsInterface(0xffffffff), "not everything");
    }

    function test_unsetRecordsAreEmpty() public {
        bytes32 node = _registerAlice();
        assertEq(resolver.addr(node), address(0), "addr");
        assertEq(resolver.name(node), "", "name");
        assertEq(resolver.text(node, "x"), "", "text");
        assertEq(ens.resolver(_namehash(ETH_NODE, "bob")), address(0), "unknown name has no resolver");
    }
}
