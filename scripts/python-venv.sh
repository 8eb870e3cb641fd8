#!/usr/bin/env bash
# Make or update the Python venv the tests use, and print the path of its python on stdout
# (everything else goes to stderr).
#
#   py="$(bash scripts/python-venv.sh)"
#
# The venv is cached OUTSIDE the clone, so a clean clone (CI) reuses it:
#   ${EDGENT_CACHE:-$HOME/.cache/edgent}/python-venv/           the venv
#   ${EDGENT_CACHE:-$HOME/.cache/edgent}/python-venv/edgent.stamp  sha256 of the requirements
# It installs tests/python/requirements.txt (pinned: the official ollama and openai clients,
# gguf and numpy for scripts/make-test-models.py, and what other tests add). A re-run with
# the same requirements file does nothing; a changed file is installed over the venv.
#
# Settings: EDGENT_CACHE (cache root), PYTHON (default: python3, needs its venv module).
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
requirements="$script_dir/../tests/python/requirements.txt"
cache_root="${EDGENT_CACHE:-${HOME:-/root}/.cache/edgent}"
venv="$cache_root/python-venv"
stamp="$venv/edgent.stamp"
python_cmd="${PYTHON:-python3}"

say() { printf 'python-venv: %s\n' "$*" >&2; }
die() { printf 'python-venv: error: %s\n' "$*" >&2; exit 1; }

[[ -f "$requirements" ]] || die "no $requirements"
want="requirements-sha256=$(sha256sum "$requirements" | cut -d' ' -f1)"

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    say "up to date: $venv"
    printf '%s\n' "$venv/bin/python"
    exit 0
fi

command -v "$python_cmd" >/dev/null 2>&1 || die "no '$python_cmd' on PATH"
if [[ ! -x "$venv/bin/python" ]]; then
    say "creating $venv"
    mkdir -p "$cache_root"
    "$python_cmd" -m venv "$venv" >&2 \
        || die "'$python_cmd -m venv' failed (Debian: apt-get install python3-venv)"
fi
say "pip install -r tests/python/requirements.txt"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements" >&2 \
    || die "pip install -r $requirements failed (see above)"
printf '%s\n' "$want" >"$stamp.new"
mv -f "$stamp.new" "$stamp"
say "ready: $venv"
printf '%s\n' "$venv/bin/python"
