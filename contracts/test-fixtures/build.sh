#!/usr/bin/env bash
# Compile the test fixtures (contracts edgent must REFUSE: the original project's escrow and
# this repository's version 2, whose submit takes no proof) into committed artifacts:
# contracts/test-fixtures/artifacts/<Name>.json (abi, bytecode, deployedBytecode), with
# npm's solcjs and the same optimizer settings as contracts/foundry.toml.
# Usage: contracts/test-fixtures/build.sh   (needs `npm ci` in the repository root)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
if [[ ! -d "$root/node_modules/solc" ]]; then
  echo "contracts/test-fixtures/build.sh: solc missing under $root/node_modules; run \`npm ci\` in $root first" >&2
  exit 1
fi

cd "$root"
node - "$here" <<'JS'
const fs = require("fs");
const path = require("path");
const solc = require(path.resolve("node_modules/solc"));
const [dir] = process.argv.slice(2);
const fixtures = { OldEscrow: "OldEscrow.sol", EdgentEscrowV2: "EdgentEscrowV2.sol" };
for (const [name, file] of Object.entries(fixtures)) {
  const input = {
    language: "Solidity",
    sources: { [file]: { content: fs.readFileSync(path.join(dir, file), "utf8") } },
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion: "cancun",
      metadata: { bytecodeHash: "none", appendCBOR: false },
      outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
    },
  };
  // solc names "../src/x" from a top-level source "src/x": resolve it under contracts/.
  const findImports = (p) => {
    try {
      return { contents: fs.readFileSync(path.join(dir, "..", p), "utf8") };
    } catch (e) {
      return { error: "not found: " + p };
    }
  };
  const out = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  const errors = (out.errors || []).filter((e) => e.severity === "error");
  if (errors.length) {
    for (const e of errors) console.error(e.formattedMessage);
    process.exit(1);
  }
  const c = out.contracts[file][name];
  const small = {
    contractName: name,
    abi: c.abi,
    bytecode: { object: "0x" + c.evm.bytecode.object },
    deployedBytecode: { object: "0x" + c.evm.deployedBytecode.object },
  };
  const dest = path.join(dir, "artifacts", name + ".json");
  fs.writeFileSync(dest, JSON.stringify(small, null, 2) + "\n");
  console.log(`${name}: ${c.evm.deployedBytecode.object.length / 2} bytes runtime -> ${dest}`);
}
JS
