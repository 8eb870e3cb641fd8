#!/usr/bin/env bash
# Runs every test of edgent: the one command of the README's Quick start, and what CI runs.
#
# It installs what the tests need and is missing (npm packages from package-lock.json; as
# root, Debian's libssl-dev, shellcheck, systemd and chromium), then runs, in order:
#   1. the committed-artifact checks (circuit manifest, contract artifacts vs a fresh build)
#   2. the forge tests of the contracts
#   3. shellcheck, the systemd unit check, and the install.sh test
#   4. cargo test (unit, integration and end-to-end tests with real processes)
#   5. the dashboard in headless Chromium (node --test, playwright-core)
# Any failure stops it with a non-zero exit.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

step() { printf '\n==> %s\n' "$*"; }

# Build (TLS through the system's OpenSSL) and test dependencies.
bash scripts/apt-deps.sh libssl-dev pkg-config shellcheck systemd chromium python3-venv

if [[ ! -x node_modules/.bin/snarkjs || ! -x node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil ]] \
    || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
    step "npm ci (forge, anvil, solcjs, circom, snarkjs, playwright-core)"
    npm ci --no-audit --no-fund
fi

if [[ -f circuits/check.sh ]]; then
    step "circuit source and artifacts match the manifest"
    bash circuits/check.sh
fi

step "contract artifacts match a fresh build"
bash contracts/check-artifacts.sh

step "forge tests"
bash contracts/test.sh

step "shellcheck"
shellcheck install.sh scripts/*.sh .ci/run

step "systemd unit"
bash scripts/check-systemd.sh

step "install.sh"
bash scripts/check-install.sh

# Python for tests/x402.rs (the official x402 models): a venv of tests/python/requirements.txt,
# kept outside the clone and rebuilt only when the requirements change.
if [[ -z "${EDGENT_TEST_PYTHON:-}" ]]; then
    venv="${XDG_CACHE_HOME:-$HOME/.cache}/edgent/test-venv"
    want="$(sha256sum tests/python/requirements.txt | cut -d' ' -f1)"
    if [[ "$(cat "$venv/.requirements.sha256" 2>/dev/null || true)" != "$want" ]]; then
        step "python venv for the tests ($venv)"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q -r tests/python/requirements.txt
        printf '%s\n' "$want" >"$venv/.requirements.sha256"
    fi
    export EDGENT_TEST_PYTHON="$venv/bin/python"
fi

step "cargo test"
cargo test --locked

step "dashboard in headless Chromium"
node --test tests/browser/
