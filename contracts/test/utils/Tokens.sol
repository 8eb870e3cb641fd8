// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice Minimal ERC-20 bookkeeping shared by the misbehaving test tokens below.
abstract contract TestTokenBase {
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;
    uint256 public totalSupply;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    function mint(address to, uint256 amount) external {
        balanceOf[to] += amount;
        totalSupply += amount;
        emit Transfer(address(0), to, amount);
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    function _move(address from, address to, uint256 amount) internal {
        require(balanceOf[from] >= amount, "balance");
        balanceOf[from] -= amount;
        balanceOf[to] += amount;
        emit Transfer(from, to, amount);
    }

    function _spend(address from, uint256 amount) internal {
        require(allowance[from][msg.sender] >= amount, "allowance");
        allowance[from][msg.sender] -= amount;
    }
}

/// @notice USDT-style token: transfer/transferFrom return no value at all.
contract NoReturnToken is TestTokenBase {
    function transfer(address to, uint256 amount) external {
        _move(msg.sender, to, amount);
    }

    function transferFrom(address from, address to, uint256 amount) external {
        _spend(from, amount);
        _move(from, to, amount);
    }
}

/// @notice Token that signals failure by returning false (and moving nothing)
///         once `failing` is switched on, instead of reverting.
contract FalseReturnToken is TestTokenBase {
    bool public failing;

    function setFailing(bool f) external {
        failing = f;
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        if (failing) return false;
        _move(msg.sender, to, amount);
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        if (failing) return false;
        _spend(from, amount);
        _move(from, to, amount);
        return true;
    }
}

/// @notice Token that burns 1% of every transfer, so the receiver gets less
///         than was sent.
contract FeeOnTransferToken is TestTokenBase {
    function transfer(address to, uint256 amount) external returns (bool) {
        _moveWithFee(msg.sender, to, amount);
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        _spend(from, amount);
        _moveWithFee(from, to, amount);
        return true;
    }

    function _moveWithFee(address from, address to, uint256 amount) private {
        uint256 fee = amount / 100;
        _move(from, to, amount - fee);
        balanceOf[from] -= fee;
        totalSupply -= fee;
    }
}

/// @notice Malicious token: after moving funds in transfer/transferFrom it
///         calls back into `hookTarget` with `hookData` (once). With `swallow`
///         it records the inner call's revert data and carries on; without it,
///         the inner revert is bubbled up.
contract ReentrantToken is TestTokenBase {
    address public hookTarget;
    bytes public hookData;
    bool public swallow;
    bool public hookRan;
    bool public hookSucceeded;
    bytes public hookRevertData;

    function arm(address target, bytes calldata data, bool swallow_) external {
        hookTarget = target;
        hookData = data;
        swallow = swallow_;
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        _move(msg.sender, to, amount);
        _hook();
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        _spend(from, amount);
        _move(from, to, amount);
        _hook();
        return true;
    }

    function _hook() private {
        address target = hookTarget;
        if (target == address(0)) return;
        hookTarget = address(0); // one shot
        hookRan = true;
        (bool ok, bytes memory ret) = target.call(hookData);
        hookSucceeded = ok;
        if (!ok) {
            if (!swallow) {
                assembly ("memory-safe") {
                    revert(add(ret, 32), mload(ret))
                }
            }
            hookRevertData = ret;
        }
    }
}
