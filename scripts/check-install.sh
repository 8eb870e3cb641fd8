#!/usr/bin/env bash
# Test of install.sh (run by CI). It installs edgent into a temporary prefix from a local
# clone of this repository (EDGENT_REPO=file://..., EDGENT_REF=the current commit) with the
# toolchains already present, and asserts:
#   - the install succeeds, `edgent --version` runs, `edgent init` made the wallet key file
#     (data/wallet.key, mode 600) and .env (mode 600, EDGENT_PAYMENTS=auto, WALLET_KEY_PATH at
#     that key), the AXL binary is in axl-bin/node, and the Ollama check prints the exact fix;
#   - a second run is a no-op: no file under the prefix changes (path, size, mtime, mode, hash),
#     so an existing .env and key are left alone; with the .env removed, a run writes a new .env
#     and keeps the key file (same wallet);
#   - --systemd (into a scratch system root, with stubs for systemctl/useradd/id) installs the
#     unit, binaries, the wallet key and API token as credentials (/etc/edgent, mode 600) and
#     the env file (the .env without its secrets, mode 600) and starts the
#     service; a second run changes and restarts
#     nothing; a changed unit is put back and the service restarted;
#   - an aarch64 Jetson (faked with EDGENT_ARCH and EDGENT_TEGRA_RELEASE) is named as such
#     with its L4T release, and `npm ci` on aarch64 would install the arm64 anvil, cast and
#     forge from the lock file (npm's --cpu dry run);
#   - an unsupported architecture (faked with EDGENT_ARCH) is refused with its message on
#     stderr, a non-zero exit, and nothing created;
#   - scripts/install-axl.sh builds from a git repository (AXL_REPO/AXL_REF) and from a local
#     checkout (AXL_SRC), skips a second time, and fails loudly when no source works.
#
# AXL stand-ins: the real AXL node cannot be fetched here (the Go module proxy answers 403 for
# github.com/gensyn-ai/axl), so AXL_BIN points at a tiny shell script, and the clone-and-build
# path of install-axl.sh builds a tiny Go program laid out like AXL (cmd/node). Neither is AXL.
# Ollama cannot run here either: OllamaStub is an `ollama` on PATH that lists no models.
#
# Settings: CHECK_INSTALL_REPO (repository to install from; default: this one),
# CHECK_INSTALL_REF (default: its HEAD commit), CARGO_TARGET_DIR (default: <repo>/target, so the
# dev build of `cargo test` is reused), EDGENT_CARGO_PROFILE (default: dev), KEEP=1 keeps the
# temporary directory.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
repo="$(cd "${CHECK_INSTALL_REPO:-$root}" && pwd)"
ref="${CHECK_INSTALL_REF:-$(git -C "$repo" rev-parse HEAD)}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
export EDGENT_CARGO_PROFILE="${EDGENT_CARGO_PROFILE:-dev}"

work="$(mktemp -d "${TMPDIR:-/tmp}/check-install.XXXXXX")"

# Sharing the target dir reuses the compiled dependencies. The prefix's edgent crate is the
# same cargo unit as this checkout's (cargo keys it by name and relative paths), so when this
# checkout has changes the test does not install, the prefix's build would leave that unit
# stale for the checkout: then drop it at exit (`cargo clean -p edgent`), so the next build
# here recompiles it. On a clean CI checkout at the tested commit there is nothing to drop.
shares_unit=no
if [[ "$repo" == "$root" ]] \
    && { [[ "$(git -C "$root" rev-parse HEAD)" != "$ref" ]] || [[ -n "$(git -C "$root" status --porcelain)" ]]; }; then
    shares_unit=yes
fi
cleanup() {
    if [[ "$shares_unit" == yes ]]; then
        echo "check-install: this checkout differs from $ref: cargo clean -p edgent (its next build recompiles it)"
        (cd "$root" && cargo clean -q -p edgent --profile "$EDGENT_CARGO_PROFILE") || true
    fi
    if [[ "${KEEP:-}" == 1 ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

failures=0
pass() { printf 'ok   %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; failures=$((failures + 1)); }
check() { local what="$1"; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
lacks() { ! grep -q "$1" "$2"; }
lacks_re() { ! grep -qE "$1" "$2"; }
show() { printf -- '----- %s\n' "$1"; cat "$1"; printf -- '-----\n'; }

# The AXL stand-in (see above).
mkdir -p "$work/stubs"
cat >"$work/axl-standin" <<'SH'
#!/bin/sh
echo "AXL stand-in used by scripts/check-install.sh (not the AXL node)"
SH
chmod +x "$work/axl-standin"
# OllamaStub: `ollama list` answers with the header and no models.
cat >"$work/stubs/ollama" <<'SH'
#!/bin/sh
[ "$1" = list ] && { echo "NAME    ID    SIZE    MODIFIED"; exit 0; }
echo "OllamaStub: only 'list' is emulated" >&2; exit 1
SH
chmod +x "$work/stubs/ollama"

prefix="$work/prefix"
run_install() { # run_install <log> [extra env...]
    local log="$1"; shift
    env EDGENT_PREFIX="$prefix" EDGENT_REPO="file://$repo" EDGENT_REF="$ref" \
        AXL_BIN="$work/axl-standin" PATH="$work/stubs:$PATH" "$@" \
        bash "$root/install.sh" >"$log" 2>&1
}
# snapshot: every path under the prefix with its size, mtime, mode and content hash.
snapshot() {
    (cd "$prefix" && find . -printf '%p %s %T@ %m\n' | sort \
        && find . -type f -print0 | sort -z | xargs -0 sha256sum)
}

echo "install.sh from $repo at $ref into $prefix (cargo profile $EDGENT_CARGO_PROFILE, target $CARGO_TARGET_DIR)"
t0=$SECONDS
if run_install "$work/run1.log"; then
    pass "first run succeeds ($((SECONDS - t0)) s)"
else
    fail "first run succeeds"; show "$work/run1.log"; exit 1
fi
version_out="$("$prefix/bin/edgent" --version 2>&1)" || version_out=""
check "edgent --version runs: ${version_out:-<failed>}" grep -q edgent <<<"$version_out"
key_file="$prefix/data/wallet.key"
check "edgent init reported the wallet it created" grep -Eq "^edgent: init: wallet created: 0x[0-9a-f]{40}$" "$work/run1.log"
check "the wallet key file exists with mode 600" test "$(stat -c %a "$key_file" 2>&1)" == 600
check "the key file holds a 32-byte hex key" grep -Eqx "0x[0-9a-f]{64}" "$key_file"
check ".env exists with mode 600" test "$(stat -c %a "$prefix/.env" 2>&1)" == 600
check ".env points WALLET_KEY_PATH at the key file" grep -qx "WALLET_KEY_PATH=$key_file" "$prefix/.env"
check ".env has EDGENT_PAYMENTS=auto" grep -qx "EDGENT_PAYMENTS=auto" "$prefix/.env"
check ".env has no inline key" grep -qx "WALLET_PRIVATE_KEY=" "$prefix/.env"
check ".env keeps .env.example's comments" grep -qF "$(grep -m1 '^#' "$prefix/.env.example")" "$prefix/.env"
check "axl-bin/node is the AXL_BIN binary" cmp -s "$prefix/axl-bin/node" "$work/axl-standin"
check "the Ollama check prints the exact fix for the missing model" \
    grep -q "ollama pull tinyllama" "$work/run1.log"

snapshot >"$work/before"
t0=$SECONDS
if run_install "$work/run2.log"; then pass "second run succeeds ($((SECONDS - t0)) s)"; else fail "second run succeeds"; show "$work/run2.log"; fi
snapshot >"$work/after"
if diff -u "$work/before" "$work/after" >"$work/diff"; then
    pass "second run changed no file under the prefix ($(wc -l <"$work/before") entries compared)"
else
    fail "second run changed files under the prefix:"; cat "$work/diff"
fi
check "first run says what it installed" grep -q "^edgent: installed $ref in $prefix" "$work/run1.log"
check "second run says it is up to date" grep -q "^edgent: up to date at $ref in $prefix: nothing to do" "$work/run2.log"
check "second run did not rebuild" lacks "building edgent" "$work/run2.log"

# The .env removed (the key file left): a run writes a new .env with the same wallet.
key_before="$(sha256sum "$key_file" 2>&1)"
rm -f "$prefix/.env"
if run_install "$work/run3.log"; then pass "a run without .env succeeds"; else fail "a run without .env succeeds"; show "$work/run3.log"; fi
check "it wrote a new .env pointing at the same key file" grep -qx "WALLET_KEY_PATH=$key_file" "$prefix/.env"
check "it kept the key file as it was" test "$key_before" == "$(sha256sum "$key_file" 2>&1)"
check "it says the wallet was kept" \
    grep -qx "edgent: init: wallet kept: $(grep -o '0x[0-9a-f]\{40\}' "$work/run1.log" | head -n1)" "$work/run3.log"

# --systemd, against a scratch system root: systemd cannot run here (no systemd as PID 1) and
# the test must not add users to this machine, so SystemctlStub, UseraddStub and IdStub stand
# in for systemctl, useradd and id, recording what they were asked to do.
sysroot="$work/sysroot" state="$work/sysstate"
mkdir -p "$work/sysstubs" "$state"
cat >"$work/sysstubs/systemctl" <<'SH'
#!/bin/sh
# SystemctlStub: records calls; a started unit counts as active.
echo "$*" >>"$STUB_STATE/systemctl.calls"
case "$*" in
    *is-active*) [ -e "$STUB_STATE/active" ] ;;
    *restart* | *start*) touch "$STUB_STATE/active" ;;
esac
SH
cat >"$work/sysstubs/useradd" <<'SH'
#!/bin/sh
# UseraddStub: records the user instead of creating it.
for last; do :; done
echo "$last" >>"$STUB_STATE/users"
SH
cat >"$work/sysstubs/id" <<'SH'
#!/bin/sh
# IdStub: users the UseraddStub "created" exist; anything else goes to the real id.
grep -qx "$1" "$STUB_STATE/users" 2>/dev/null && exit 0
exec /usr/bin/id "$@"
SH
chmod +x "$work/sysstubs/"*
run_systemd() { # run_systemd <log>
    env EDGENT_PREFIX="$prefix" EDGENT_REPO="file://$repo" EDGENT_REF="$ref" \
        AXL_BIN="$work/axl-standin" PATH="$work/sysstubs:$work/stubs:$PATH" STUB_STATE="$state" \
        EDGENT_SYSTEM_ROOT="$sysroot" bash "$root/install.sh" --systemd >"$1" 2>&1
}
sys_snapshot() { (cd "$sysroot" && find . -printf '%p %s %T@ %m\n' | sort && find . -type f -print0 | sort -z | xargs -0 sha256sum); }
if run_systemd "$work/sys1.log"; then pass "--systemd run succeeds"; else fail "--systemd run succeeds"; show "$work/sys1.log"; fi
check "--systemd created the user edgent" grep -qx edgent "$state/users"
check "--systemd installed the unit" cmp -s "$sysroot/etc/systemd/system/edgent.service" "$prefix/systemd/edgent.service"
check "--systemd installed the binary the unit runs" cmp -s "$sysroot/usr/local/lib/edgent/edgent" "$prefix/bin/edgent"
check "--systemd installed the AXL node" cmp -s "$sysroot/usr/local/lib/edgent/axl-bin/node" "$prefix/axl-bin/node"
check "--systemd installed service-paths.env" cmp -s "$sysroot/usr/local/lib/edgent/service-paths.env" "$prefix/systemd/service-paths.env"
service_env="$sysroot/etc/edgent/edgent.env"
check "--systemd installed /etc/edgent/edgent.env, mode 600" test "$(stat -c %a "$service_env" 2>&1)" == 600
check "--systemd installed the wallet key as a credential (root, 600)" \
    test "$(stat -c %a "$sysroot/etc/edgent/wallet.key" 2>&1) $(cat "$sysroot/etc/edgent/wallet.key")" == "600 $(cat "$key_file")"
token_file="$(sed -n 's/^EDGENT_API_TOKEN_PATH=//p' "$prefix/.env")"
check "--systemd installed the API token as a credential (root, 600)" \
    test "$(stat -c %a "$sysroot/etc/edgent/api.token" 2>&1) $(cat "$sysroot/etc/edgent/api.token")" == "600 $(cat "$token_file")"
check "--systemd env has no secret and no secret path" \
    lacks_re "^(WALLET_PRIVATE_KEY|WALLET_KEY_PATH|EDGENT_API_TOKEN|EDGENT_API_TOKEN_PATH)=" "$service_env"
check "--systemd env is the .env otherwise" \
    diff -q <(grep -vE '^(WALLET_PRIVATE_KEY|WALLET_KEY_PATH|EDGENT_API_TOKEN|EDGENT_API_TOKEN_PATH)=' "$prefix/.env") <(sed 1d "$service_env")
check "--systemd reloaded, enabled and restarted the service" \
    test "$(cat "$state/systemctl.calls" 2>&1)" == "$(printf 'daemon-reload\nenable edgent.service\nrestart edgent.service')"
: >"$state/systemctl.calls"
sys_snapshot >"$work/sys-before"
snapshot >"$work/before"
if run_systemd "$work/sys2.log"; then pass "--systemd second run succeeds"; else fail "--systemd second run succeeds"; show "$work/sys2.log"; fi
sys_snapshot >"$work/sys-after"
snapshot >"$work/after"
check "--systemd second run changed no installed file" diff -q "$work/sys-before" "$work/sys-after"
check "--systemd second run changed no file under the prefix" diff -q "$work/before" "$work/after"
check "--systemd second run only asked whether the service runs" \
    test "$(cat "$state/systemctl.calls" 2>&1)" == "is-active --quiet edgent.service"
check "--systemd second run says so" grep -q "edgent.service up to date and running" "$work/sys2.log"
check "--systemd second run: nothing to do" grep -q "nothing to do" "$work/sys2.log"
echo "# drift" >>"$sysroot/etc/systemd/system/edgent.service"
: >"$state/systemctl.calls"
run_systemd "$work/sys3.log" || { fail "--systemd run after drift"; show "$work/sys3.log"; }
check "--systemd repairs a changed unit" cmp -s "$sysroot/etc/systemd/system/edgent.service" "$prefix/systemd/edgent.service"
check "--systemd restarts after repairing" grep -qx "restart edgent.service" "$state/systemctl.calls"

# A Jetson: aarch64 (faked with EDGENT_ARCH) and its L4T release file (EDGENT_TEGRA_RELEASE),
# over the installed prefix: the platform line names both, and nothing changes.
printf '# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64\n' >"$work/nv_tegra_release"
if run_install "$work/jetson.log" EDGENT_ARCH=aarch64 EDGENT_TEGRA_RELEASE="$work/nv_tegra_release"; then
    pass "an aarch64 Jetson run succeeds"
else
    fail "an aarch64 Jetson run succeeds"; show "$work/jetson.log"
fi
check "it names the platform as an aarch64 Jetson with its L4T release" \
    grep -q "^edgent: platform: .*, aarch64 (NVIDIA Jetson, L4T R36.4.0)$" "$work/jetson.log"
check "it says npm installs anvil for aarch64" grep -q "installs anvil for aarch64" "$work/jetson.log"
# npm on an aarch64 machine installs the arm64 Foundry packages from the lock file, and no
# amd64 one (npm's --cpu/--os install as that machine would; a dry run downloads nothing).
if command -v npm >/dev/null 2>&1; then
    (cd "$root" && npm ci --dry-run --ignore-scripts --no-audit --no-fund --cpu=arm64 --os=linux) >"$work/npm-arm64.log" 2>&1 || true
    for tool in anvil cast forge; do
        check "npm ci on aarch64 installs $tool-linux-arm64" grep -q "add @foundry-rs/$tool-linux-arm64 " "$work/npm-arm64.log"
    done
    check "npm ci on aarch64 installs no amd64 Foundry package" lacks "^add @foundry-rs/.*-linux-amd64" "$work/npm-arm64.log"
else
    fail "npm is needed to check the lock file's arm64 packages"
fi

# Unsupported architecture: refused before anything is done.
prefix="$work/prefix-mips"
set +e
env EDGENT_ARCH=mips64 EDGENT_PREFIX="$prefix" EDGENT_REPO="file://$repo" \
    bash "$root/install.sh" >"$work/arch.out" 2>"$work/arch.err"
rc=$?
set -e
check "unsupported arch exits non-zero (rc=$rc)" test "$rc" -ne 0
check "unsupported arch message on stderr" grep -q "unsupported architecture 'mips64'" "$work/arch.err"
check "unsupported arch created nothing" test ! -e "$prefix"

# install-axl.sh: the clone-and-build path, against a local git repository shaped like AXL.
fake="$work/fake-axl"
mkdir -p "$fake/cmd/node"
printf 'module example.invalid/axl-standin\n\ngo 1.25\n' >"$fake/go.mod"
cat >"$fake/cmd/node/main.go" <<'GO'
// A stand-in laid out like AXL (cmd/node) to test install-axl.sh's git path; not AXL.
package main

import "fmt"

func main() { fmt.Println("axl-standin built from git") }
GO
git -C "$fake" init -q
git -C "$fake" -c user.name=t -c user.email=t@t add -A
git -C "$fake" -c user.name=t -c user.email=t@t commit -qm standin
fake_ref="$(git -C "$fake" rev-parse HEAD)"
dest="$work/axl-from-git"
axl_git() { env -u AXL_BIN -u AXL_SRC -u AXL_VERSION AXL_DEST="$dest" AXL_REPO="file://$fake" \
    AXL_REF="$fake_ref" "$root/scripts/install-axl.sh" >"$1" 2>&1; }
if axl_git "$work/axl1.log"; then pass "install-axl.sh builds from AXL_REPO at AXL_REF"; else fail "install-axl.sh builds from AXL_REPO at AXL_REF"; show "$work/axl1.log"; fi
check "the built node runs" grep -q "axl-standin built from git" <<<"$("$dest/node" 2>&1 || true)"
stamp_before="$(stat -c '%Y %s' "$dest/node" "$dest/node.stamp" 2>&1)"
axl_git "$work/axl2.log" || true
check "install-axl.sh second run is up to date" grep -q "up to date" "$work/axl2.log"
check "install-axl.sh second run left node and stamp alone" \
    test "$stamp_before" == "$(stat -c '%Y %s' "$dest/node" "$dest/node.stamp" 2>&1)"

# install-axl.sh: the local-checkout path (AXL_SRC), same stand-in source.
src_dest="$work/axl-from-src"
axl_src() { env -u AXL_BIN AXL_DEST="$src_dest" AXL_SRC="$fake" "$root/scripts/install-axl.sh" >"$1" 2>&1; }
if axl_src "$work/src1.log"; then pass "install-axl.sh builds from AXL_SRC"; else fail "install-axl.sh builds from AXL_SRC"; show "$work/src1.log"; fi
axl_src "$work/src2.log" || true
check "install-axl.sh AXL_SRC second run is up to date (clean git checkout)" grep -q "up to date" "$work/src2.log"

# install-axl.sh when nothing works: module proxy off, repository missing.
set +e
env -u AXL_BIN -u AXL_SRC GOPROXY=off AXL_DEST="$work/axl-none" AXL_REPO="file://$work/no-such-repo" \
    "$root/scripts/install-axl.sh" >"$work/none.out" 2>"$work/none.err"
rc=$?
set -e
check "install-axl.sh fails when no source works (rc=$rc)" test "$rc" -ne 0
check "install-axl.sh says what it tried" grep -q "could not install the AXL node binary" "$work/none.err"
check "install-axl.sh installed nothing" test ! -e "$work/axl-none/node"

if ((failures)); then
    echo "check-install: $failures check(s) failed"
    exit 1
fi
echo "check-install: all checks passed"
