#!/usr/bin/env bash
# Export the Groth16 verifier again from the committed key and compare it with
# contracts/src/Groth16Verifier.sol, then rebuild the contracts into a temporary
# directory and compare with the committed artifacts in contracts/artifacts/. Fails
# when the circuit's key changed without `bash contracts/export-verifier.sh`, or a
# contract changed without `bash contracts/build.sh`, being re-run and committed.
# Works from any directory; needs `npm ci` in the repository root.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fresh="$(mktemp -d)"
trap 'rm -rf "$fresh"' EXIT

status=0
bash "$here/export-verifier.sh" "$fresh/Groth16Verifier.sol" >/dev/null
if ! cmp -s "$fresh/Groth16Verifier.sol" "$here/src/Groth16Verifier.sol"; then
  echo "check-artifacts: contracts/src/Groth16Verifier.sol is not the verifier of circuits/artifacts/edgent_final.zkey;" >&2
  echo "  run \`bash contracts/export-verifier.sh && bash contracts/build.sh\` and commit both" >&2
  status=1
fi
rm "$fresh/Groth16Verifier.sol"

bash "$here/build.sh" "$fresh" >/dev/null

for f in "$fresh"/*.json; do
  name="$(basename "$f")"
  committed="$here/artifacts/$name"
  if [[ ! -f "$committed" ]]; then
    echo "check-artifacts: contracts/artifacts/$name is missing" >&2
    status=1
  elif ! cmp -s "$f" "$committed"; then
    echo "check-artifacts: contracts/artifacts/$name is stale (the source changed)" >&2
    node -e '
      const fs = require("fs");
      const [a, b] = process.argv.slice(1).map((p) => JSON.parse(fs.readFileSync(p, "utf8")));
      for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
        if (JSON.stringify(a[k]) !== JSON.stringify(b[k])) console.error("  differs: " + k);
      }' "$committed" "$f" || true
    status=1
  fi
done
for committed in "$here"/artifacts/*.json; do
  name="$(basename "$committed")"
  if [[ ! -f "$fresh/$name" ]]; then
    echo "check-artifacts: contracts/artifacts/$name is not produced by build.sh any more" >&2
    status=1
  fi
done

if [[ $status -ne 0 ]]; then
  echo "check-artifacts: FAILED. Run \`bash contracts/build.sh\` and commit contracts/artifacts/." >&2
  exit 1
fi
echo "check-artifacts: contracts/artifacts/ matches the sources ($(ls "$fresh" | wc -l) artifacts)"
