# shellcheck shell=bash disable=SC2034  # variables are for the scripts that source this
# Shared by scripts/e2e-up and scripts/e2e-down; sourced, never run.
#
# Both scripts must agree on where state lives and on how a recorded process
# is recognised, or down could signal a stranger that reused one of our PIDs.

STATE=${CACHEPORT_E2E_STATE:-/var/tmp/cacheport-e2e}
PREFIX=${CACHEPORT_E2E_PREFIX:-/opt/cacheport-e2e}
RUN_DIR=$STATE/run
LOG_DIR=$STATE/logs

say() { printf '%s: %s\n' "${0##*/}" "$*"; }
# Seconds since $1 (an $EPOCHREALTIME value), to one decimal.
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
die() { printf '%s: error: %s\n' "${0##*/}" "$*" >&2; exit 1; }

# Field 22 of /proc/PID/stat (start time in clock ticks since boot). It is
# read after the last ')' because the command name may contain spaces. A
# zombie counts as gone: our daemons are not children of whoever reaps them,
# and that may take seconds.
proc_starttime() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    # shellcheck disable=SC2086  # word splitting is the point
    set -- $stat
    [[ $1 != [ZX] ]] || return 1
    printf '%s\n' "${20}"
}

# A pid file holds "PID STARTTIME BOOT_ID": a PID alone could have been
# reused since, and start times restart from zero after a reboot.
BOOT_ID=$(cat /proc/sys/kernel/random/boot_id)
record_pid() {
    local name=$1 pid=$2 start
    start=$(proc_starttime "$pid") || return 1
    printf '%s %s %s\n' "$pid" "$start" "$BOOT_ID" >"$RUN_DIR/$name.pid"
}

# Prints the recorded PID if that very process is still alive.
recorded_pid() {
    local file=$RUN_DIR/$1.pid pid start boot now
    [[ -r $file ]] || return 1
    read -r pid start boot <"$file" || return 1
    [[ $pid =~ ^[0-9]+$ && $boot == "$BOOT_ID" ]] || return 1
    now=$(proc_starttime "$pid") || return 1
    [[ $now == "$start" ]] || return 1
    printf '%s\n' "$pid"
}
