#!/usr/bin/env bash
# Rebuild the contracts into a temporary directory and compare with the
# committed artifacts in contracts/artifacts/. Fails when a contract changed
# without `bash contracts/build.sh` being re-run and its output committed.
# Works from any directory; needs `npm ci` in the repository root.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fresh="$(mktemp -d)"
trap 'rm -rf "$fresh"' EXIT

bash "$here/build.sh" "$fresh" >/dev/null

status=0
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
