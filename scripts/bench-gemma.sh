#!/usr/bin/env bash
# Issue 23's side-by-side benchmark in one run, on Gemma 3 270M with the real Ollama:
#
#   bash scripts/bench-gemma.sh
#
# runs, one after the other, the benches that measure its figures and prints their rows as
# one table at the end (each bench's full output goes to the terminal as it runs):
#   - benches/gemma.rs: tokens per second local, through the mesh unpaid and paid; time to
#     first token added by the mesh; offload by prediction vs after the failure (a memory
#     cgroup on the requester's own Ollama: needs root); mesh messages per second of a
#     Gemma stream;
#   - benches/idle_cpu.rs: idle CPU of daemons on a hub-and-spoke mesh-sim, and a fast
#     stream's task_chunks per second;
#   - benches/rescue.rs (a rescued stream's gap) and benches/paid_wait.rs (a paid
#     delegation's added wait on 2 s blocks), when those files exist.
#
# Settings: BENCH_PROFILE (default release; `dev` for a quicker build), EDGENT_OLLAMA_BIN,
# EDGENT_TEST_PYTHON and EDGENT_GEMMA_MODELS (default: run the install scripts),
# GEMMA_ROUNDS, GEMMA_OFFLOAD_ROUNDS, IDLE_SECS (see each bench's doc comment).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { printf 'bench-gemma: %s\n' "$*" >&2; }

export EDGENT_OLLAMA_BIN="${EDGENT_OLLAMA_BIN:-$(bash scripts/install-ollama.sh)}"
export EDGENT_GEMMA_MODELS="${EDGENT_GEMMA_MODELS:-$(EDGENT_OLLAMA_BIN="$EDGENT_OLLAMA_BIN" bash scripts/install-gemma.sh)}"
export EDGENT_TEST_PYTHON="${EDGENT_TEST_PYTHON:-$(bash scripts/python-venv.sh)}"

profile=()
if [[ ${BENCH_PROFILE:-release} != release ]]; then
    profile=(--profile "$BENCH_PROFILE")
fi

benches=(gemma idle_cpu)
for extra in rescue paid_wait; do
    if [[ -f benches/$extra.rs ]]; then benches+=("$extra"); fi
done

out="$(mktemp -d -t edgent-bench-gemma.XXXXXX)"
trap 'rm -rf "$out"' EXIT
status=0
for b in "${benches[@]}"; do
    say "cargo bench ${profile[*]} --bench $b"
    if ! cargo bench "${profile[@]}" --bench "$b" 2>&1 | tee "$out/$b.log"; then
        say "the $b bench failed"
        status=1
    fi
done

echo
echo "Issue 23, side by side ($(date -u +%Y-%m-%d), ${BENCH_PROFILE:-release} build, load average $(cut -d' ' -f1-3 /proc/loadavg)):"
echo
echo "| figure | measured | goal |"
echo "|---|---|---|"
for b in "${benches[@]}"; do
    # Every bench prints its table rows as lines that start with "| " (headers aside).
    grep -E '^\| ' "$out/$b.log" | grep -vE '^\| (figure|---)' || say "no table rows from the $b bench"
done
exit "$status"
