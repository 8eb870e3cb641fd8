#!/usr/bin/env bash
# Installs the named Debian packages that are missing (as root, with apt-get), or says which
# are missing and how to get them. Used by .ci/run (build dependencies: libssl-dev,
# pkg-config) and scripts/test.sh (test dependencies).
#   scripts/apt-deps.sh libssl-dev pkg-config
set -euo pipefail

missing=()
for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
((${#missing[@]} == 0)) && exit 0
if ((EUID == 0)) && command -v apt-get >/dev/null 2>&1; then
    printf '\n==> installing Debian packages: %s\n' "${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null </dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null </dev/null
else
    echo "missing Debian packages: ${missing[*]} (apt-get install ${missing[*]})" >&2
    exit 1
fi
