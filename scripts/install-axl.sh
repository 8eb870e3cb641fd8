#!/usr/bin/env bash
# Install the Gensyn AXL node binary into axl-bin/node (git-ignored).
#
# Where the binary comes from, first match wins:
#   1. AXL_BIN=/path/to/node      an existing binary: copied as is (no Go needed)
#   2. AXL_SRC=/path/to/axl       a local AXL checkout: `go build ./cmd/node` there
#   3. `go install github.com/gensyn-ai/axl/cmd/node@$AXL_VERSION` (pinned, module cache reused)
#   4. `git clone $AXL_REPO` at $AXL_REF, then `go build -o node ./cmd/node`
# (3) is skipped when AXL_REF is set without AXL_VERSION: the caller asked for a ref.
# Steps 2-4 need Go >= 1.25 (AXL's go.mod asks for it).
#
# Idempotent: axl-bin/node.stamp records what was requested and the hash of what was
# installed; a re-run with the same request and an untouched binary does nothing.
#
# Other settings: AXL_DEST (default: <repo>/axl-bin), GO (default: go on PATH).
# Exit status: 0 installed or already up to date; 1 nothing worked (the message says why).
set -euo pipefail

# Pinned AXL: the commit edgent was written and tested against, and its Go pseudo-version.
readonly AXL_PIN_COMMIT="9cba555ff0b8e14ebf1244ae02b274fbc4ec044e"
readonly AXL_PIN_VERSION="v0.0.0-20260423193203-9cba555ff0b8"
readonly AXL_MODULE="github.com/gensyn-ai/axl"
readonly GO_MIN_MAJOR=1 GO_MIN_MINOR=25

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest_dir="${AXL_DEST:-$script_dir/../axl-bin}"
go_cmd="${GO:-go}"
ref_was_set="${AXL_REF:+yes}"
version_was_set="${AXL_VERSION:+yes}"
axl_version="${AXL_VERSION:-$AXL_PIN_VERSION}"
axl_repo="${AXL_REPO:-https://$AXL_MODULE}"
axl_ref="${AXL_REF:-$AXL_PIN_COMMIT}"

say() { printf 'axl: %s\n' "$*"; }
die() { printf 'axl: error: %s\n' "$*" >&2; exit 1; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# go_ok: true when $go_cmd exists and is at least 1.25; sets go_problem otherwise.
go_problem=""
go_ok() {
    local v major minor
    if ! command -v "$go_cmd" >/dev/null 2>&1; then
        go_problem="no Go toolchain found ('$go_cmd' is not on PATH); install Go >= $GO_MIN_MAJOR.$GO_MIN_MINOR from https://go.dev/dl/"
        return 1
    fi
    v="$("$go_cmd" env GOVERSION 2>/dev/null || true)"   # e.g. go1.25.5
    v="${v#go}"
    major="${v%%.*}"
    minor="${v#*.}"; minor="${minor%%[!0-9]*}"
    if [[ ! "$major" =~ ^[0-9]+$ || ! "$minor" =~ ^[0-9]+$ ]]; then
        go_problem="cannot read the Go version from '$go_cmd env GOVERSION' (got '$v')"
        return 1
    fi
    if (( major < GO_MIN_MAJOR || (major == GO_MIN_MAJOR && minor < GO_MIN_MINOR) )); then
        go_problem="Go $v is too old: AXL needs Go >= $GO_MIN_MAJOR.$GO_MIN_MINOR (https://go.dev/dl/)"
        return 1
    fi
    return 0
}

# What was asked for, as one line; compared with the stamp to decide whether to skip.
if [[ -n "${AXL_BIN:-}" ]]; then
    [[ -f "$AXL_BIN" && -x "$AXL_BIN" ]] || die "AXL_BIN=$AXL_BIN is not an executable file"
    AXL_BIN="$(realpath "$AXL_BIN")"
    request="bin $AXL_BIN sha256=$(sha256_of "$AXL_BIN")"
elif [[ -n "${AXL_SRC:-}" ]]; then
    [[ -f "$AXL_SRC/cmd/node/main.go" ]] || die "AXL_SRC=$AXL_SRC does not look like an AXL checkout (no cmd/node/main.go)"
    AXL_SRC="$(realpath "$AXL_SRC")"
    src_rev=""
    if git -C "$AXL_SRC" rev-parse --git-dir >/dev/null 2>&1 \
        && [[ -z "$(git -C "$AXL_SRC" status --porcelain 2>/dev/null)" ]]; then
        src_rev="$(git -C "$AXL_SRC" rev-parse HEAD)"
    fi
    # A dirty or non-git tree has no version to compare: it is rebuilt every time.
    request="src $AXL_SRC ${src_rev:-unversioned-$(date +%s%N)}"
elif [[ -n "$ref_was_set" && -z "$version_was_set" ]]; then
    request="git $axl_repo@$axl_ref"
else
    request="release module=$AXL_MODULE/cmd/node@$axl_version repo=$axl_repo@$axl_ref"
fi

mkdir -p "$dest_dir"
dest_dir="$(cd "$dest_dir" && pwd)"
node="$dest_dir/node"
stamp="$dest_dir/node.stamp"

if [[ -x "$node" && -f "$stamp" ]] \
    && [[ "$(sed -n 1p "$stamp")" == "$request" ]] \
    && [[ "$(sed -n 2p "$stamp")" == "sha256=$(sha256_of "$node")" ]]; then
    say "up to date: $node ($request)"
    exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/edgent-axl.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# install_built <file>: move a freshly obtained binary into place and write the stamp.
install_built() {
    install -m 0755 "$1" "$node.new"
    mv -f "$node.new" "$node"
    printf '%s\nsha256=%s\n' "$request" "$(sha256_of "$node")" >"$stamp.new"
    mv -f "$stamp.new" "$stamp"
    say "installed $node ($request)"
}

if [[ -n "${AXL_BIN:-}" ]]; then
    say "using the existing binary AXL_BIN=$AXL_BIN"
    install_built "$AXL_BIN"
    exit 0
fi

go_ok || die "$go_problem"

if [[ -n "${AXL_SRC:-}" ]]; then
    say "building from the local checkout AXL_SRC=$AXL_SRC"
    (cd "$AXL_SRC" && "$go_cmd" build -o "$work/node" ./cmd/node) \
        || die "go build in AXL_SRC=$AXL_SRC failed (see the Go output above)"
    install_built "$work/node"
    exit 0
fi

tried=()
if [[ -z "$ref_was_set" || -n "$version_was_set" ]]; then
    say "go install $AXL_MODULE/cmd/node@$axl_version"
    if GOBIN="$work/gobin" "$go_cmd" install "$AXL_MODULE/cmd/node@$axl_version"; then
        install_built "$work/gobin/node"
        exit 0
    fi
    tried+=("go install $AXL_MODULE/cmd/node@$axl_version (the Go module proxy may refuse it; see above)")
fi

# fetch_ref <dir>: check out $axl_ref of $axl_repo in <dir> (a commit, branch or tag).
fetch_ref() {
    git init -q "$1" || return 1
    if git -C "$1" fetch -q --depth 1 "$axl_repo" "$axl_ref" 2>/dev/null; then
        git -C "$1" checkout -q --detach FETCH_HEAD
    else
        # Servers that refuse to serve a bare commit id: fetch everything, then check out.
        git -C "$1" fetch -q "$axl_repo" '+refs/heads/*:refs/remotes/origin/*' '+refs/tags/*:refs/tags/*' \
            && git -C "$1" checkout -q --detach "$axl_ref"
    fi
}

say "building from source: git clone $axl_repo at $axl_ref"
if ! command -v git >/dev/null 2>&1; then
    tried+=("git clone $axl_repo (git is not installed)")
elif fetch_ref "$work/src" && (cd "$work/src" && "$go_cmd" build -o "$work/node" ./cmd/node); then
    install_built "$work/node"
    exit 0
else
    tried+=("git clone $axl_repo at $axl_ref + go build ./cmd/node (see above)")
fi

{
    printf 'axl: error: could not install the AXL node binary. Tried:\n'
    printf '  - %s\n' "${tried[@]}"
    printf 'Fix one of them, or point AXL_BIN at a built node binary, or AXL_SRC at an AXL checkout.\n'
} >&2
exit 1
