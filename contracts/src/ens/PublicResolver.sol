// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ENSRegistry} from "./ENSRegistry.sol";

/// @title PublicResolver (TEST-ONLY)
/// @notice A minimal resolver with the real ENS PublicResolver ABI for the
///         profiles edgent uses: address (ETH and multicoin), name (reverse
///         records) and text records, plus ERC-165. A record may be changed by
///         the node's owner in the registry or an operator that owner approved
///         there. Not for production: use the real ENS PublicResolver.
contract PublicResolver {
    uint256 private constant COIN_TYPE_ETH = 60;

    ENSRegistry public immutable ens;

    mapping(bytes32 => mapping(uint256 => bytes)) private addresses;
    mapping(bytes32 => string) private names;
    mapping(bytes32 => mapping(string => string)) private texts;

    event AddrChanged(bytes32 indexed node, address a);
    event AddressChanged(bytes32 indexed node, uint256 coinType, bytes newAddress);
    event NameChanged(bytes32 indexed node, string name);
    event TextChanged(bytes32 indexed node, string indexed indexedKey, string key, string value);

    modifier authorised(bytes32 node) {
        address nodeOwner = ens.owner(node);
        require(
            nodeOwner == msg.sender || ens.isApprovedForAll(nodeOwner, msg.sender), "PublicResolver: not authorised"
        );
        _;
    }

    constructor(ENSRegistry ens_) {
        ens = ens_;
    }

    function setAddr(bytes32 node, address a) external authorised(node) {
        _setAddr(node, COIN_TYPE_ETH, abi.encodePacked(a));
    }

    function setAddr(bytes32 node, uint256 coinType, bytes memory a) public authorised(node) {
        _setAddr(node, coinType, a);
    }

    function addr(bytes32 node) public view returns (address payable) {
        bytes memory a = addresses[node][COIN_TYPE_ETH];
        if (a.length != 20) return payable(address(0));
        // casting to 'bytes20' is safe because the length is exactly 20
        // forge-lint: disable-next-line(unsafe-typecast)
        return payable(address(bytes20(a)));
    }

    function addr(bytes32 node, uint256 coinType) public view returns (bytes memory) {
        return addresses[node][coinType];
    }

    function setName(bytes32 node, string calldata newName) external authorised(node) {
        names[node] = newName;
        emit NameChanged(node, newName);
    }

    function name(bytes32 node) external view returns (string memory) {
        return names[node];
    }

    function setText(bytes32 node, string calldata key, string calldata value) external authorised(node) {
        texts[node][key] = value;
        emit TextChanged(node, key, key, value);
    }

    function text(bytes32 node, string calldata key) external view returns (string memory) {
        return texts[node][key];
    }

    function supportsInterface(bytes4 interfaceID) external pure returns (bool) {
        return interfaceID == 0x01ffc9a7 // ERC-165
            || interfaceID == 0x3b3b57de // addr(bytes32)
            || interfaceID == 0xf1cb7e06 // addr(bytes32,uint256)
            || interfaceID == 0x691f3431 // name(bytes32)
            || interfaceID == 0x59d1d43c; // text(bytes32,string)
    }

    function _setAddr(bytes32 node, uint256 coinType, bytes memory a) private {
        emit AddressChanged(node, coinType, a);
        if (coinType == COIN_TYPE_ETH) {
            require(a.length == 20 || a.length == 0, "PublicResolver: ETH address must be 20 bytes");
            // casting to 'bytes20' is safe because the length is 20 (or 0, giving address(0))
            // forge-lint: disable-next-line(unsafe-typecast)
            emit AddrChanged(node, address(bytes20(a)));
        }
        addresses[node][coinType] = a;
    }
}
