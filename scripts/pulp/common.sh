# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this
# Shared by scripts/pulp-up and scripts/pulp-down; sourced, not executed.
# Every path and port lives here so that up and down can never disagree about what "ours" is.

PULPCORE_VERSION=3.123.1
PULP_CONTAINER_VERSION=2.30.0

STATE=${CACHEPORT_PULP_STATE:-/var/tmp/cacheport-pulp}
# The venv outlives --purge of the state dir: reinstalling it is the slowest step of a fresh start.
PREFIX=${CACHEPORT_PULP_PREFIX:-/opt/cacheport-e2e}
VENV=$PREFIX/pulp-venv

# Uncommon ports so that a developer's own Pulp (24816/24817) or PostgreSQL (5432) is never hit.
FRONT_PORT=${CACHEPORT_PULP_PORT:-24880}
API_PORT=${CACHEPORT_PULP_API_PORT:-24881}
CONTENT_PORT=${CACHEPORT_PULP_CONTENT_PORT:-24882}
PG_PORT=${CACHEPORT_PULP_PG_PORT:-24883}

ADMIN_USER='admin'
ADMIN_PASSWORD=${CACHEPORT_PULP_ADMIN_PASSWORD:-cacheport-e2e-admin}

RUN=$STATE/run
LOGS=$STATE/log
ETC=$STATE/etc
PGDATA=$STATE/pg/data
PGSOCK=$STATE/pg/sock
NGINX_PREFIX=$STATE/nginx
NGINX_CONF=$ETC/nginx.conf
NGINX_PID=$RUN/nginx.pid

# Name of each Pulp process -> a string its /proc cmdline must contain. A PID file alone is not
# trusted: after a reboot or a crash the PID may belong to an unrelated process.
declare -A PULP_PROCS=(
    [api]=pulpcore-api
    [content]=pulpcore-content
    [worker]=pulpcore-worker
)
PULP_PROC_ORDER=(api content worker)

log() { printf '[pulp] %s\n' "$*" >&2; }
die() { printf '[pulp] ERROR: %s\n' "$*" >&2; exit 1; }

# The binaries must match the cluster's major version, so an existing cluster picks its own.
pg_bin() {
    local d
    if [[ -r $PGDATA/PG_VERSION && -x /usr/lib/postgresql/$(cat "$PGDATA/PG_VERSION")/bin/pg_ctl ]]; then
        printf '%s\n' "/usr/lib/postgresql/$(cat "$PGDATA/PG_VERSION")/bin"
        return 0
    fi
    # shellcheck disable=SC2012
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
    [[ -n $d && -x $d/pg_ctl ]] || return 1
    printf '%s\n' "$d"
}

# Prints the PID recorded in $1 if that process is alive and its cmdline contains $2.
live_pid() {
    local pidfile=$1 pattern=$2 pid
    [[ -f $pidfile ]] || return 1
    pid=$(head -n1 "$pidfile" 2>/dev/null | tr -dc 0-9)
    [[ -n $pid ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' </proc/"$pid"/cmdline | grep -qF -- "$pattern" || return 1
    printf '%s\n' "$pid"
}

pg_running() {
    local bin
    bin=$(pg_bin) || return 1
    [[ -f $PGDATA/postmaster.pid ]] || return 1
    runuser -u postgres -- "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1
}

# Prints "STATE PGID" of a PID from /proc (procps may be missing on slim images). The comm field
# can hold spaces and parentheses, so parse after the last ')'.
proc_stat() {
    local s
    s=$(cat /proc/"$1"/stat 2>/dev/null) || return 1
    s=${s##*) }
    # shellcheck disable=SC2086  # split the /proc stat fields on purpose
    set -- $s
    printf '%s %s\n' "$1" "$3"
}

# True while any non-zombie process is in process group $1 (zombies may linger unreaped, as
# PID 1 in a container is not always a reaper).
group_alive() {
    local want=$1 f s
    for f in /proc/[0-9]*/stat; do
        s=$(cat "$f" 2>/dev/null) || continue
        s=${s##*) }
        # shellcheck disable=SC2086  # split the /proc stat fields on purpose
        set -- $s
        if [[ $3 == "$want" && $1 != Z ]]; then return 0; fi
    done
    return 1
}

pid_alive() {
    local st
    st=$(proc_stat "$1") || return 1
    [[ ${st%% *} != Z ]]
}

# Sends $2 to the whole process group when $1 leads it (pulp-up starts every Pulp process with
# setsid, so gunicorn workers and task subprocesses go with their parent); otherwise to $1 only.
signal_tree() {
    local pid=$1 sig=$2 st
    st=$(proc_stat "$pid") || return 0
    if [[ ${st##* } == "$pid" ]]; then
        kill -s "$sig" -- "-$pid" 2>/dev/null || true
    else
        kill -s "$sig" "$pid" 2>/dev/null || true
    fi
}

# Waits up to $2 seconds for PID $1 and everything in its process group to be gone.
wait_gone() {
    local pid=$1 timeout=$2 i
    for ((i = 0; i < timeout * 10; i++)); do
        if ! pid_alive "$pid" && ! group_alive "$pid"; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}
