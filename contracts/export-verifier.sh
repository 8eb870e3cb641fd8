#!/usr/bin/env bash
# Export the escrow's on-chain Groth16 verifier from the committed proving key
# (circuits/artifacts/edgent_final.zkey) with snarkjs, to contracts/src/Groth16Verifier.sol.
# The file is snarkjs's output unchanged (so it is not forge-formatted: foundry.toml's
# [fmt] ignores it). EdgentEscrow deploys it in its constructor and calls it at `submit`.
# Rerun after circuits/build.sh makes new keys, then `bash contracts/build.sh` and commit
# both; contracts/check-artifacts.sh fails while the committed file differs from the key.
# Usage: contracts/export-verifier.sh [OUTPUT_FILE]   (needs `npm ci` in the repository root)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
snarkjs="$root/node_modules/.bin/snarkjs"
if [[ ! -x "$snarkjs" ]]; then
  echo "contracts/export-verifier.sh: $snarkjs not found; run \`npm ci\` in $root first" >&2
  exit 1
fi
dest="${1:-$here/src/Groth16Verifier.sol}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
"$snarkjs" zkey export solidityverifier "$root/circuits/artifacts/edgent_final.zkey" "$dest" >"$log" 2>&1 || {
  cat "$log" >&2
  echo "contracts/export-verifier.sh: snarkjs could not export the verifier" >&2
  exit 1
}
echo "contracts/export-verifier.sh: wrote $dest from circuits/artifacts/edgent_final.zkey"
