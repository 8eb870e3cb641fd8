#!/usr/bin/env bash
# Compile the contracts and write the committed artifacts (ABI + bytecode) that
# the Rust side loads with alloy's `sol!`: contracts/artifacts/<Name>.json.
# Usage: contracts/build.sh [OUTPUT_DIR]   (default: contracts/artifacts)
# Works from any directory; needs `npm ci` in the repository root.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
forge="$root/node_modules/@foundry-rs/forge-linux-amd64/bin/forge"
if [[ ! -x "$forge" ]] || [[ ! -d "$root/node_modules/solc" ]]; then
  echo "contracts/build.sh: forge or solc missing under $root/node_modules; run \`npm ci\` in $root first" >&2
  exit 1
fi

dest="${1:-$here/artifacts}"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# A fresh out/cache every time: the artifacts never depend on a stale cache.
(cd "$here" && "$forge" build --offline --force --skip test --out "$work/out" --cache-path "$work/cache" >"$work/log" 2>&1) || {
  cat "$work/log" >&2
  echo "contracts/build.sh: forge build failed" >&2
  exit 1
}

# Contract name -> source file (relative to contracts/src).
node - "$work/out" "$dest" <<'JS'
const fs = require("fs");
const path = require("path");
const [out, dest] = process.argv.slice(2);
const contracts = {
  EdgentEscrow: "EdgentEscrow.sol",
  EdgentEscrowV4: "EdgentEscrowV4.sol",
  Groth16Verifier: "Groth16Verifier.sol",
  MockUSDC: "MockUSDC.sol",
  ENSRegistry: "ENSRegistry.sol",
  PublicResolver: "PublicResolver.sol",
};
for (const [name, file] of Object.entries(contracts)) {
  const full = JSON.parse(fs.readFileSync(path.join(out, file, name + ".json"), "utf8"));
  const small = {
    contractName: name,
    abi: full.abi,
    bytecode: { object: full.bytecode.object },
    deployedBytecode: { object: full.deployedBytecode.object },
    methodIdentifiers: full.methodIdentifiers,
  };
  fs.writeFileSync(path.join(dest, name + ".json"), JSON.stringify(small, null, 2) + "\n");
  console.log(`${name}: ${(full.deployedBytecode.object.length - 2) / 2} bytes runtime -> ${path.join(dest, name + ".json")}`);
}
JS
