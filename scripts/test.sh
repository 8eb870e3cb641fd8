#!/usr/bin/env bash
# Runs every test of edgent: the one command of the README's Quick start, and what CI runs.
#
# It installs what the tests need and is missing (npm packages from package-lock.json; as
# root, Debian's libssl-dev, shellcheck, systemd and chromium), then runs, in order:
#   1. the committed-artifact checks (circuit manifest, contract artifacts vs a fresh build)
#   2. the forge tests of the contracts
#   3. shellcheck, the systemd unit check, and the install.sh test
#   4. cargo test (unit tests, and the integration tests: one binary, tests/it/), after
#      building the real Ollama (scripts/install-ollama.sh, cached outside the clone), the
#      Python venv of the test agents (scripts/python-venv.sh) and the real model, Gemma 3
#      270M, in an Ollama models directory (scripts/install-gemma.sh, cached too), whose
#      paths the tests read from EDGENT_OLLAMA_BIN, EDGENT_TEST_PYTHON and
#      EDGENT_GEMMA_MODELS
#   5. the demo with a real model (scripts/demo-gemma.sh, with the binary cargo test built):
#      Gemma 3 270M offloaded from an Ollama in a memory cgroup to a paid provider
#   6. the dashboard in headless Chromium (node --test, playwright-core)
#   7. no process started from step 1 on is still running (scripts/leftovers.sh)
# Any failure stops it with a non-zero exit. So does a process the checks and tests started
# that is still running at the end (scripts/leftovers.sh names and kills it): every test ends
# what it started, children included.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# Each step says how many seconds the run had taken when it began, so a slow step shows.
step() { printf '\n==> %s (at %d s)\n' "$*" "$SECONDS"; }

# Build (TLS through the system's OpenSSL) and test dependencies.
bash scripts/apt-deps.sh libssl-dev pkg-config shellcheck systemd chromium python3-venv g++

if [[ ! -x node_modules/.bin/snarkjs || ! -x node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil ]] \
    || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
    step "npm ci (forge, anvil, solcjs, circom, snarkjs, playwright-core)"
    npm ci --no-audit --no-fund
fi

step "the real Ollama (scripts/install-ollama.sh), the test venv (scripts/python-venv.sh), Gemma 3 270M (scripts/install-gemma.sh)"
EDGENT_OLLAMA_BIN="$(bash scripts/install-ollama.sh)"
export EDGENT_OLLAMA_BIN
EDGENT_TEST_PYTHON="$(bash scripts/python-venv.sh)"
EDGENT_GEMMA_MODELS="$(bash scripts/install-gemma.sh)"
export EDGENT_TEST_PYTHON EDGENT_GEMMA_MODELS

# From here on every process started is the run's: none may outlive it.
# shellcheck source=scripts/leftovers.sh
source scripts/leftovers.sh
leftovers_begin
trap 'leftovers_end || exit 1' EXIT

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

# One test thread more than the cores: the integration tests spend much of their time waiting
# on chains, timers and child processes (three threads on 2 cores: 310-324 s in three runs,
# against 355-404 s with two, and each run passed). RUST_TEST_THREADS overrides.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-$(( $(nproc) + 1 ))}"
step "cargo test ($RUST_TEST_THREADS test threads)"
cargo test --locked

step "the demo with a real model (scripts/demo-gemma.sh: Gemma 3 270M offloaded after a real out-of-memory)"
demo_out="$(EDGENT_BIN="${CARGO_TARGET_DIR:-target}/debug/edgent" bash scripts/demo-gemma.sh 2>&1)" || {
    printf '%s\n' "$demo_out"
    exit 1
}
printf '%s\n' "$demo_out"
grep -q "offloaded the request over the mesh" <<<"$demo_out"

step "dashboard in headless Chromium"
node --test tests/browser/

step "no process of the tests left running"
trap - EXIT
leftovers_end
echo "none"
