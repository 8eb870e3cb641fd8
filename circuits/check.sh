#!/usr/bin/env bash
# Fails if circuits/edgent.circom or any committed artifact no longer matches
# circuits/manifest.sha256 (written by build.sh), then recompiles the circuit with the pinned
# circom2 (about 10 s, no ceremony) and checks that the committed .r1cs and .wasm are exactly
# what the source compiles to. Needs `npm ci`; `--hashes-only` checks the manifest alone.
# A changed circuit needs `bash circuits/build.sh` (new keys) and a commit of its output.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
if [[ ! -f manifest.sha256 ]]; then
    echo "circuits/check.sh: circuits/manifest.sha256 is missing; run circuits/build.sh" >&2
    exit 1
fi
for f in edgent.circom artifacts/edgent.r1cs artifacts/edgent.wasm artifacts/edgent_final.zkey \
    artifacts/verification_key.json; do
    if ! grep -q " $f\$" manifest.sha256; then
        echo "circuits/check.sh: $f is not in manifest.sha256; run circuits/build.sh" >&2
        exit 1
    fi
done
if ! sha256sum --check --strict --quiet manifest.sha256; then
    echo "circuits/check.sh: the circuit or its artifacts differ from manifest.sha256." >&2
    echo "  If you changed circuits/edgent.circom, run 'bash circuits/build.sh' (new keys for" >&2
    echo "  every node) and commit circuits/artifacts and circuits/manifest.sha256." >&2
    exit 1
fi
echo "circuits/check.sh: circuit source and artifacts match manifest.sha256"

if [[ "${1:-}" == "--hashes-only" ]]; then
    exit 0
fi
root="$(cd "$here/.." && pwd)"
circom="$root/node_modules/.bin/circom2"
if [[ ! -x "$circom" ]]; then
    echo "circuits/check.sh: $circom not found; run 'npm ci' first (or pass --hashes-only)" >&2
    exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$root" && "$circom" circuits/edgent.circom --r1cs --wasm --O2 -l node_modules -o "$work" >"$work/log" 2>&1) || {
    cat "$work/log" >&2
    echo "circuits/check.sh: circuits/edgent.circom does not compile" >&2
    exit 1
}
for pair in "edgent.r1cs:artifacts/edgent.r1cs" "edgent_js/edgent.wasm:artifacts/edgent.wasm"; do
    if ! cmp -s "$work/${pair%%:*}" "$here/${pair#*:}"; then
        echo "circuits/check.sh: circuits/${pair#*:} is not what edgent.circom compiles to; run circuits/build.sh" >&2
        exit 1
    fi
done
echo "circuits/check.sh: edgent.circom recompiles to the committed .r1cs and .wasm"
