#!/usr/bin/env bash
# edgent installer for a Jetson (aarch64) or an x86_64 Linux box.
#
#   curl -fsSL https://raw.githubusercontent.com/edgent/edgent/main/install.sh | bash
#   curl -fsSL .../install.sh | bash -s -- --systemd      # also install and start the service
#
# It installs only what is missing (build tools and git via apt, Rust via rustup, Go >= 1.25
# from go.dev), clones edgent into $EDGENT_PREFIX, builds it, installs the AXL node into
# axl-bin/node, runs `edgent init` (a wallet key file and .env) if there is no .env, and
# checks for Ollama and the model. Re-running it changes nothing that is already right, and says so.
#
# Settings (environment):
#   EDGENT_PREFIX         where edgent lives (default: ~/edgent)
#   EDGENT_REPO           git URL to clone (default: the upstream repository)
#   EDGENT_REF            branch, tag or commit (default: main)
#   EDGENT_CARGO_PROFILE  cargo profile to build (default: release); CARGO_TARGET_DIR is honoured
#   EDGENT_MODEL          the Ollama model to check for (default: tinyllama)
#   EDGENT_ARCH           override the detected architecture (uname -m)
#   EDGENT_TEGRA_RELEASE  a Jetson's L4T release file (default: /etc/nv_tegra_release)
#   EDGENT_IMPORT_KEY     a hex private key for `edgent init` to import (first install only)
#   GO_VERSION            Go release to install when no Go >= 1.25 is found (default below)
#   AXL_BIN | AXL_SRC | AXL_VERSION | AXL_REPO | AXL_REF   see scripts/install-axl.sh
#   EDGENT_SYSTEM_ROOT    with --systemd: put the service's files under this dir, not / (tests)
set -euo pipefail

readonly DEFAULT_EDGENT_REPO="https://github.com/edgent/edgent"
readonly DEFAULT_GO_VERSION="1.25.5"
readonly RUST_MIN="1.89"   # Cargo.toml rust-version (AVX-512 intrinsics)
readonly GO_MIN="1.25"     # AXL's go.mod

prefix="${EDGENT_PREFIX:-$HOME/edgent}"
repo="${EDGENT_REPO:-$DEFAULT_EDGENT_REPO}"
ref="${EDGENT_REF:-main}"
profile="${EDGENT_CARGO_PROFILE:-release}"
model="${EDGENT_MODEL:-tinyllama}"
go_version="${GO_VERSION:-$DEFAULT_GO_VERSION}"
with_systemd=no

say() { printf 'edgent: %s\n' "$*"; }
warn() { printf 'edgent: warning: %s\n' "$*" >&2; }
die() { printf 'edgent: error: %s\n' "$*" >&2; exit 1; }

usage() {
    cat <<'USAGE'
usage: install.sh [--systemd]
  Installs edgent into $EDGENT_PREFIX (default ~/edgent): missing build tools, Rust and Go,
  the edgent binary, the AXL node (axl-bin/node), and a wallet key and .env (edgent init).
  With --systemd it also installs and starts edgent.service (user 'edgent', data in
  /var/lib/edgent).
  Environment: EDGENT_PREFIX EDGENT_REPO EDGENT_REF EDGENT_CARGO_PROFILE CARGO_TARGET_DIR
  EDGENT_MODEL EDGENT_ARCH EDGENT_TEGRA_RELEASE EDGENT_IMPORT_KEY GO_VERSION AXL_BIN AXL_SRC
  AXL_VERSION AXL_REPO AXL_REF
USAGE
}

# The whole installer is one function, called on the last line: with `curl | bash`, bash
# has then read all of it before any step runs (nothing can eat the rest of the script).
main() {
did_change=no
while (($#)); do
    case "$1" in
        --systemd) with_systemd=yes ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option '$1' (use --systemd, or --help)" ;;
    esac
    shift
done

# version_ge A B: true when dotted version A >= B.
version_ge() { [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]; }

# as_root CMD...: run a command as root (directly, or through sudo).
as_root() {
    if ((EUID == 0)); then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "this step needs root and sudo is not installed: run as root: $*"
    fi
}

# --- platform -------------------------------------------------------------------------------

arch="${EDGENT_ARCH:-$(uname -m)}"
case "$arch" in
    x86_64 | amd64) arch=x86_64 go_arch=amd64 ;;
    aarch64 | arm64) arch=aarch64 go_arch=arm64 ;;
    *) die "unsupported architecture '$arch': edgent supports x86_64 and aarch64 (ARM64, e.g. a Jetson) only" ;;
esac
[[ "$(uname -s)" == Linux ]] || die "unsupported OS '$(uname -s)': this installer is for Linux"

distro_id=unknown distro_like="" distro_version=""
if [[ -r /etc/os-release ]]; then
    # shellcheck disable=SC1091
    distro_id="$(. /etc/os-release && printf '%s' "${ID:-unknown}")"
    # shellcheck disable=SC1091
    distro_like="$(. /etc/os-release && printf '%s' "${ID_LIKE:-}")"
    # shellcheck disable=SC1091
    distro_version="$(. /etc/os-release && printf '%s' "${VERSION_ID:-}")"
fi
# A Jetson says so in its L4T release file ("# R36 (release), REVISION: 4.0, ..."); JetPack
# 6.x is L4T R36. EDGENT_TEGRA_RELEASE points elsewhere (the install test fakes a Jetson).
tegra_release="${EDGENT_TEGRA_RELEASE:-/etc/nv_tegra_release}"
board=""
if [[ -r "$tegra_release" ]]; then
    l4t="$(sed -n 's/^# R\([0-9]*\) (release), REVISION: \([0-9.]*\).*/R\1.\2/p' "$tegra_release" | head -n1)"
    board=" (NVIDIA Jetson${l4t:+, L4T $l4t})"
fi
say "platform: $distro_id $distro_version, $arch$board"

is_apt_distro() { [[ " $distro_id $distro_like " =~ [[:space:]](debian|ubuntu)[[:space:]] ]] && command -v apt-get >/dev/null 2>&1; }

# --- system packages --------------------------------------------------------------------------

missing_pkgs=()
command -v git >/dev/null 2>&1 || missing_pkgs+=(git)
command -v curl >/dev/null 2>&1 || missing_pkgs+=(curl)
[[ -r /etc/ssl/certs/ca-certificates.crt ]] || missing_pkgs+=(ca-certificates)
{ command -v cc >/dev/null 2>&1 && command -v make >/dev/null 2>&1; } || missing_pkgs+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || missing_pkgs+=(pkg-config)
# TLS (https RPC, KeeperHub) links the system's OpenSSL.
{ command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openssl; } || missing_pkgs+=(libssl-dev)
if ((${#missing_pkgs[@]})); then
    if is_apt_distro; then
        say "installing with apt: ${missing_pkgs[*]}"
        did_change=yes
        as_root apt-get update -q </dev/null
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing_pkgs[@]}" </dev/null
    else
        die "missing ${missing_pkgs[*]} and this is not an apt-based distro ($distro_id): install them with your package manager, then re-run"
    fi
else
    say "system packages: present (git, curl, ca-certificates, a C toolchain, pkg-config, libssl-dev)"
fi

# --- Rust -------------------------------------------------------------------------------------

[[ -d "$HOME/.cargo/bin" ]] && PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null 2>&1; then
    say "installing Rust with rustup (no cargo found)"
    did_change=yes
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    PATH="$HOME/.cargo/bin:$PATH"
fi
rust_version="$(rustc --version | cut -d' ' -f2)"
if ! version_ge "$rust_version" "$RUST_MIN"; then
    command -v rustup >/dev/null 2>&1 \
        || die "Rust $rust_version is older than $RUST_MIN and rustup is not installed: upgrade Rust, then re-run"
    say "Rust $rust_version is older than $RUST_MIN: rustup update stable"
    did_change=yes
    rustup update stable
    rust_version="$(rustc --version | cut -d' ' -f2)"
fi
say "Rust $rust_version: ok"

# --- Go ---------------------------------------------------------------------------------------

go_version_of() { local v; v="$("$1" env GOVERSION 2>/dev/null)" || return 1; printf '%s' "${v#go}"; }

go_bin=""
for candidate in "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go "$HOME/.local/go/bin/go"; do
    [[ -n "$candidate" && -x "$candidate" ]] || continue
    v="$(go_version_of "$candidate" || true)"
    if [[ -n "$v" ]] && version_ge "$v" "$GO_MIN"; then
        go_bin="$candidate"
        break
    fi
done
if [[ -z "$go_bin" ]]; then
    go_root=/usr/local/go
    ((EUID == 0)) || go_root="$HOME/.local/go"
    tarball="go${go_version}.linux-${go_arch}.tar.gz"
    say "installing Go $go_version into $go_root (no Go >= $GO_MIN found)"
    did_change=yes
    tmp_go="$(mktemp -d)"
    curl -fsSL -o "$tmp_go/$tarball" "https://dl.google.com/go/$tarball"
    expected="$(curl -fsSL "https://dl.google.com/go/$tarball.sha256")"
    actual="$(sha256sum "$tmp_go/$tarball" | cut -d' ' -f1)"
    [[ "$expected" == "$actual" ]] || die "checksum mismatch for $tarball (expected $expected, got $actual)"
    rm -rf "$go_root"
    mkdir -p "$(dirname "$go_root")"
    tar -C "$tmp_go" -xzf "$tmp_go/$tarball"
    mv "$tmp_go/go" "$go_root"
    rm -rf "$tmp_go"
    go_bin="$go_root/bin/go"
    say "Go installed; add it to your PATH: export PATH=\"$go_root/bin:\$PATH\""
fi
PATH="$(dirname "$go_bin"):$PATH"
say "Go $(go_version_of "$go_bin"): ok ($go_bin)"

# --- edgent source ----------------------------------------------------------------------------

# resolve_ref: the commit id $ref names in $repo, without writing anything.
resolve_ref() {
    if [[ "$ref" =~ ^[0-9a-f]{40}$ ]]; then
        printf '%s' "$ref"
        return
    fi
    local line
    line="$(git ls-remote "$repo" "$ref" "refs/heads/$ref" "refs/tags/$ref^{}" "refs/tags/$ref" 2>/dev/null | head -n1)"
    printf '%s' "${line%%[[:space:]]*}"
}

if [[ -d "$prefix/.git" ]]; then
    want="$(resolve_ref)"
    have="$(git -C "$prefix" rev-parse HEAD)"
    if [[ -n "$want" && "$want" == "$have" ]]; then
        say "source: up to date at $ref ($have) in $prefix"
    else
        [[ -z "$(git -C "$prefix" status --porcelain --untracked-files=no)" ]] \
            || die "$prefix has local changes: commit or stash them, then re-run"
        say "source: updating $prefix to $ref"
        did_change=yes
        git -C "$prefix" fetch -q "$repo" "$ref"
        git -C "$prefix" checkout -q --detach "${want:-FETCH_HEAD}"
    fi
elif [[ -e "$prefix" && -n "$(ls -A "$prefix" 2>/dev/null)" ]]; then
    die "$prefix exists and is not an edgent checkout: move it away or set EDGENT_PREFIX"
else
    say "source: cloning $repo ($ref) into $prefix"
    did_change=yes
    git clone -q "$repo" "$prefix"
    want="$(resolve_ref)"
    git -C "$prefix" checkout -q --detach "${want:-$ref}" 2>/dev/null || {
        git -C "$prefix" fetch -q "$repo" "$ref"
        git -C "$prefix" checkout -q --detach FETCH_HEAD
    }
fi
commit="$(git -C "$prefix" rev-parse HEAD)"

# --- edgent binary ----------------------------------------------------------------------------

bin_dir="$prefix/bin"
edgent_bin="$bin_dir/edgent"
build_stamp="$bin_dir/.edgent.stamp"
build_key="commit=$commit profile=$profile"
if [[ -x "$edgent_bin" && -f "$build_stamp" ]] \
    && [[ "$(cat "$build_stamp")" == "$build_key sha256=$(sha256sum "$edgent_bin" | cut -d' ' -f1)" ]]; then
    say "binary: up to date at $ref ($edgent_bin)"
else
    locked=(--locked)
    if [[ ! -f "$prefix/Cargo.lock" ]]; then
        warn "no Cargo.lock in the checkout: building without --locked"
        locked=()
    fi
    say "building edgent (cargo profile '$profile'; a release build takes a while on a small board)"
    (cd "$prefix" && cargo build --profile "$profile" "${locked[@]}" --bin edgent)
    target_dir="${CARGO_TARGET_DIR:-$prefix/target}"
    case "$profile" in dev | test) out_dir=debug ;; bench) out_dir=release ;; *) out_dir="$profile" ;; esac
    mkdir -p "$bin_dir"
    install -m 0755 "$target_dir/$out_dir/edgent" "$edgent_bin.new"
    mv -f "$edgent_bin.new" "$edgent_bin"
    printf '%s sha256=%s\n' "$build_key" "$(sha256sum "$edgent_bin" | cut -d' ' -f1)" >"$build_stamp"
    say "binary: installed $edgent_bin"
    did_change=yes
fi
"$edgent_bin" --version >/dev/null || die "$edgent_bin --version failed"

# --- .env and wallet (edgent init) ---------------------------------------------------------

# `edgent init` makes the wallet key file (mode 0600) in $prefix/data and writes .env (0600)
# from .env.example with the defaults (role both, EDGENT_PAYMENTS=auto: unpaid until a funded
# wallet, an escrow and a settler are set). An existing .env is never touched; a key file left
# from an earlier install is kept (--keep-key). EDGENT_IMPORT_KEY imports a key instead.
env_file="$prefix/.env"
if [[ -f "$env_file" ]]; then
    say ".env: kept (exists: $env_file)"
else
    init_args=(init --env-file "$env_file" --data-dir "$prefix/data")
    [[ -n "${EDGENT_IMPORT_KEY:-}" ]] || init_args+=(--keep-key)
    init_out="$("$edgent_bin" "${init_args[@]}")" || die "edgent init failed (see above)"
    while IFS= read -r line; do say "init: $line"; done <<<"$init_out"
    say ".env: written by edgent init; edit $env_file to set your peers, ENS name and escrow"
    did_change=yes
fi

# --- AXL --------------------------------------------------------------------------------------

axl_ok=yes
axl_stamp_before="$(cat "$prefix/axl-bin/node.stamp" 2>/dev/null || true)"
if ! AXL_DEST="$prefix/axl-bin" GO="$go_bin" "$prefix/scripts/install-axl.sh"; then
    axl_ok=no
    warn "AXL is not installed (see above); edgent cannot join the mesh without it"
fi
[[ "$axl_stamp_before" == "$(cat "$prefix/axl-bin/node.stamp" 2>/dev/null || true)" ]] || did_change=yes

# --- Ollama -----------------------------------------------------------------------------------

if ! command -v ollama >/dev/null 2>&1; then
    say "Ollama: not found. Install it: curl -fsSL https://ollama.com/install.sh | sh"
    say "then pull the model: ollama pull $model"
elif ! models="$(ollama list 2>/dev/null)"; then
    say "Ollama: installed but not answering. Start it: sudo systemctl start ollama (or: ollama serve)"
    say "then check the model: ollama pull $model"
elif ! grep -Eq "^$model(:|[[:space:]])" <<<"$models"; then
    say "Ollama: model '$model' missing. Pull it: ollama pull $model"
else
    say "Ollama: ok (model $model present)"
fi

# --- Node.js (the paid demo's local chain) ---------------------------------------------------

# `edgent demo` runs its paid flow on anvil, which `npm ci` installs for this machine (the
# lock file holds the linux-amd64 and linux-arm64 packages; npm picks by cpu).
if command -v npm >/dev/null 2>&1; then
    say "npm: ok (the paid demo installs anvil for $arch with npm ci in $prefix)"
else
    say "npm: not found. The paid demo needs Node.js 20 and npm (e.g. apt-get install nodejs npm); without them it runs unpaid"
fi

# --- systemd ----------------------------------------------------------------------------------

# put_file SRC DST MODE: install SRC at DST unless identical; sets changed=yes when it wrote.
changed=no
put_file() {
    if as_root cmp -s "$1" "$2" 2>/dev/null; then
        return 0
    fi
    as_root install -D -m "$3" "$1" "$2"
    say "systemd: wrote $2"
    changed=yes
    did_change=yes
}

# secret_of ENV VAR PATH_VAR: the secret VAR names in ENV, inline or in the file at PATH_VAR.
secret_of() {
    local value path
    value="$(sed -n "s/^$2=//p" "$1" | tail -n1)"
    path="$(sed -n "s/^$3=//p" "$1" | tail -n1)"
    value="${value//[\"\']/}"
    path="${path//[\"\']/}"
    if [[ -n "$path" ]]; then
        tr -d '[:space:]' <"$path" || return 1
    else
        printf '%s' "$value"
    fi
}

# service_env_for ENV: ENV as the service reads it: without the wallet key and API token
# (inline or as paths), which the unit loads as credentials (LoadCredential=).
service_env_for() {
    printf '# Written by install.sh from %s (secrets are credentials: /etc/edgent/wallet.key, api.token).\n' "$1"
    grep -vE '^(WALLET_PRIVATE_KEY|WALLET_KEY_PATH|EDGENT_API_TOKEN|EDGENT_API_TOKEN_PATH)=' "$1" || true
}

if [[ "$with_systemd" == yes ]]; then
    [[ "$axl_ok" == yes ]] || die "not installing the service: AXL is missing (see above)"
    command -v systemctl >/dev/null 2>&1 || die "--systemd: systemctl not found (is this a systemd system?)"
    # EDGENT_SYSTEM_ROOT: install the service's files under this directory instead of / (tests).
    local sysroot="${EDGENT_SYSTEM_ROOT:-}"
    if ! id edgent >/dev/null 2>&1; then
        as_root useradd --system --home-dir /var/lib/edgent --no-create-home \
            --shell /usr/sbin/nologin --comment "edgent daemon" edgent
        say "systemd: created the system user 'edgent'"
        did_change=yes
    fi
    # The data dir /var/lib/edgent is the unit's StateDirectory=: systemd creates it, owned by
    # the user, at the first start.
    put_file "$edgent_bin" "$sysroot/usr/local/lib/edgent/edgent" 0755
    put_file "$prefix/axl-bin/node" "$sysroot/usr/local/lib/edgent/axl-bin/node" 0755
    put_file "$prefix/systemd/service-paths.env" "$sysroot/usr/local/lib/edgent/service-paths.env" 0644
    put_file "$prefix/systemd/edgent.service" "$sysroot/etc/systemd/system/edgent.service" 0644
    # The service user cannot read the key and token files under $prefix: systemd reads
    # copies in /etc/edgent (root, 0600) and hands them to the service as credentials.
    secret="$(mktemp)"
    for pair in "wallet.key WALLET_PRIVATE_KEY WALLET_KEY_PATH" "api.token EDGENT_API_TOKEN EDGENT_API_TOKEN_PATH"; do
        read -r file var path_var <<<"$pair"
        secret_of "$prefix/.env" "$var" "$path_var" >"$secret" || { rm -f "$secret"; die "cannot read $path_var named in $prefix/.env"; }
        if [[ ! -s "$secret" && "$file" == api.token ]] && as_root test -s "$sysroot/etc/edgent/$file"; then
            continue # a .env from before API tokens: keep the service's token
        fi
        if [[ ! -s "$secret" && "$file" == api.token ]]; then
            # A .env from before API tokens: the service gets a new one (the CLI, run as the
            # service's admin, finds it with EDGENT_API_TOKEN_PATH=/etc/edgent/api.token).
            od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$secret"
            say "systemd: made an API token for the service (/etc/edgent/api.token)"
        fi
        [[ -s "$secret" ]] || { rm -f "$secret"; die "$prefix/.env sets neither $var nor $path_var (run edgent init)"; }
        printf '\n' >>"$secret"
        put_file "$secret" "$sysroot/etc/edgent/$file" 0600
    done
    rm -f "$secret"
    service_env="$(mktemp)"
    service_env_for "$prefix/.env" >"$service_env"
    if as_root test -f "$sysroot/etc/edgent/edgent.env"; then
        if ! as_root cmp -s "$service_env" "$sysroot/etc/edgent/edgent.env"; then
            say "systemd: the service reads /etc/edgent/edgent.env, which differs from $prefix/.env: kept as is"
        fi
    else
        put_file "$service_env" "$sysroot/etc/edgent/edgent.env" 0600
    fi
    rm -f "$service_env"
    if [[ "$changed" == yes ]]; then
        as_root systemctl daemon-reload
        as_root systemctl enable edgent.service
        as_root systemctl restart edgent.service
        say "systemd: edgent.service (re)started; logs: journalctl -u edgent -f"
    elif ! as_root systemctl is-active --quiet edgent.service; then
        as_root systemctl enable --now edgent.service
        say "systemd: edgent.service started; logs: journalctl -u edgent -f"
        did_change=yes
    else
        say "systemd: edgent.service up to date and running"
    fi
fi

if [[ "$axl_ok" != yes ]]; then
    die "incomplete: AXL is missing (see above); fix it and re-run"
fi
at="$ref"
[[ "$ref" == "$commit" ]] || at="$ref ($commit)"
if [[ "$did_change" == yes ]]; then
    say "installed $at in $prefix"
else
    say "up to date at $at in $prefix: nothing to do"
fi
if [[ "$with_systemd" != yes ]]; then
    say "run it: cd $prefix && ./bin/edgent run     (or re-run this with --systemd)"
fi
}

main "$@"
