# shellcheck shell=bash
# Shared by scripts/test.sh and benches/pgbench.sh: find (or install) the PostgreSQL server
# binaries, and run them as an unprivileged user when we are root (initdb and postgres refuse
# to run as root). Source it; it only defines functions.

log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }

has_server() { [[ -n "$1" && -x "$1/initdb" && -x "$1/postgres" ]]; }

# Prints the server bindir, or fails. DDLGATE_PG_BINDIR is validated by the
# caller, because a wrong explicit setting must not trigger an install.
find_bindir() {
    local dir version
    if command -v pg_config >/dev/null 2>&1; then
        dir="$(pg_config --bindir 2>/dev/null || true)"
        if has_server "$dir"; then
            printf '%s\n' "$dir"
            return 0
        fi
    fi
    # Highest version first; sort -V orders 9.6 < 10 < 17.
    while IFS= read -r version; do
        if has_server "/usr/lib/postgresql/$version/bin"; then
            printf '%s\n' "/usr/lib/postgresql/$version/bin"
            return 0
        fi
    done < <(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -rV)
    return 1
}

# bindir/<name>, else <name> on PATH; prints the path or fails.
find_program() {
    local bindir="$1" name="$2"
    if [[ -x "$bindir/$name" ]]; then
        printf '%s\n' "$bindir/$name"
    else
        command -v "$name"
    fi
}

apt_updated=false
apt_install() {
    command -v apt-get >/dev/null 2>&1 ||
        die "apt-get is not available to install: $*. Install PostgreSQL yourself and set DDLGATE_PG_BINDIR to the directory containing initdb and postgres."
    # No prompts (CI has no stdin); wait for a dpkg lock held by e.g.
    # unattended-upgrades instead of failing at once; keep existing config
    # files if dpkg asks about them.
    export DEBIAN_FRONTEND=noninteractive
    local opts=(-o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    if ! $apt_updated; then
        apt-get "${opts[@]}" update
        apt_updated=true
    fi
    apt-get "${opts[@]}" install -y --no-install-recommends "$@"
}

# Debian's postgresql-common postinst creates and (where it can) starts a
# "main" cluster on port 5432. The tests never use it (they start their own
# clusters on free ports), so stop it to free resources; failures are harmless.
stop_packaged_clusters() {
    command -v pg_lsclusters >/dev/null 2>&1 || return 0
    local ver name _port status _rest
    {
        pg_lsclusters -h 2>/dev/null | while read -r ver name _port status _rest; do
            if [[ "$status" == online* ]]; then
                log "stopping cluster $ver/$name started by the package install (the tests do not use it)"
                pg_ctlcluster "$ver" "$name" stop >/dev/null 2>&1 || true
            fi
        done
    } || true
}

not_installed_message() {
    cat >&2 <<'EOF'
error: PostgreSQL server binaries (initdb, postgres) were not found.
The integration tests start their own throwaway PostgreSQL clusters, so the
server must be installed. On Debian/Ubuntu:

    sudo apt-get install postgresql postgresql-client

(or run this script as root, which installs them), or set DDLGATE_PG_BINDIR to
the directory that contains initdb and postgres.
EOF
}

# Sets DDLGATE_PG_USER to the account clusters run as when we are root: the variable if set,
# else `postgres`, else a system account created for the purpose.
ensure_pg_user() {
    is_root || return 0
    if [[ -n "${DDLGATE_PG_USER:-}" ]]; then
        id -u "$DDLGATE_PG_USER" >/dev/null 2>&1 ||
            die "DDLGATE_PG_USER=$DDLGATE_PG_USER does not exist"
    elif id -u postgres >/dev/null 2>&1; then
        DDLGATE_PG_USER=postgres
    else
        if ! id -u ddlgate-pg >/dev/null 2>&1; then
            log "creating system user ddlgate-pg to run the test clusters (PostgreSQL refuses to run as root)"
            useradd --system --no-create-home --shell /usr/sbin/nologin ddlgate-pg
        fi
        DDLGATE_PG_USER=ddlgate-pg
    fi
    export DDLGATE_PG_USER
}

# Runs a command as the cluster owner when root, as ourselves otherwise.
as_pg_user() {
    if is_root; then
        runuser -u "$DDLGATE_PG_USER" -- "$@"
    else
        "$@"
    fi
}

# Gives a directory to the cluster owner (no-op when not root).
chown_to_pg_user() {
    if is_root; then
        chown -R "$DDLGATE_PG_USER" "$1"
    fi
}

# A free TCP port on 127.0.0.1: pick at random until nothing answers there.
free_port() {
    local port
    while :; do
        # Below Linux's ephemeral range (32768-60999 by default), so that no outgoing
        # connection of an earlier run (pgbench, the proxies) holds it as its local port.
        port=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s\n' "$port"
            return 0
        fi
    done
}

# start_bench_cluster DIR PORT MAX_CONNECTIONS SCALE [CPUS]: the benchmarks' throwaway cluster in
# DIR, run by the unprivileged user, trusting `bench`, durability off (the proxy's cost is
# measured, not the disk's), with pgbench's tables at SCALE; with CPUS (a taskset list), every
# server process runs on those CPUs only. Needs DDLGATE_PG_BINDIR and PGBENCH.
start_bench_cluster() {
    local work=$1 port=$2 max_connections=$3 scale=$4 pin=()
    [ -n "${5:-}" ] && pin=(taskset -c "$5")
    chown_to_pg_user "$work"
    as_pg_user "$DDLGATE_PG_BINDIR/initdb" -D "$work/data" -U bench --auth=trust >/dev/null
    as_pg_user "${pin[@]}" "$DDLGATE_PG_BINDIR/pg_ctl" -D "$work/data" -l "$work/pg.log" -w \
        -o "-p $port -k $work -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=$max_connections" \
        start >/dev/null
    "$PGBENCH" -h 127.0.0.1 -p "$port" -U bench -i -s "$scale" -q postgres >/dev/null 2>&1
}
