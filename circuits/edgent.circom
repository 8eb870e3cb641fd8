pragma circom 2.1.0;

// edgent's statement: "I know an output whose keccak256 hashes to the committed value, and
// the AXL public key behind the committed wallet, and I make this claim for this job."
//
// Public signals, in the order snarkjs lists them (outputs first, then public inputs):
//   [0] outputCommitment = Poseidon(chunk0, chunk1) of keccak256(output)
//   [1] walletCommitment = Poseidon(keyHi, keyLo) of the provider's 32-byte AXL public key
//   [2] jobIdHi          = bytes 0..16 of the bytes32 job id, read big-endian
//   [3] jobIdLo          = bytes 16..32 of the job id, read big-endian
//
// Private inputs:
//   outputHashBits[256]: bits 0..127 are chunk0 (bytes 0..16 of the hash, big-endian number),
//                        bits 128..255 are chunk1 (bytes 16..32); within a chunk, bit i is the
//                        number's i-th least significant bit (circomlib Bits2Num's order).
//   keyHi, keyLo:        bytes 0..16 and 16..32 of the provider key, each read big-endian.

include "circomlib/circuits/bitify.circom";
include "circomlib/circuits/poseidon.circom";

template Edgent() {
    signal input outputHashBits[256];
    signal input keyHi;
    signal input keyLo;
    signal input jobIdHi;
    signal input jobIdLo;

    signal output outputCommitment;
    signal output walletCommitment;

    // Bits2Num does not check its inputs: without this a prover could pass any field
    // elements and pick chunk values unrelated to a 256-bit hash.
    for (var i = 0; i < 256; i++) {
        outputHashBits[i] * (outputHashBits[i] - 1) === 0;
    }

    component chunk0 = Bits2Num(128);
    component chunk1 = Bits2Num(128);
    for (var i = 0; i < 128; i++) {
        chunk0.in[i] <== outputHashBits[i];
        chunk1.in[i] <== outputHashBits[128 + i];
    }

    component outputHash = Poseidon(2);
    outputHash.inputs[0] <== chunk0.out;
    outputHash.inputs[1] <== chunk1.out;
    outputCommitment <== outputHash.out;

    component walletHash = Poseidon(2);
    walletHash.inputs[0] <== keyHi;
    walletHash.inputs[1] <== keyLo;
    walletCommitment <== walletHash.out;

    // A public input that appears in no constraint has a zero term in the verifying key,
    // so the proof would hold for any value of it. These squares put the job id into the
    // constraint system: a proof made for one job fails for another.
    signal jobIdHiSquare;
    signal jobIdLoSquare;
    jobIdHiSquare <== jobIdHi * jobIdHi;
    jobIdLoSquare <== jobIdLo * jobIdLo;
}

component main { public [jobIdHi, jobIdLo] } = Edgent();
