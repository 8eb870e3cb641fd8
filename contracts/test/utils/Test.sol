// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice The forge cheatcodes these tests use (forge-std is not available
///         offline, so this declares the subset by hand; signatures match
///         forge's Vm interface). Assertions are forge's own assert cheatcodes.
interface Vm {
    function warp(uint256 newTimestamp) external;
    function prank(address msgSender) external;
    function startPrank(address msgSender) external;
    function stopPrank() external;
    function expectRevert() external;
    function expectRevert(bytes4 revertData) external;
    function expectRevert(bytes calldata revertData) external;
    function expectEmit(bool checkTopic1, bool checkTopic2, bool checkTopic3, bool checkData, address emitter) external;
    function deal(address account, uint256 newBalance) external;
    function assume(bool condition) external pure;
    function addr(uint256 privateKey) external pure returns (address);
    function sign(uint256 privateKey, bytes32 digest) external pure returns (uint8 v, bytes32 r, bytes32 s);
    function chainId(uint256 newChainId) external;
    function label(address account, string calldata newLabel) external;
    function etch(address target, bytes calldata newRuntimeBytecode) external;
    function assertTrue(bool condition, string calldata err) external pure;
    function assertFalse(bool condition, string calldata err) external pure;
    function assertEq(bool left, bool right, string calldata err) external pure;
    function assertEq(uint256 left, uint256 right, string calldata err) external pure;
    function assertEq(address left, address right, string calldata err) external pure;
    function assertEq(bytes32 left, bytes32 right, string calldata err) external pure;
    function assertEq(string calldata left, string calldata right, string calldata err) external pure;
    function assertEq(bytes calldata left, bytes calldata right, string calldata err) external pure;
    function assertLe(uint256 left, uint256 right, string calldata err) external pure;
}

/// @notice Tiny stand-in for forge-std's Test: the cheatcode handle, assertion
///         helpers that fail the test by reverting, `bound` for fuzz inputs,
///         and the invariant target hooks forge queries (`targetContracts()`,
///         `targetSelectors()`, `targetSenders()`, same ABI as forge-std's
///         StdInvariant).
abstract contract Test {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    /// @dev forge looks for this to recognise a test contract (forge-std sets it too).
    bool public IS_TEST = true;

    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    address[] private targetedContracts;
    address[] private targetedSenders;
    FuzzSelector[] private targetedSelectors;

    function targetContract(address target) internal {
        targetedContracts.push(target);
    }

    function targetSelector(FuzzSelector memory selector) internal {
        targetedSelectors.push(selector);
    }

    function targetSender(address sender) internal {
        targetedSenders.push(sender);
    }

    function targetContracts() public view returns (address[] memory) {
        return targetedContracts;
    }

    function targetSelectors() public view returns (FuzzSelector[] memory) {
        return targetedSelectors;
    }

    function targetSenders() public view returns (address[] memory) {
        return targetedSenders;
    }

    function makeAddr(string memory name) internal returns (address a) {
        a = vm.addr(uint256(keccak256(bytes(name))));
        vm.label(a, name);
    }

    /// @dev Maps any x into [lo, hi] (inclusive) without discarding fuzz runs.
    function bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        require(lo <= hi, "bound: lo > hi");
        uint256 size = hi - lo;
        if (size == type(uint256).max) return x;
        return lo + (x % (size + 1));
    }

    function assertTrue(bool c, string memory why) internal pure {
        vm.assertTrue(c, why);
    }

    function assertFalse(bool c, string memory why) internal pure {
        vm.assertFalse(c, why);
    }

    function assertEq(uint256 a, uint256 b, string memory why) internal pure {
        vm.assertEq(a, b, why);
    }

    function assertEq(address a, address b, string memory why) internal pure {
        vm.assertEq(a, b, why);
    }

    function assertEq(bytes32 a, bytes32 b, string memory why) internal pure {
        vm.assertEq(a, b, why);
    }

    function assertEq(bool a, bool b, string memory why) internal pure {
        vm.assertEq(a, b, why);
    }

    function assertEq(string memory a, string memory b, string memory why) internal pure {
        vm.assertEq(a, b, why);
    }

    function assertEq(bytes memory a, bytes memory b, string memory why) internal pure {
        vm.assertEq(a, b, why);
    }

    function assertLe(uint256 a, uint256 b, string memory why) internal pure {
        vm.assertLe(a, b, why);
    }
}
