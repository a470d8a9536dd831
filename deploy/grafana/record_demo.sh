#!/usr/bin/env bash
# Records real ddlgate metrics and draws deploy/grafana/dashboard.svg from them.
#
#     cargo build --release && deploy/grafana/record_demo.sh      (from the repository root)
#
# In a temporary directory it starts a throwaway PostgreSQL cluster, ddlgate in front of it
# (admin endpoint and lock monitor on, guard.lock_timeout_ms = 500 so lock retries happen
# within the demo) and Prometheus scraping ddlgate every second. Then, for WORKLOAD_SECONDS, it
# drives traffic through ddlgate: pgbench select-only and tpcb-like, and from psql the DDL and
# sessions every dashboard row is about — index builds rewritten to CONCURRENTLY, blocked
# statements, an override, ALTERs that wait behind a long transaction held by a direct session
# (lock retries, queued DDL, an exhausted budget, sessions blocked by DDL), a LOCK TABLE outside
# ddlgate, errors, failed and open transactions, cancels and a connection burst past
# limits.max_clients. Finally render_dashboard.py evaluates every panel of ddlgate.json over
# that time range through Prometheus' HTTP API and draws the picture. Everything it started is
# stopped and the directory removed on exit, also on failure or Ctrl-C.
#
# Environment (all optional):
#   DDLGATE           ddlgate binary             (target/release/ddlgate, or $CARGO_TARGET_DIR/release)
#   PROMETHEUS        prometheus binary          (prometheus on PATH)
#   PG_BINDIR         PostgreSQL server binaries ($(pg_config --bindir), else newest /usr/lib/postgresql/*/bin)
#   WORKLOAD_SECONDS  length of the workload     (240; the DDL timeline needs at least 200)
#   SCALE             pgbench scale factor       (10: 1 million accounts)
#   OUT               the picture                (deploy/grafana/dashboard.svg)
#   KEEP_TSDB         a directory to copy Prometheus' data to, to render again later
#   PG_USER           unprivileged user that runs PostgreSQL when this runs as root (postgres)
# Needs: bash, python3, curl, psql and pgbench (PostgreSQL client), a free loopback port range.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORKLOAD_SECONDS=${WORKLOAD_SECONDS:-240}
SCALE=${SCALE:-10}
OUT=${OUT:-$HERE/dashboard.svg}
PG_USER=${PG_USER:-postgres}
DDLGATE=${DDLGATE:-${CARGO_TARGET_DIR:-$ROOT/target}/release/ddlgate}
PROMETHEUS=${PROMETHEUS:-$(command -v prometheus || true)}
if [[ -z ${PG_BINDIR:-} ]]; then
    PG_BINDIR=$(pg_config --bindir 2>/dev/null || true)
    [[ -x $PG_BINDIR/initdb ]] || PG_BINDIR=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
fi

die() { echo "record_demo: $*" >&2; exit 2; }
[[ -x $DDLGATE ]] || die "no ddlgate binary at $DDLGATE (cargo build --release, or set DDLGATE)"
[[ -x $PROMETHEUS ]] || die "no prometheus binary (install it, or set PROMETHEUS)"
[[ -x $PG_BINDIR/initdb ]] || die "no PostgreSQL server binaries (set PG_BINDIR)"
((WORKLOAD_SECONDS >= 200)) || die "WORKLOAD_SECONDS must be at least 200"
PSQL=$PG_BINDIR/psql; [[ -x $PSQL ]] || PSQL=$(command -v psql)
PGBENCH=$PG_BINDIR/pgbench; [[ -x $PGBENCH ]] || PGBENCH=$(command -v pgbench)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ddlgate-demo.XXXXXX")
chmod 755 "$WORK"
PIDS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # Background psql sessions and pgbench first, then ddlgate and Prometheus, then PostgreSQL.
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ -f $WORK/pg/postmaster.pid ]]; then as_pg "$PG_BINDIR/pg_ctl" -D "$WORK/pg" -m fast -w stop >/dev/null || true; fi
    if [[ -n ${KEEP_TSDB:-} && -d $WORK/prom ]]; then mkdir -p "$KEEP_TSDB" && cp -a "$WORK/prom/." "$KEEP_TSDB/"; fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# initdb and postgres refuse to run as root.
as_pg() {
    if ((EUID == 0)); then runuser -u "$PG_USER" -- "$@"; else "$@"; fi
}
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_for() { # seconds, command...
    local n=$(($1 * 10)); shift
    until "$@" >/dev/null 2>&1; do ((n-- > 0)) || return 1; sleep 0.1; done
}
log() { printf '%s %s\n' "$(date +%T)" "$*"; }

PG_PORT=$(free_port); GATE_PORT=$(free_port); ADMIN_PORT=$(free_port); PROM_PORT=$(free_port)

# --- PostgreSQL -------------------------------------------------------------------------------
mkdir -p "$WORK/pg" "$WORK/sock"
((EUID == 0)) && chown "$PG_USER" "$WORK/pg" "$WORK/sock"
as_pg "$PG_BINDIR/initdb" -D "$WORK/pg" -U postgres --auth=trust -E UTF8 >/dev/null
as_pg "$PG_BINDIR/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/server.log" -w \
    -o "-p $PG_PORT -k $WORK/sock -c listen_addresses=127.0.0.1 -c max_connections=60" start >/dev/null
direct() { "$PSQL" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"; }
direct -d postgres -v ON_ERROR_STOP=1 <<'SQL'
CREATE DATABASE app;
CREATE ROLE ddlgate_monitor LOGIN PASSWORD 'monitor-demo';
GRANT pg_monitor TO ddlgate_monitor;
SQL
log "pgbench -i -s $SCALE (directly, not through ddlgate)"
"$PGBENCH" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U postgres app 2>&1 | tail -1

# --- ddlgate ----------------------------------------------------------------------------------
cat >"$WORK/ddlgate.toml" <<EOF
[server]
listen = "127.0.0.1:$GATE_PORT"
[upstream]
address = "127.0.0.1:$PG_PORT"
[limits]
max_clients = 16
[guard]
lock_timeout_ms = 500
max_wait_ms = 15000
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[monitor]
enabled = true
interval_ms = 1000
user = "ddlgate_monitor"
database = "app"
EOF
DDLGATE__MONITOR__PASSWORD=monitor-demo "$DDLGATE" serve --config "$WORK/ddlgate.toml" \
    >"$WORK/ddlgate.log" 2>&1 &
PIDS+=($!)
wait_for 20 curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz" || die "ddlgate not ready: $(tail -5 "$WORK/ddlgate.log")"

# --- Prometheus -------------------------------------------------------------------------------
cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: ddlgate
    static_configs:
      - targets: ["127.0.0.1:$ADMIN_PORT"]
EOF
"$PROMETHEUS" --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prom" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prometheus.log" 2>&1 &
PIDS+=($!)
wait_for 30 curl -sf "http://127.0.0.1:$PROM_PORT/-/ready" || die "prometheus not ready: $(tail -5 "$WORK/prometheus.log")"

# --- workload ---------------------------------------------------------------------------------
gate() { "$PSQL" -X -q -h 127.0.0.1 -p "$GATE_PORT" -U postgres -d app "$@"; }
# Runs SQL through ddlgate and keeps going on errors (blocked statements are errors by design).
gate_sql() { gate -v ON_ERROR_STOP=0 -c "$1" >>"$WORK/psql.log" 2>&1 || true; }
bg() { "$@" & PIDS+=($!); }
T0=$(date +%s)
at() { # seconds after the start
    local wait=$((T0 + $1 - $(date +%s)))
    ((wait > 0)) && sleep "$wait"
    return 0
}

sleep 10 # a flat stretch before the traffic starts
T0=$(date +%s)
START=$((T0 - 10))
log "workload: ${WORKLOAD_SECONDS}s through ddlgate on 127.0.0.1:$GATE_PORT"
bench() { "$PGBENCH" -n -h 127.0.0.1 -p "$GATE_PORT" -U postgres "$@" app >>"$WORK/pgbench.log" 2>&1; }
bg bench -S -M prepared -c 3 -R 300 -T "$WORKLOAD_SECONDS"
BENCH=($!)
bg bench -c 2 -R 40 -T "$WORKLOAD_SECONDS"
BENCH+=($!)

# Background chatter: every 20 s a small index built and dropped (both rewritten to
# CONCURRENTLY), a division by zero, a short explicit transaction.
chatter() {
    local i=0
    while (($(date +%s) < T0 + WORKLOAD_SECONDS - 10)); do
        gate_sql "CREATE INDEX demo_history_aid ON pgbench_history (aid)"
        gate_sql "DROP INDEX demo_history_aid"
        gate_sql "SELECT 1/0"
        gate -c "BEGIN" -c "SELECT count(*) FROM pgbench_branches" -c "COMMIT" >/dev/null 2>&1 || true
        i=$((i + 1)); sleep 20
    done
}
bg chatter

at 15
log "CREATE INDEX on pgbench_accounts (rewritten to CONCURRENTLY), then DROP INDEX"
gate_sql "CREATE INDEX demo_accounts_bid ON pgbench_accounts (bid)"
at 25
gate_sql "DROP INDEX demo_accounts_bid"

at 30
log "blocked: CREATE INDEX inside BEGIN, ALTER COLUMN TYPE; an override; an invalid override"
gate -v ON_ERROR_STOP=0 >>"$WORK/psql.log" 2>&1 <<'SQL' || true
BEGIN;
CREATE INDEX demo_accounts_abalance ON pgbench_accounts (abalance);
ROLLBACK;
ALTER TABLE pgbench_accounts ALTER COLUMN abalance TYPE bigint;
SQL
at 40
gate_sql '/* ddlgate:allow changing-column-type reason="demo: pgbench_history is small and append-only" */
ALTER TABLE pgbench_history ALTER COLUMN delta TYPE bigint'
gate_sql '/* ddlgate:allow changing-column-typo reason="a typo in the rule id" */
ALTER TABLE pgbench_history ALTER COLUMN delta TYPE numeric'

failed_transaction() {
    { echo 'BEGIN;'; echo 'SELECT 1/0;'; sleep 10; echo 'ROLLBACK;'; } | gate >/dev/null 2>&1
}
at 50
log "a failed transaction (10 s) and an open one (8 s) through ddlgate"
bg failed_transaction
bg gate -c "BEGIN" -c "SELECT pg_sleep(8)" -c "COMMIT" >/dev/null 2>&1

at 65
log "a direct session holds pgbench_branches for 8 s; two ALTERs through ddlgate wait, retry and queue"
bg direct -d app -c "BEGIN" -c "SELECT count(*) FROM pgbench_branches" -c "SELECT pg_sleep(8)" -c "COMMIT" >/dev/null
sleep 1
bg gate_sql "ALTER TABLE pgbench_branches ADD COLUMN note text"
sleep 1
gate_sql "ALTER TABLE pgbench_branches ADD COLUMN note2 text"

at 95
log "a direct session holds pgbench_tellers for 25 s; the ALTER through ddlgate runs out of budget (15 s)"
bg direct -d app -c "BEGIN" -c "SELECT count(*) FROM pgbench_tellers" -c "SELECT pg_sleep(25)" -c "COMMIT" >/dev/null
sleep 1
gate_sql "ALTER TABLE pgbench_tellers ADD COLUMN note text"

at 130
log "LOCK TABLE pgbench_tellers IN SHARE MODE for 6 s, directly (the lock monitor sees it)"
direct -d app -c "BEGIN" -c "LOCK TABLE pgbench_tellers IN SHARE MODE" -c "SELECT pg_sleep(6)" -c "COMMIT" >/dev/null

at 145
log "cancels: one by the client (SIGINT), one by client loss (SIGKILL)"
(timeout -s INT 2 "$PSQL" -X -q -h 127.0.0.1 -p "$GATE_PORT" -U postgres -d app -c "SELECT pg_sleep(30)" || true) >/dev/null 2>&1
(timeout -s KILL 2 "$PSQL" -X -q -h 127.0.0.1 -p "$GATE_PORT" -U postgres -d app -c "SELECT pg_sleep(30)" || true) >/dev/null 2>&1

at 155
log "a burst of 20 connections against limits.max_clients = 16"
for _ in $(seq 20); do
    bg gate -c "SELECT pg_sleep(3)" >/dev/null 2>&1
done

at 165
log "more DDL: REINDEX (rewritten), LOCK TABLE (warned), DROP COLUMN held in a transaction, a table created and dropped"
gate_sql "REINDEX TABLE pgbench_branches"
gate -v ON_ERROR_STOP=0 >>"$WORK/psql.log" 2>&1 <<'SQL' || true
BEGIN;
LOCK TABLE pgbench_branches IN SHARE MODE;
COMMIT;
BEGIN;
ALTER TABLE pgbench_branches DROP COLUMN note2;
SELECT pg_sleep(1);
COMMIT;
CREATE TABLE demo_t (id bigint PRIMARY KEY, v text);
ALTER TABLE demo_t RENAME COLUMN v TO w;
DROP TABLE demo_t;
SQL

at 180
log "CREATE INDEX on pgbench_accounts (rewritten) while a direct session reads it for 6 s"
bg direct -d app -c "BEGIN" -c "SELECT count(*) FROM pgbench_accounts" -c "SELECT pg_sleep(6)" -c "COMMIT" >/dev/null
sleep 1
gate_sql "CREATE INDEX demo_accounts_abalance ON pgbench_accounts (abalance)"
gate_sql "DROP INDEX demo_accounts_abalance"

at "$WORKLOAD_SECONDS"
# The picture ends just before pgbench does, so that the stats show the workload's last values.
END=$((T0 + WORKLOAD_SECONDS - 2))
for pid in "${BENCH[@]}"; do wait "$pid" || true; done
sleep 3 # the last scrapes
log "workload done; $(grep -c 'ERROR' "$WORK/psql.log" || true) psql errors (blocked statements included)"
log "time range: --start $START --end $END"

python3 "$HERE/render_dashboard.py" --prometheus "http://127.0.0.1:$PROM_PORT" \
    --start "$START" --end "$END" --out "$OUT" \
    --workload "pgbench select-only (3 clients, 300 tx/s) and tpcb-like (2 clients, 40 tx/s) at scale $SCALE plus scripted DDL, lock waits, errors, cancels and a connection burst (deploy/grafana/record_demo.sh)"
log "wrote $OUT"
