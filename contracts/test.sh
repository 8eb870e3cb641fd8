#!/usr/bin/env bash
# Check Solidity formatting (forge fmt), then run the contract tests (unit,
# timing, fuzz, invariant) with forge, offline.
# Works from any directory; needs `npm ci` in the repository root.
# Extra arguments go to `forge test` (e.g. `--match-test refund -vvv`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
forge="$root/node_modules/@foundry-rs/forge-linux-amd64/bin/forge"
if [[ ! -x "$forge" ]] || [[ ! -d "$root/node_modules/solc" ]]; then
  echo "contracts/test.sh: forge or solc missing under $root/node_modules; run \`npm ci\` in $root first" >&2
  exit 1
fi

cd "$here"
if ! "$forge" fmt --check >/dev/null 2>&1; then
  "$forge" fmt --check >&2 || true
  echo "contracts/test.sh: Solidity not formatted; run \`cd contracts && ../node_modules/@foundry-rs/forge-linux-amd64/bin/forge fmt\`" >&2
  exit 1
fi
exec "$forge" test --offline "$@"
