#!/usr/bin/env bash
# Check systemd/edgent.service (run by CI):
#   - `systemd-analyze verify` reports nothing about the unit (it exits 0 even on an unknown
#     key, so any line it prints about the unit counts as a failure);
#   - the settings the deployment relies on are there (user, env files, restart, kill mode,
#     hardening, data dir, the wallet key and API token as LoadCredential=, none inline);
#   - the check itself catches a broken unit (a copy with a misspelt key must be flagged).
# verify needs ExecStart's binary to exist: the unit is checked as a temporary copy whose
# ExecStart points at a stand-in executable; nothing else is changed.
# Installs Debian's systemd package (for systemd-analyze) when it is missing and we are root.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
unit="$root/systemd/edgent.service"
[[ -f "$unit" ]] || { echo "check-systemd: $unit is missing" >&2; exit 1; }

if ! command -v systemd-analyze >/dev/null 2>&1; then
    if ((EUID == 0)) && command -v apt-get >/dev/null 2>&1; then
        echo "check-systemd: installing systemd (for systemd-analyze)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q systemd >/dev/null </dev/null
    else
        echo "check-systemd: systemd-analyze is missing: apt-get install systemd" >&2
        exit 1
    fi
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/check-systemd.XXXXXX")"
trap 'rm -rf "$work"' EXIT
failures=0
pass() { printf 'ok   %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; failures=$((failures + 1)); }

exec_path="$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit")"
[[ -n "$exec_path" ]] || { echo "check-systemd: no ExecStart= in $unit" >&2; exit 1; }
install -m 0755 /bin/true "$work/edgent-standin"

# verify_unit <unit file> <name>: print what systemd-analyze says about the unit (copied as <name>).
verify_unit() {
    sed "s#^ExecStart=$exec_path#ExecStart=$work/edgent-standin#" "$1" >"$work/$2"
    # Lines about other units (the host's own) are not ours to judge; keep the ones naming ours.
    (cd "$work" && SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no "./$2" 2>&1 || true) \
        | grep -F "$2" || true
}

out="$(verify_unit "$unit" edgent.service)"
if [[ -z "$out" ]]; then
    pass "systemd-analyze verify: no warning about edgent.service"
else
    fail "systemd-analyze verify warns about edgent.service:"; printf '%s\n' "$out"
fi

# The check must be able to fail: a misspelt key in a copy has to show up.
sed 's/^ProtectSystem=/ProtectSytem=/' "$unit" >"$work/broken.in"
if [[ -n "$(verify_unit "$work/broken.in" broken.service)" ]]; then
    pass "a unit with a misspelt key is flagged (the check is not vacuous)"
else
    fail "a unit with a misspelt key was not flagged"
fi

for want in 'User=edgent' 'ExecStart=/usr/local/lib/edgent/edgent run' \
    'EnvironmentFile=/etc/edgent/edgent.env' 'Restart=on-failure' 'RestartPreventExitStatus=78' \
    'KillMode=mixed' \
    'NoNewPrivileges=yes' 'ProtectSystem=strict' 'ProtectHome=yes' 'PrivateTmp=yes' \
    'ReadWritePaths=/var/lib/edgent' 'StateDirectory=edgent' 'WorkingDirectory=/var/lib/edgent' \
    'LoadCredential=wallet.key:/etc/edgent/wallet.key' 'LoadCredential=api.token:/etc/edgent/api.token' \
    'Environment=WALLET_KEY_PATH=%d/wallet.key' 'Environment=EDGENT_API_TOKEN_PATH=%d/api.token'; do
    if grep -qxF "$want" "$unit"; then pass "$want"; else fail "missing: $want"; fi
done
# No secret inline in the unit or its fixed env file: they come as credentials.
if grep -qE '^(Environment=)?(WALLET_PRIVATE_KEY|OPERATOR_PRIVATE_KEY|KEEPERHUB_API_KEY|EDGENT_API_TOKEN)=' \
    "$unit" "$root/systemd/service-paths.env"; then
    fail "a secret is set inline in the unit or service-paths.env"
else
    pass "no secret inline in the unit or service-paths.env (LoadCredential= instead)"
fi
if grep -qxF 'EDGENT_DATA_DIR=/var/lib/edgent' "$root/systemd/service-paths.env"; then
    pass "service-paths.env sets EDGENT_DATA_DIR to the data dir"
else
    fail "service-paths.env does not set EDGENT_DATA_DIR=/var/lib/edgent"
fi

# Informational: systemd's own exposure score for the hardening (lower is better).
score="$(cd "$work" && { systemd-analyze security --offline=true ./edgent.service 2>/dev/null || true; } \
    | grep -o 'Overall exposure level.*')" || score=""
echo "info ${score:-systemd-analyze security: not available}"

if ((failures)); then
    echo "check-systemd: $failures check(s) failed"
    exit 1
fi
echo "check-systemd: all checks passed"
