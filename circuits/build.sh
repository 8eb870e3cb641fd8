#!/usr/bin/env bash
# Build edgent's circuit artifacts from circuits/edgent.circom:
#   1. compile with circom2 (--O2) to R1CS + witness WebAssembly,
#   2. run a local single-contributor trusted setup (powers of tau + Groth16 phase 2),
#   3. export the verification key,
#   4. write manifest.sha256 over the circuit source and every artifact.
# The artifacts are committed: every node must prove and verify with the same keys, so only
# rerun this when the circuit changes (and commit the result). The setup is for development;
# see README.md for how more parties add contributions.
# Needs `npm ci` (circom2, snarkjs, circomlib). Takes about a minute at power 10.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
bin="$root/node_modules/.bin"
power="${EDGENT_PTAU_POWER:-10}"   # 2^10 = 1024 >= 738 constraints + 4 public signals + 1
out="$here/artifacts"

for tool in circom2 snarkjs; do
    if [[ ! -x "$bin/$tool" ]]; then
        echo "build.sh: $bin/$tool not found; run 'npm ci' in $root first" >&2
        exit 1
    fi
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
entropy() { head -c 64 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

echo "== compile"
(cd "$root" && "$bin/circom2" circuits/edgent.circom --r1cs --wasm --O2 -l node_modules -o "$work")
"$bin/snarkjs" r1cs info "$work/edgent.r1cs"

echo "== powers of tau (bn128, 2^$power)"
"$bin/snarkjs" powersoftau new bn128 "$power" "$work/pot_0000.ptau"
"$bin/snarkjs" powersoftau contribute "$work/pot_0000.ptau" "$work/pot_0001.ptau" \
    --name="edgent dev phase 1" -e="$(entropy)"
"$bin/snarkjs" powersoftau prepare phase2 "$work/pot_0001.ptau" "$work/pot_final.ptau"

echo "== groth16 phase 2"
"$bin/snarkjs" groth16 setup "$work/edgent.r1cs" "$work/pot_final.ptau" "$work/edgent_0000.zkey"
"$bin/snarkjs" zkey contribute "$work/edgent_0000.zkey" "$work/edgent_final.zkey" \
    --name="edgent dev phase 2" -e="$(entropy)"
"$bin/snarkjs" zkey verify "$work/edgent.r1cs" "$work/pot_final.ptau" "$work/edgent_final.zkey"
"$bin/snarkjs" zkey export verificationkey "$work/edgent_final.zkey" "$work/verification_key.json"

echo "== install artifacts in $out"
mkdir -p "$out"
cp "$work/edgent.r1cs" "$out/edgent.r1cs"
cp "$work/edgent_js/edgent.wasm" "$out/edgent.wasm"
cp "$work/edgent_final.zkey" "$out/edgent_final.zkey"
cp "$work/verification_key.json" "$out/verification_key.json"
cp "$work/pot_final.ptau" "$out/pot${power}_final.ptau"

(cd "$here" && sha256sum edgent.circom artifacts/edgent.r1cs artifacts/edgent.wasm \
    artifacts/edgent_final.zkey artifacts/verification_key.json "artifacts/pot${power}_final.ptau" \
    > manifest.sha256)
echo "== wrote $here/manifest.sha256"
cat "$here/manifest.sha256"
