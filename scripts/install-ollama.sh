#!/usr/bin/env bash
# Build the real Ollama the tests run (CPU only, cgo), from the Go module proxy, and print
# the path of the binary on stdout (everything else goes to stderr).
#
#   bin="$(bash scripts/install-ollama.sh)"
#
# The build is cached OUTSIDE the clone, so a clean clone (CI) reuses it:
#   ${EDGENT_CACHE:-$HOME/.cache/edgent}/ollama-v0.17.4/ollama       the binary
#   ${EDGENT_CACHE:-$HOME/.cache/edgent}/ollama-v0.17.4/ollama.stamp what was built, its hash
# A re-run with the same request and an untouched binary does nothing.
#
# How: `go mod download github.com/ollama/ollama@v0.17.4`, a writable copy of the module,
# then the headers that llama.cpp vendors but the module zip lacks are put under
# llama/llama.cpp/vendor/: nlohmann/json and stb from Debian (nlohmann-json3-dev,
# libstb-dev, installed by scripts/apt-deps.sh), miniaudio.h from the PyPI source package
# miniaudio==1.71 (pip download --no-binary). Then
#   CGO_ENABLED=1 CGO_CFLAGS="-O3 -march=x86-64-v3" CGO_CXXFLAGS="-O3 -march=x86-64-v3" \
#     go build -ldflags "-X github.com/ollama/ollama/version.Version=0.17.4" .
# which takes a few minutes on 2 cores. Needs Go >= 1.24, a C/C++ compiler, python3 + pip.
#
# Settings: EDGENT_CACHE (cache root), GO (default: go on PATH), PYTHON (default: python3).
# Exit status: 0 built or already up to date; 1 failed (the message says why).
set -euo pipefail

readonly OLLAMA_MODULE="github.com/ollama/ollama"
readonly OLLAMA_VERSION="v0.17.4"
readonly MINIAUDIO_PIN="miniaudio==1.71"

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${EDGENT_CACHE:-${HOME:-/root}/.cache/edgent}"
dest_dir="$cache_root/ollama-$OLLAMA_VERSION"
bin="$dest_dir/ollama"
stamp="$dest_dir/ollama.stamp"
go_cmd="${GO:-go}"
python_cmd="${PYTHON:-python3}"

say() { printf 'ollama: %s\n' "$*" >&2; }
die() { printf 'ollama: error: %s\n' "$*" >&2; exit 1; }
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# ggml's CPU kernels are compiled for AVX2 and FMA (-march=x86-64-v3, Ollama's "haswell"
# CPU variant) on an x86_64 machine that has them, as Ollama's release builds pick their
# CPU variant at run time; a plain `go build` compiles the generic kernels, several times
# slower. (Not -march=native: on a CPU with AMX it turns on kernels whose sources the Go
# build does not compile, and the link fails.) The stamp names the flags, so a cache moved
# to a CPU without them is rebuilt rather than run into an illegal instruction.
native_flags="-O3"
cpu_flags=" $(grep -m1 -E '^flags[[:space:]]*:' /proc/cpuinfo 2>/dev/null || true) "
if [[ "$(uname -m)" == x86_64 && "$cpu_flags" == *" avx2 "* && "$cpu_flags" == *" fma "* ]]; then
    native_flags="-O3 -march=x86-64-v3"
fi
readonly native_flags
request="module=$OLLAMA_MODULE@$OLLAMA_VERSION cpu cgo cflags=$native_flags headers=debian:nlohmann-json3-dev,libstb-dev pypi:$MINIAUDIO_PIN"

if [[ -x "$bin" && -f "$stamp" ]] \
    && [[ "$(sed -n 1p "$stamp")" == "$request" ]] \
    && [[ "$(sed -n 2p "$stamp")" == "sha256=$(sha256_of "$bin")" ]]; then
    say "up to date: $bin"
    printf '%s\n' "$bin"
    exit 0
fi

command -v "$go_cmd" >/dev/null 2>&1 || die "no Go toolchain ('$go_cmd' is not on PATH); install Go >= 1.24"
command -v "$python_cmd" >/dev/null 2>&1 || die "no '$python_cmd' (needed to fetch miniaudio.h from PyPI)"
command -v c++ >/dev/null 2>&1 || die "no C++ compiler (c++): apt-get install g++"

bash "$script_dir/apt-deps.sh" nlohmann-json3-dev libstb-dev >&2 \
    || die "the Debian packages nlohmann-json3-dev and libstb-dev are needed (see above)"
[[ -f /usr/include/nlohmann/json.hpp && -f /usr/include/stb/stb_image.h ]] \
    || die "nlohmann-json3-dev or libstb-dev is installed but its headers are not in /usr/include"

mkdir -p "$dest_dir"
work="$(mktemp -d "${TMPDIR:-/tmp}/edgent-ollama.XXXXXX")"
trap 'chmod -R u+w "$work" 2>/dev/null || true; rm -rf "$work"' EXIT

say "go mod download $OLLAMA_MODULE@$OLLAMA_VERSION"
module_dir="$(cd "$work" && GOFLAGS=-mod=mod "$go_cmd" mod download -json "$OLLAMA_MODULE@$OLLAMA_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
[[ -n "$module_dir" && -d "$module_dir" ]] || die "go mod download gave no module directory"

src="$work/ollama"
cp -r "$module_dir" "$src"
chmod -R u+w "$src"
vendor="$src/llama/llama.cpp/vendor"
mkdir -p "$vendor/nlohmann" "$vendor/stb" "$vendor/miniaudio"
cp /usr/include/nlohmann/json.hpp /usr/include/nlohmann/json_fwd.hpp "$vendor/nlohmann/"
cp /usr/include/stb/stb_image.h "$vendor/stb/"

say "pip download --no-binary :all: $MINIAUDIO_PIN (for miniaudio.h)"
"$python_cmd" -m pip download -q --no-binary :all: --no-deps "$MINIAUDIO_PIN" -d "$work/pypi" >&2 \
    || die "pip download $MINIAUDIO_PIN failed (see above)"
tar -xzf "$work"/pypi/miniaudio-*.tar.gz -C "$work/pypi"
cp "$work"/pypi/miniaudio-*/miniaudio/miniaudio.h "$vendor/miniaudio/" \
    || die "the $MINIAUDIO_PIN source package has no miniaudio/miniaudio.h"

say "go build (CPU, cgo; a few minutes)"
(cd "$src" && CGO_ENABLED=1 CGO_CFLAGS="$native_flags" CGO_CXXFLAGS="$native_flags" "$go_cmd" build -trimpath \
    -ldflags "-X github.com/ollama/ollama/version.Version=${OLLAMA_VERSION#v}" -o "$work/ollama.bin" .) >&2 \
    || die "go build of $OLLAMA_MODULE@$OLLAMA_VERSION failed (see above)"

install -m 0755 "$work/ollama.bin" "$bin.new"
mv -f "$bin.new" "$bin"
printf '%s\nsha256=%s\n' "$request" "$(sha256_of "$bin")" >"$stamp.new"
mv -f "$stamp.new" "$stamp"
say "installed $bin"
printf '%s\n' "$bin"
