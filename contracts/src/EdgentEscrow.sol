// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "./interfaces/IERC20.sol";

/// @title EdgentEscrow
/// @notice Holds a requester's USDC for one delegated inference job until the
///         job settles. Every stake ends in exactly one terminal state:
///
///         Staked ──submit──▶ Submitted ──release──▶ Released   (provider paid)
///           │                   │ ├──reject───▶ Rejected   (requester refunded)
///           │                   │ └─claimTimeout (submittedAt + 1 h)─▶ Claimed (provider paid)
///           ├──release──▶ Released
///           ├──reject───▶ Rejected
///           └──refund (after deadline, nothing submitted)──▶ Refunded
///
///         `release` and `reject` belong to the operator (KeeperHub's managed
///         wallet in production, the daemon itself on a local chain).
contract EdgentEscrow {
    /// @notice Lifecycle of a job's stake. `None` means the job id is unknown.
    enum Status {
        None,
        Staked,
        Submitted,
        Released,
        Rejected,
        Claimed,
        Refunded
    }

    /// @notice Everything the escrow knows about one job.
    struct Stake {
        address requester;
        address provider;
        uint256 amount;
        uint64 createdAt;
        uint64 submittedAt;
        uint64 deadline;
        bytes32 outputHash;
        Status status;
    }

    /// @notice How long after `submit` the provider may `claimTimeout` if the
    ///         operator has neither released nor rejected.
    uint64 public constant CLAIM_DELAY = 1 hours;

    /// @notice The stablecoin held in escrow (USDC, 6 decimals).
    IERC20 public immutable usdc;
    /// @notice The only account allowed to `release` and `reject`.
    address public immutable operator;

    mapping(bytes32 => Stake) private stakes;

    uint256 private constant UNLOCKED = 1;
    uint256 private constant LOCKED = 2;
    uint256 private lock = UNLOCKED;

    error JobExists(bytes32 jobId);
    error UnknownJob(bytes32 jobId);
    error WrongStatus(bytes32 jobId, Status status);
    error NotOperator(address caller);
    error NotProvider(address caller);
    error NotRequester(address caller);
    error ZeroAmount();
    error ZeroAddress();
    error DeadlinePassed(uint64 deadline);
    error DeadlineNotPassed(uint64 deadline);
    error ClaimTooEarly(uint64 availableAt);
    error OutputMismatch(bytes32 expected, bytes32 got);
    error InsufficientAllowance(uint256 allowance, uint256 needed);
    error InsufficientBalance(uint256 balance, uint256 needed);
    error TransferFailed();
    error Reentrancy();

    event Staked(
        bytes32 indexed jobId, address indexed requester, address indexed provider, uint256 amount, uint64 deadline
    );
    event Submitted(bytes32 indexed jobId, bytes32 outputHash);
    event Released(bytes32 indexed jobId, address indexed provider, uint256 amount, bytes32 outputHash);
    event Rejected(bytes32 indexed jobId, address indexed requester, uint256 amount);
    event Claimed(bytes32 indexed jobId, address indexed provider, uint256 amount);
    event Refunded(bytes32 indexed jobId, address indexed requester, uint256 amount);

    modifier nonReentrant() {
        if (lock == LOCKED) revert Reentrancy();
        lock = LOCKED;
        _;
        lock = UNLOCKED;
    }

    /// @param usdc_ the stablecoin to escrow.
    /// @param operator_ the account allowed to release and reject.
    constructor(address usdc_, address operator_) {
        if (usdc_ == address(0) || operator_ == address(0)) revert ZeroAddress();
        usdc = IERC20(usdc_);
        operator = operator_;
    }

    /// @notice Lock `amount` of the caller's USDC for `jobId`, payable to
    ///         `provider`. The caller must have approved the escrow first.
    /// @param deadline unix time (seconds) until which the provider may
    ///        `submit`; after it, with nothing submitted, the requester may `refund`.
    function stake(bytes32 jobId, address provider, uint256 amount, uint64 deadline) external nonReentrant {
        if (stakes[jobId].status != Status.None) revert JobExists(jobId);
        if (amount == 0) revert ZeroAmount();
        if (provider == address(0)) revert ZeroAddress();
        if (deadline <= block.timestamp) revert DeadlinePassed(deadline);
        uint256 allowed = usdc.allowance(msg.sender, address(this));
        if (allowed < amount) revert InsufficientAllowance(allowed, amount);
        uint256 balance = usdc.balanceOf(msg.sender);
        if (balance < amount) revert InsufficientBalance(balance, amount);

        stakes[jobId] = Stake({
            requester: msg.sender,
            provider: provider,
            amount: amount,
            createdAt: uint64(block.timestamp),
            submittedAt: 0,
            deadline: deadline,
            outputHash: bytes32(0),
            status: Status.Staked
        });
        emit Staked(jobId, msg.sender, provider, amount, deadline);

        // The escrow must hold exactly what it records (no fee-on-transfer surprises).
        uint256 before = usdc.balanceOf(address(this));
        _call(abi.encodeCall(IERC20.transferFrom, (msg.sender, address(this), amount)));
        if (usdc.balanceOf(address(this)) != before + amount) revert TransferFailed();
    }

    /// @notice The stake for `jobId`; the zero struct (status None) if unknown.
    function getStake(bytes32 jobId) external view returns (Stake memory) {
        return stakes[jobId];
    }

    /// @notice The provider records the hash of the output it delivered. From
    ///         then on the requester can no longer `refund`, and the provider
    ///         may `claimTimeout` after CLAIM_DELAY.
    function submit(bytes32 jobId, bytes32 outputHash) external nonReentrant {
        Stake storage s = _known(jobId);
        if (msg.sender != s.provider) revert NotProvider(msg.sender);
        if (s.status != Status.Staked) revert WrongStatus(jobId, s.status);
        if (block.timestamp > s.deadline) revert DeadlinePassed(s.deadline);

        s.status = Status.Submitted;
        s.submittedAt = uint64(block.timestamp);
        s.outputHash = outputHash;
        emit Submitted(jobId, outputHash);
    }

    /// @notice Operator pays the provider after verifying the proof. If the
    ///         provider submitted, `outputHash` must match what it submitted.
    function release(bytes32 jobId, bytes32 outputHash) external nonReentrant {
        Stake storage s = _known(jobId);
        if (msg.sender != operator) revert NotOperator(msg.sender);
        Status status = s.status;
        if (status == Status.Submitted) {
            if (s.outputHash != outputHash) revert OutputMismatch(s.outputHash, outputHash);
        } else if (status != Status.Staked) {
            revert WrongStatus(jobId, status);
        }

        s.status = Status.Released;
        s.outputHash = outputHash;
        address provider = s.provider;
        uint256 amount = s.amount;
        emit Released(jobId, provider, amount, outputHash);
        _pay(provider, amount);
    }

    /// @notice Operator refunds the requester (the proof or the output failed).
    function reject(bytes32 jobId) external nonReentrant {
        Stake storage s = _known(jobId);
        if (msg.sender != operator) revert NotOperator(msg.sender);
        Status status = s.status;
        if (status != Status.Staked && status != Status.Submitted) revert WrongStatus(jobId, status);

        s.status = Status.Rejected;
        address requester = s.requester;
        uint256 amount = s.amount;
        emit Rejected(jobId, requester, amount);
        _pay(requester, amount);
    }

    /// @notice The provider takes the stake when the operator has not settled
    ///         within CLAIM_DELAY of `submit`.
    function claimTimeout(bytes32 jobId) external nonReentrant {
        Stake storage s = _known(jobId);
        if (msg.sender != s.provider) revert NotProvider(msg.sender);
        if (s.status != Status.Submitted) revert WrongStatus(jobId, s.status);
        uint64 availableAt = s.submittedAt + CLAIM_DELAY;
        if (block.timestamp < availableAt) revert ClaimTooEarly(availableAt);

        s.status = Status.Claimed;
        address provider = s.provider;
        uint256 amount = s.amount;
        emit Claimed(jobId, provider, amount);
        _pay(provider, amount);
    }

    /// @notice The requester takes the stake back after the deadline when the
    ///         provider never submitted.
    function refund(bytes32 jobId) external nonReentrant {
        Stake storage s = _known(jobId);
        if (msg.sender != s.requester) revert NotRequester(msg.sender);
        if (s.status != Status.Staked) revert WrongStatus(jobId, s.status);
        if (block.timestamp <= s.deadline) revert DeadlineNotPassed(s.deadline);

        s.status = Status.Refunded;
        address requester = s.requester;
        uint256 amount = s.amount;
        emit Refunded(jobId, requester, amount);
        _pay(requester, amount);
    }

    function _known(bytes32 jobId) private view returns (Stake storage s) {
        s = stakes[jobId];
        if (s.status == Status.None) revert UnknownJob(jobId);
    }

    function _pay(address to, uint256 amount) private {
        _call(abi.encodeCall(IERC20.transfer, (to, amount)));
    }

    /// @dev SafeERC20-style call: success needs no revert and either no return
    ///      data (from a contract) or an ABI-encoded `true`. A token's revert
    ///      reason is passed through; otherwise the failure is TransferFailed.
    function _call(bytes memory data) private {
        address token = address(usdc);
        (bool ok, bytes memory ret) = token.call(data);
        if (!ok) {
            if (ret.length > 0) {
                assembly ("memory-safe") {
                    revert(add(ret, 32), mload(ret))
                }
            }
            revert TransferFailed();
        }
        if (ret.length == 0) {
            if (token.code.length == 0) revert TransferFailed();
        } else if (ret.length < 32 || abi.decode(ret, (uint256)) != 1) {
            revert TransferFailed();
        }
    }
}
