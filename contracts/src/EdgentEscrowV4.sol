// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "./interfaces/IERC20.sol";
import {IERC2612} from "./interfaces/IERC2612.sol";
import {IERC3009} from "./interfaces/IERC3009.sol";
import {Groth16Verifier} from "./Groth16Verifier.sol";

/// @title EdgentEscrowV4
/// @notice Holds a requester's USDC for one delegated inference job until the job
///         settles, as a fair exchange where neither side judges its own case:
///
///         Staked ──release (requester)──────────────────────────▶ Released  (provider paid)
///           ├──decline (provider, before submit)────────────────▶ Declined  (requester refunded)
///           ├──refund (requester, now > deadline)───────────────▶ Refunded  (requester refunded)
///           └──submit (provider, valid proof, now <= deadline)──▶ Submitted
///         Submitted ──release (requester)───────────────────────▶ Released  (provider paid)
///           ├──finalize (anyone, now >= submittedAt + window)───▶ Finalized (provider paid)
///           └──dispute (requester, now < submittedAt + window)──▶ Disputed
///         Disputed ──release (requester concedes)───────────────▶ Released  (provider paid)
///           └──resolve (arbiter)──▶ ResolvedPaid (provider paid) | ResolvedRefunded (requester refunded)
///
///         The requester pays with its own `release` (no operator on the happy path).
///         After a valid `submit` the requester can no longer take the money back
///         alone: only the arbiter, on a dispute raised within the dispute window,
///         can refund it. Without a valid `submit` the provider can never be paid
///         except by the requester's own `release`. The arbiter is fixed at
///         deployment (`arbiter()`, checked by providers against a trusted list) and
///         may be neither party of a stake.
///
///         One setting, `disputeWindow()` (seconds, a constructor parameter), is the
///         dispute window, the delay after which an undisputed submit is paid, and
///         the margin the daemon adds to a job's deadline for its stake's deadline.
///
///         Staking is unchanged from version 3: `stake` (after `approve`),
///         `stakeWithPermit` (EIP-2612) and `stakeWithAuthorization` (EIP-3009,
///         submitted by anyone), each naming the provider's wallet and the Poseidon
///         commitment to its AXL key; `submit` verifies a Groth16 proof against
///         signals the escrow derives itself (output commitment, key commitment, job id).
contract EdgentEscrowV4 {
    /// @notice Lifecycle of a job's stake. `None` means the job id is unknown.
    enum Status {
        None,
        Staked,
        Submitted,
        Disputed,
        Released,
        Finalized,
        ResolvedPaid,
        ResolvedRefunded,
        Refunded,
        Declined
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
        bytes32 keyCommitment;
    }

    /// @notice This contract's interface version: 2 added decline, stakeWithPermit,
    ///         stakeWithAuthorization and version() itself; 3 verifies a Groth16 proof
    ///         at `submit`; 4 is the fair exchange: the requester releases, a dispute
    ///         window after submit, an arbiter for disputes, no reject.
    uint256 private constant VERSION = 4;

    /// @notice Bounds of the dispute window: under 30 s a requester on a busy chain
    ///         could not land a dispute in time; over a day the provider's money is
    ///         held longer than any agent's job is worth waiting for.
    uint64 public constant MIN_DISPUTE_WINDOW = 30;
    uint64 public constant MAX_DISPUTE_WINDOW = 1 days;

    /// @notice BN254's scalar field: every public signal of a proof is below it.
    uint256 private constant SNARK_FIELD =
        21888242871839275222246405745257275088548364400416034343698204186575808495617;

    /// @notice The stablecoin held in escrow (USDC, 6 decimals).
    IERC20 public immutable usdc;
    /// @notice The only account that decides disputes (`resolve`); never a party of a stake.
    address public immutable arbiter;
    /// @notice Seconds after `submit` during which the requester may `dispute`; at
    ///         `submittedAt + disputeWindow` anyone may `finalize` (pay the provider).
    uint64 public immutable disputeWindow;
    /// @notice The Groth16 verifier of edgent's circuit (exported by snarkjs from the
    ///         committed key), deployed by this contract's constructor.
    Groth16Verifier public immutable verifier;

    mapping(bytes32 => Stake) private stakes;

    uint256 private constant UNLOCKED = 1;
    uint256 private constant LOCKED = 2;
    uint256 private lock = UNLOCKED;

    error JobExists(bytes32 jobId);
    error UnknownJob(bytes32 jobId);
    error WrongStatus(bytes32 jobId, Status status);
    error NotArbiter(address caller);
    error NotProvider(address caller);
    error NotRequester(address caller);
    error ArbiterIsParty(address arbiter);
    error BadDisputeWindow(uint64 window);
    error ZeroAmount();
    error ZeroAddress();
    error DeadlinePassed(uint64 deadline);
    error DeadlineNotPassed(uint64 deadline);
    error DisputeWindowOpen(uint64 closesAt);
    error DisputeWindowClosed(uint64 closedAt);
    error OutputMismatch(bytes32 expected, bytes32 got);
    error InsufficientAllowance(uint256 allowance, uint256 needed);
    error InsufficientBalance(uint256 balance, uint256 needed);
    error TransferFailed();
    error Reentrancy();
    error KeyCommitmentOutOfField(bytes32 keyCommitment);
    error InvalidProof(bytes32 jobId);

    event Staked(
        bytes32 indexed jobId, address indexed requester, address indexed provider, uint256 amount, uint64 deadline
    );
    event Submitted(bytes32 indexed jobId, bytes32 outputHash);
    event Released(bytes32 indexed jobId, address indexed provider, uint256 amount, bytes32 outputHash);
    event Finalized(bytes32 indexed jobId, address indexed provider, uint256 amount);
    /// @notice The evidence's hashes: `taskHash` of the task the requester signed,
    ///         `resultHash` of the result the provider signed (its output hash inside),
    ///         and the output commitment the provider submitted.
    event Disputed(
        bytes32 indexed jobId, address indexed requester, bytes32 taskHash, bytes32 resultHash, bytes32 outputHash
    );
    event Resolved(bytes32 indexed jobId, address indexed paidTo, uint256 amount, bool providerPaid);
    event Refunded(bytes32 indexed jobId, address indexed requester, uint256 amount);
    event Declined(bytes32 indexed jobId, address indexed requester, uint256 amount);

    modifier nonReentrant() {
        if (lock == LOCKED) revert Reentrancy();
        lock = LOCKED;
        _;
        lock = UNLOCKED;
    }

    /// @param usdc_ the stablecoin to escrow.
    /// @param arbiter_ the account that decides disputes (KeeperHub's managed wallet).
    /// @param disputeWindow_ seconds, MIN_DISPUTE_WINDOW..MAX_DISPUTE_WINDOW.
    constructor(address usdc_, address arbiter_, uint64 disputeWindow_) {
        if (usdc_ == address(0) || arbiter_ == address(0)) revert ZeroAddress();
        if (disputeWindow_ < MIN_DISPUTE_WINDOW || disputeWindow_ > MAX_DISPUTE_WINDOW) {
            revert BadDisputeWindow(disputeWindow_);
        }
        usdc = IERC20(usdc_);
        arbiter = arbiter_;
        disputeWindow = disputeWindow_;
        verifier = new Groth16Verifier();
    }

    /// @notice The interface version (4).
    function version() external pure returns (uint256) {
        return VERSION;
    }

    /// @notice Lock `amount` of the caller's USDC for `jobId`, payable to
    ///         `provider`. The caller must have approved the escrow first.
    /// @param keyCommitment Poseidon commitment to the provider's AXL public key
    ///        (the circuit's walletCommitment): `submit` needs a proof under it.
    /// @param deadline unix time (seconds) until which the provider may
    ///        `submit`; after it, with nothing submitted, the requester may `refund`.
    function stake(bytes32 jobId, address provider, bytes32 keyCommitment, uint256 amount, uint64 deadline)
        external
        nonReentrant
    {
        _checkNew(jobId, provider, keyCommitment, amount, deadline);
        _checkFunds(msg.sender, amount);
        _record(jobId, msg.sender, provider, keyCommitment, amount, deadline);
        _pullFrom(msg.sender, amount);
    }

    /// @notice `stake` in one transaction: sets the allowance with the caller's
    ///         EIP-2612 `permit` signature first. A permit that fails (already used,
    ///         e.g. front-run from the mempool) is ignored when the allowance is
    ///         already enough; otherwise the allowance check reverts as in `stake`.
    function stakeWithPermit(
        bytes32 jobId,
        address provider,
        bytes32 keyCommitment,
        uint256 amount,
        uint64 deadline,
        uint256 permitDeadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external nonReentrant {
        _checkNew(jobId, provider, keyCommitment, amount, deadline);
        try IERC2612(address(usdc)).permit(msg.sender, address(this), amount, permitDeadline, v, r, s) {} catch {}
        _checkFunds(msg.sender, amount);
        _record(jobId, msg.sender, provider, keyCommitment, amount, deadline);
        _pullFrom(msg.sender, amount);
    }

    /// @notice The EIP-3009 nonce the requester signs for a stake: it commits to the
    ///         job, both parties, the provider's key commitment, the amount and the
    ///         deadline, so whoever submits the authorization cannot change any of them
    ///         (the token checks the signature over it; a different term gives a
    ///         different nonce).
    function stakeNonce(
        bytes32 jobId,
        address requester,
        address provider,
        bytes32 keyCommitment,
        uint256 amount,
        uint64 deadline
    ) public pure returns (bytes32) {
        return keccak256(abi.encode(jobId, requester, provider, keyCommitment, amount, deadline));
    }

    /// @notice Lock `amount` of `requester`'s USDC for `jobId` with the requester's
    ///         EIP-3009 `ReceiveWithAuthorization(requester, escrow, amount,
    ///         validAfter, validBefore, stakeNonce(...))` signature. Anyone may submit
    ///         it (normally the provider, so the requester needs no ETH and the
    ///         provider knows the stake is real); the terms are bound by the nonce.
    ///         The authorization can be used once: a replay reverts in the token.
    function stakeWithAuthorization(
        bytes32 jobId,
        address requester,
        address provider,
        bytes32 keyCommitment,
        uint256 amount,
        uint64 deadline,
        uint256 validAfter,
        uint256 validBefore,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external nonReentrant {
        if (requester == address(0)) revert ZeroAddress();
        _checkNew(jobId, provider, keyCommitment, amount, deadline);
        uint256 balance = usdc.balanceOf(requester);
        if (balance < amount) revert InsufficientBalance(balance, amount);
        _record(jobId, requester, provider, keyCommitment, amount, deadline);

        uint256 before = usdc.balanceOf(address(this));
        bytes32 nonce = stakeNonce(jobId, requester, provider, keyCommitment, amount, deadline);
        _call(
            abi.encodeCall(
                IERC3009.receiveWithAuthorization,
                (requester, address(this), amount, validAfter, validBefore, nonce, v, r, s)
            )
        );
        if (usdc.balanceOf(address(this)) != before + amount) revert TransferFailed();
    }

    /// @notice The stake for `jobId`; the zero struct (status None) if unknown.
    function getStake(bytes32 jobId) external view returns (Stake memory) {
        return stakes[jobId];
    }

    /// @notice The provider records the output commitment of what it delivered,
    ///         with a Groth16 proof of edgent's circuit for it (signals `[outputHash,
    ///         s.keyCommitment, jobId >> 128, jobId & (2^128 - 1)]`). This opens the
    ///         dispute window: the requester may `dispute` until `submittedAt +
    ///         disputeWindow`, then anyone may `finalize`. From now on the requester
    ///         can neither `refund` nor be refunded without the arbiter.
    /// @param outputHash the proof's outputCommitment (Poseidon of keccak256(output)).
    /// @param proof `[a.x, a.y, b.x.c1, b.x.c0, b.y.c1, b.y.c0, c.x, c.y]`.
    function submit(bytes32 jobId, bytes32 outputHash, uint256[8] calldata proof) external nonReentrant {
        Stake storage s = _known(jobId);
        if (msg.sender != s.provider) revert NotProvider(msg.sender);
        if (s.status != Status.Staked) revert WrongStatus(jobId, s.status);
        if (block.timestamp > s.deadline) revert DeadlinePassed(s.deadline);
        if (!_verify(jobId, outputHash, s.keyCommitment, proof)) revert InvalidProof(jobId);

        s.status = Status.Submitted;
        s.submittedAt = uint64(block.timestamp);
        s.outputHash = outputHash;
        emit Submitted(jobId, outputHash);
    }

    /// @notice The requester pays the provider (it verified the proof and the
    ///         output off chain). Allowed while Staked (no submit needed: the happy
    ///         path costs no proof on chain), Submitted, or Disputed (the requester
    ///         concedes). After a submit, `outputHash` must be the submitted one.
    function release(bytes32 jobId, bytes32 outputHash) external nonReentrant {
        Stake storage s = _known(jobId);
        if (msg.sender != s.requester) revert NotRequester(msg.sender);
        Status status = s.status;
        if (status == Status.Submitted || status == Status.Disputed) {
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

    /// @notice Anyone pays the provider once the dispute window of an undisputed
    ///         submit has closed (`now >= submittedAt + disputeWindow`).
    function finalize(bytes32 jobId) external nonReentrant {
        Stake storage s = _known(jobId);
        if (s.status != Status.Submitted) revert WrongStatus(jobId, s.status);
        uint64 closesAt = s.submittedAt + disputeWindow;
        if (block.timestamp < closesAt) revert DisputeWindowOpen(closesAt);

        s.status = Status.Finalized;
        address provider = s.provider;
        uint256 amount = s.amount;
        emit Finalized(jobId, provider, amount);
        _pay(provider, amount);
    }

    /// @notice The requester contests a submit within the dispute window
    ///         (`now < submittedAt + disputeWindow`); the arbiter decides. The event
    ///         carries the hashes of the evidence both sides signed.
    /// @param taskHash keccak256 of the signed task the requester sent.
    /// @param resultHash keccak256 of the signed result the provider sent (zero if none arrived).
    function dispute(bytes32 jobId, bytes32 taskHash, bytes32 resultHash) external nonReentrant {
        Stake storage s = _known(jobId);
        if (msg.sender != s.requester) revert NotRequester(msg.sender);
        if (s.status != Status.Submitted) revert WrongStatus(jobId, s.status);
        uint64 closesAt = s.submittedAt + disputeWindow;
        if (block.timestamp >= closesAt) revert DisputeWindowClosed(closesAt);

        s.status = Status.Disputed;
        emit Disputed(jobId, msg.sender, taskHash, resultHash, s.outputHash);
    }

    /// @notice The arbiter decides a dispute: pay the provider or refund the requester.
    function resolve(bytes32 jobId, bool payProvider) external nonReentrant {
        Stake storage s = _known(jobId);
        if (msg.sender != arbiter) revert NotArbiter(msg.sender);
        if (s.status != Status.Disputed) revert WrongStatus(jobId, s.status);

        s.status = payProvider ? Status.ResolvedPaid : Status.ResolvedRefunded;
        address to = payProvider ? s.provider : s.requester;
        uint256 amount = s.amount;
        emit Resolved(jobId, to, amount, payProvider);
        _pay(to, amount);
    }

    /// @notice The provider cannot serve a staked job (busy, model gone, inference
    ///         failed): the requester is refunded in this same transaction. Only
    ///         before the provider submitted.
    function decline(bytes32 jobId) external nonReentrant {
        Stake storage s = _known(jobId);
        if (msg.sender != s.provider) revert NotProvider(msg.sender);
        if (s.status != Status.Staked) revert WrongStatus(jobId, s.status);

        s.status = Status.Declined;
        address requester = s.requester;
        uint256 amount = s.amount;
        emit Declined(jobId, requester, amount);
        _pay(requester, amount);
    }

    /// @notice The requester takes the stake back after the deadline when the
    ///         provider never submitted (so a provider that never submits holds nothing).
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

    function _checkNew(bytes32 jobId, address provider, bytes32 keyCommitment, uint256 amount, uint64 deadline)
        private
        view
    {
        if (stakes[jobId].status != Status.None) revert JobExists(jobId);
        if (amount == 0) revert ZeroAmount();
        if (provider == address(0)) revert ZeroAddress();
        // Nobody judges their own case: the arbiter is never a party of a stake.
        if (provider == arbiter) revert ArbiterIsParty(arbiter);
        // A commitment outside the field could never be proved: refuse the stake now
        // rather than lock funds the provider cannot submit for.
        if (uint256(keyCommitment) >= SNARK_FIELD) revert KeyCommitmentOutOfField(keyCommitment);
        if (deadline <= block.timestamp) revert DeadlinePassed(deadline);
    }

    /// @dev The Groth16 check with the signals in the circuit's order: outputCommitment,
    ///      walletCommitment, jobIdHi, jobIdLo (the job id's halves, big-endian).
    function _verify(bytes32 jobId, bytes32 outputHash, bytes32 keyCommitment, uint256[8] calldata proof)
        private
        view
        returns (bool)
    {
        uint256 id = uint256(jobId);
        return verifier.verifyProof(
            [proof[0], proof[1]],
            [[proof[2], proof[3]], [proof[4], proof[5]]],
            [proof[6], proof[7]],
            [uint256(outputHash), uint256(keyCommitment), id >> 128, id & type(uint128).max]
        );
    }

    function _checkFunds(address requester, uint256 amount) private view {
        uint256 allowed = usdc.allowance(requester, address(this));
        if (allowed < amount) revert InsufficientAllowance(allowed, amount);
        uint256 balance = usdc.balanceOf(requester);
        if (balance < amount) revert InsufficientBalance(balance, amount);
    }

    function _record(
        bytes32 jobId,
        address requester,
        address provider,
        bytes32 keyCommitment,
        uint256 amount,
        uint64 deadline
    ) private {
        if (requester == arbiter) revert ArbiterIsParty(arbiter);
        stakes[jobId] = Stake({
            requester: requester,
            provider: provider,
            amount: amount,
            createdAt: uint64(block.timestamp),
            submittedAt: 0,
            deadline: deadline,
            outputHash: bytes32(0),
            status: Status.Staked,
            keyCommitment: keyCommitment
        });
        emit Staked(jobId, requester, provider, amount, deadline);
    }

    /// @dev The escrow must hold exactly what it records (no fee-on-transfer surprises).
    function _pullFrom(address requester, uint256 amount) private {
        uint256 before = usdc.balanceOf(address(this));
        _call(abi.encodeCall(IERC20.transferFrom, (requester, address(this), amount)));
        if (usdc.balanceOf(address(this)) != before + amount) revert TransferFailed();
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
