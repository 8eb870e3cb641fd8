# shellcheck shell=bash
# Sourced by scripts/test.sh: every test ends what it started. Two functions:
#
#   leftovers_begin  before the tests. Marks the run: EDGENT_TEST_RUN=<id> in the
#                    environment, which every child inherits (the tests' harness passes it
#                    on to the daemons it starts with a cleared environment), and, where the
#                    machine allows it (root, a writable cgroup hierarchy), a cgroup of its own
#                    under this shell's, which every descendant joins whatever it does (a new
#                    session, a cleared environment, reparented to init).
#   leftovers_end    after them. Lists every process of the run still alive (in the cgroup
#                    or with the mark), names them, kills them (so they do not pile up on a
#                    machine that runs the tests again and again) and returns 1; returns 0
#                    when there are none.
#
# On its own, to see it catch a leftover:
#   bash -c 'source scripts/leftovers.sh; leftovers_begin; sleep 300 & disown; leftovers_end'

# The run's cgroup and the one this shell came from ("" when the machine has none for us).
leftovers_cgroup=""
leftovers_parent=""

leftovers_begin() {
    EDGENT_TEST_RUN="edgent-test-$$-$(date +%s%N)"
    export EDGENT_TEST_RUN
    leftovers_cgroup=""
    leftovers_parent=""
    local want hierarchy controllers path mount parent
    # /proc/self/cgroup: "id:controllers:path"; the cgroup v2 hierarchy first, else v1's pids.
    for want in v2 pids; do
        while IFS=: read -r hierarchy controllers path; do
            if [[ $want == v2 && $hierarchy == 0 ]]; then
                mount=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
            elif [[ $want == pids && ,$controllers, == *,pids,* ]]; then
                mount=$(awk '$3 == "cgroup" && $4 ~ /(^|,)pids(,|$)/ { print $2; exit }' /proc/mounts)
            else
                continue
            fi
            [[ -n $mount ]] || continue
            parent="$mount${path%/}"
            if mkdir "$parent/$EDGENT_TEST_RUN" 2>/dev/null; then
                if echo "$$" >"$parent/$EDGENT_TEST_RUN/cgroup.procs" 2>/dev/null; then
                    leftovers_cgroup="$parent/$EDGENT_TEST_RUN"
                    leftovers_parent="$parent"
                    return 0
                fi
                rmdir "$parent/$EDGENT_TEST_RUN" 2>/dev/null || true
            fi
        done </proc/self/cgroup
    done
    return 0
}

leftovers_end() {
    local run="${EDGENT_TEST_RUN:?leftovers_begin first}"
    # From here on no child of this shell carries the mark, nor joins the run's cgroup.
    export -n EDGENT_TEST_RUN
    if [[ -n $leftovers_cgroup ]]; then
        echo "$$" >"$leftovers_parent/cgroup.procs"
    fi
    local -A found=()
    local pid environ
    if [[ -n $leftovers_cgroup ]]; then
        while read -r pid; do
            found[$pid]=1
        done <"$leftovers_cgroup/cgroup.procs"
    fi
    for environ in /proc/[0-9]*/environ; do
        pid=${environ#/proc/}
        pid=${pid%/environ}
        [[ $pid != "$$" ]] || continue
        if grep -qzxF "EDGENT_TEST_RUN=$run" "$environ" 2>/dev/null; then
            found[$pid]=1
        fi
    done
    local alive=() state
    for pid in "${!found[@]}"; do
        # A zombie has ended; only its parent's wait is missing.
        state=$(awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$pid/stat" 2>/dev/null) || continue
        [[ -n $state && $state != Z ]] || continue
        alive+=("$pid")
    done
    local status=0
    if ((${#alive[@]} > 0)); then
        printf '\nFAILED: %d process(es) started by the tests are still running:\n' "${#alive[@]}" >&2
        ps -o pid=,ppid=,etime=,args= -p "$(IFS=,; echo "${alive[*]}")" >&2 || true
        printf 'every test must end what it started, children included; killing them now\n' >&2
        kill -KILL "${alive[@]}" 2>/dev/null || true
        status=1
    fi
    if [[ -n $leftovers_cgroup ]]; then
        # Empty once the killed processes are gone (at most a few seconds).
        local tries
        for tries in $(seq 50); do
            rmdir "$leftovers_cgroup" 2>/dev/null && break
            ((tries < 50)) && sleep 0.1
        done
        leftovers_cgroup=""
    fi
    return "$status"
}
