#!/usr/bin/env bash
# Soak: pgbench through ddlgate for a long time while a second client churns DDL through ddlgate
# and a third holds table locks now and then, sampling ddlgate's memory, descriptors and sessions.
#
#   BIN=target/release/ddlgate benches/soak.sh                 # 30 minutes
#   SOAK_SECONDS=60 BIN=target/release/ddlgate benches/soak.sh # a smoke run
#
# One throwaway cluster (as benches/compare.sh starts it), pgbench tables at SCALE, and a table
# `churn` of CHURN_ROWS rows (above ddlgate's small-table thresholds, so its rules apply) with
# a parent `churn_parent` for a foreign key. Then, all through ddlgate (default configuration):
#   - pgbench (TPC-B-like, CLIENTS clients) for SOAK_SECONDS;
#   - a DDL client (psql, one statement per call, as migration tools send them) cycling through
#     CREATE INDEX and DROP INDEX on pgbench_accounts (rewritten to CONCURRENTLY while pgbench
#     writes), ADD COLUMN and DROP COLUMN on pgbench_accounts (guarded: pgbench's row locks make
#     the guard back off and retry), a foreign key on `churn` (run as NOT VALID + VALIDATE) and
#     its DROP, SET NOT NULL on `churn` (run as CHECK NOT VALID, VALIDATE, SET NOT NULL) and DROP
#     NOT NULL, pausing CHURN_PAUSE seconds between statements;
#   - every LOCK_EVERY seconds, a session straight on PostgreSQL holds ACCESS SHARE or ACCESS
#     EXCLUSIVE (alternately) on `churn` for LOCK_HOLD seconds, so the guard has to retry.
# Every SAMPLE_SECONDS, ddlgate's RSS (/proc/PID/status), open descriptors (/proc/PID/fd) and
# client connections (`ddlgate_connections_active` from the admin endpoint's /metrics) go into
# OUT/soak.csv. At the end it prints pgbench's client errors, the DDL client's errors by step and
# SQLSTATE (55P03 lock timeouts the guard gave up on after its retries, and 40P01 deadlocks
# between a CREATE INDEX CONCURRENTLY and the lock holder, are what the lock holder provokes:
# they are listed, not counted as failures), the guard's retries, RSS at the first
# sample after WARMUP_SECONDS vs the last sample under load and the maximum (±%), and
# descriptors before any client vs after every client left; and it draws OUT/soak.png
# (matplotlib, installed with pip into a venv under target/ on first use).
#
# Environment: SOAK_SECONDS (1800), WARMUP_SECONDS (SOAK_SECONDS/10, between 10 and 120),
# SAMPLE_SECONDS (10), CLIENTS (8), SCALE (10), CHURN_ROWS (50000), CHURN_PAUSE (0.5),
# LOCK_EVERY (20), LOCK_HOLD (3), OUT (target/soak), BIN (the ddlgate binary; default: a release
# build of this checkout). Exits 1 when pgbench had client errors, the DDL client failed other
# than by a lock timeout, RSS after warm-up moved by more than 10%, or descriptors did not come
# back to their baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg-env.sh

SOAK_SECONDS=${SOAK_SECONDS:-1800}
if [ -z "${WARMUP_SECONDS:-}" ]; then
  WARMUP_SECONDS=$((SOAK_SECONDS / 10))
  [ "$WARMUP_SECONDS" -lt 10 ] && WARMUP_SECONDS=10
  [ "$WARMUP_SECONDS" -gt 120 ] && WARMUP_SECONDS=120
fi
SAMPLE_SECONDS=${SAMPLE_SECONDS:-10}
CLIENTS=${CLIENTS:-8}
SCALE=${SCALE:-10}
CHURN_ROWS=${CHURN_ROWS:-50000}
CHURN_PAUSE=${CHURN_PAUSE:-0.5}
LOCK_EVERY=${LOCK_EVERY:-20}
LOCK_HOLD=${LOCK_HOLD:-3}
OUT=${OUT:-target/soak}

DDLGATE_PG_BINDIR="${DDLGATE_PG_BINDIR:-$(find_bindir)}" || { not_installed_message; exit 1; }
PGBENCH=$(find_program "$DDLGATE_PG_BINDIR" pgbench) || die "pgbench not found (Debian: apt-get install postgresql-contrib)"
PSQL=$(find_program "$DDLGATE_PG_BINDIR" psql) || die "psql not found (Debian: apt-get install postgresql-client)"
ensure_pg_user
command -v curl >/dev/null || die "curl not found (Debian: apt-get install curl)"

if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=target/release/ddlgate
fi

# matplotlib for the plot, in a venv of its own so that the system's Python stays untouched.
VENV=target/soak-venv
if ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
  log "installing matplotlib into $VENV (pip)"
  python3 -m venv "$VENV" && "$VENV/bin/pip" install --quiet matplotlib ||
    die "could not install matplotlib (needs python3-venv and PyPI)"
fi

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
work=$(mktemp -d /tmp/ddlgate-soak.XXXXXX)
chmod 755 "$work"
pg_port=$(free_port)
proxy_port=$(free_port)
admin_port=$(free_port)
proxy_pid=
bg_pids=()
cleanup() {
  touch "$work/stop"
  for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null || true
  as_pg_user "$DDLGATE_PG_BINDIR/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

start_bench_cluster "$work" "$pg_port" $((CLIENTS + 30)) "$SCALE"
direct() { "$PSQL" -X -q -h 127.0.0.1 -p "$pg_port" -U bench -d postgres -v ON_ERROR_STOP=1 "$@"; }
direct -c "CREATE TABLE churn_parent (id int PRIMARY KEY);
  INSERT INTO churn_parent SELECT g FROM generate_series(0, 999) g;
  CREATE TABLE churn (id int PRIMARY KEY, a int, b text);
  INSERT INTO churn SELECT g, g % 1000, md5(g::text) FROM generate_series(1, $CHURN_ROWS) g;"
direct -c "VACUUM ANALYZE churn_parent, churn, pgbench_accounts"

# In a session of its own (as in benches/compare.sh): with the scheduler's autogroups, a process
# started from this script would share one CPU share with pgbench.
DDLGATE__ADMIN__LISTEN="127.0.0.1:$admin_port" DDLGATE__LIMITS__MAX_CLIENTS=$((CLIENTS + 20)) \
  RUST_LOG=warn setsid "$BIN" --listen "127.0.0.1:$proxy_port" --upstream "127.0.0.1:$pg_port" \
  2> "$OUT/ddlgate.log" &
proxy_pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$proxy_port") 2>/dev/null && break; sleep 0.1; done
sleep 1

metric() { # name → the sum of its series in /metrics (0 when absent)
  curl -s "http://127.0.0.1:$admin_port/metrics" | awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%d", s }'
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$proxy_pid/status"; }
fds() { find "/proc/$proxy_pid/fd" -mindepth 1 -maxdepth 1 | wc -l; }
start=$(date +%s)
sample() { # phase
  echo "$(( $(date +%s) - start )),$(rss_kb),$(fds),$(metric ddlgate_connections_active),$1" >> "$OUT/soak.csv"
}
echo "seconds,rss_kb,fds,sessions,phase" > "$OUT/soak.csv"
fds_start=$(fds)
fd_list() { ls -l "/proc/$proxy_pid/fd" | awk 'NR > 1 { print $9, $10, $11 }'; }
fd_list > "$OUT/fds.start"
sample idle

# The DDL client: one psql call per statement, through ddlgate. Records "step ok" or
# "step SQLSTATE message" per statement.
churn() {
  local steps=(
    "create-index|CREATE INDEX soak_abalance ON pgbench_accounts (abalance)"
    "drop-index|DROP INDEX soak_abalance"
    "add-column|ALTER TABLE pgbench_accounts ADD COLUMN soak_note text"
    "drop-column|ALTER TABLE pgbench_accounts DROP COLUMN soak_note"
    "add-fk|ALTER TABLE churn ADD CONSTRAINT churn_a_fk FOREIGN KEY (a) REFERENCES churn_parent (id)"
    "drop-fk|ALTER TABLE churn DROP CONSTRAINT churn_a_fk"
    "set-not-null|ALTER TABLE churn ALTER COLUMN a SET NOT NULL"
    "drop-not-null|ALTER TABLE churn ALTER COLUMN a DROP NOT NULL"
  )
  while [ ! -e "$work/stop" ]; do
    for s in "${steps[@]}"; do
      [ -e "$work/stop" ] && break
      local name=${s%%|*} sql=${s#*|} err
      if err=$("$PSQL" -X -q -h 127.0.0.1 -p "$proxy_port" -U bench -d postgres \
        -v VERBOSITY=verbose -c "$sql" 2>&1 >/dev/null); then
        echo "$name ok"
      else
        echo "$name $(grep -m1 -o 'ERROR:  [0-9A-Z]\{5\}: .*' <<<"$err" | cut -c9- || echo "? $err" | head -1)"
      fi >> "$work/churn.log"
      sleep "$CHURN_PAUSE"
    done
  done
}

# The lock holder, straight on PostgreSQL: ACCESS SHARE and ACCESS EXCLUSIVE in turn.
locker() {
  local mode="ACCESS SHARE"
  while [ ! -e "$work/stop" ]; do
    for _ in $(seq "$LOCK_EVERY"); do [ -e "$work/stop" ] && return; sleep 1; done
    local err
    if err=$(direct -v VERBOSITY=verbose -c "BEGIN; LOCK TABLE churn, pgbench_accounts IN $mode MODE; SELECT pg_sleep($LOCK_HOLD); COMMIT;" 2>&1 >/dev/null); then
      echo "$mode ok"
    else
      echo "$mode failed: $(grep -m1 -o 'ERROR:  .*' <<<"$err" | cut -c9-)"
    fi >> "$work/locks.log"
    if [ "$mode" = "ACCESS SHARE" ]; then mode="ACCESS EXCLUSIVE"; else mode="ACCESS SHARE"; fi
  done
}

log "soak: ${SOAK_SECONDS}s, pgbench $CLIENTS clients at scale $SCALE, warm-up ${WARMUP_SECONDS}s, ddlgate $BIN (pid $proxy_pid); samples in $OUT/soak.csv"
"$PGBENCH" -h 127.0.0.1 -p "$proxy_port" -U bench -c "$CLIENTS" -j 2 -T "$SOAK_SECONDS" -n \
  postgres > "$work/pgbench.out" 2> "$work/pgbench.err" &
pgbench_pid=$!
: > "$work/churn.log"; : > "$work/locks.log"
churn & bg_pids+=($!)
locker & bg_pids+=($!)

next=$((start + SAMPLE_SECONDS))
while kill -0 "$pgbench_pid" 2>/dev/null; do
  if [ "$(date +%s)" -ge "$next" ]; then
    if [ $(( $(date +%s) - start )) -lt "$WARMUP_SECONDS" ]; then sample warmup; else sample load; fi
    next=$((next + SAMPLE_SECONDS))
  fi
  sleep 1
done
pgbench_rc=0
wait "$pgbench_pid" || pgbench_rc=$?
touch "$work/stop"
for p in "${bg_pids[@]}"; do wait "$p" 2>/dev/null || true; done
bg_pids=()
# Every client has gone: wait for ddlgate to close their sessions, then the last sample.
for _ in $(seq 50); do [ "$(metric ddlgate_connections_active)" = 0 ] && break; sleep 0.2; done
sleep 2
# Descriptors first: the admin request of a sample holds one until ddlgate closes it.
fds_end=$(fds)
fd_list > "$OUT/fds.end"
sample end
retries=$(metric ddlgate_lock_retries_total)
guarded=$(metric ddlgate_guard_runs_total)
exhausted=$(metric ddlgate_lock_budget_exhausted_total)

cp "$work/pgbench.out" "$OUT/pgbench.out"
cp "$work/pgbench.err" "$OUT/pgbench.err"
cp "$work/churn.log" "$OUT/churn.log" 2>/dev/null || : > "$OUT/churn.log"

# --- the report ----------------------------------------------------------------------------
failed_tx=$(awk -F'[: ]+' '/^number of failed transactions/ { print $5 }' "$OUT/pgbench.out")
aborted=$(grep -c 'aborted in command' "$OUT/pgbench.err" || true)
tx=$(awk '/^number of transactions actually processed/ { print $NF }' "$OUT/pgbench.out")
tps=$(awk '/^tps = / { printf "%.0f", $3 }' "$OUT/pgbench.out")
client_errors=$(( ${failed_tx:-0} + aborted ))
[ "$pgbench_rc" -ne 0 ] && [ "$client_errors" -eq 0 ] && client_errors=1

echo
echo "soak: ${SOAK_SECONDS}s, $(nproc) cores, PostgreSQL $("$DDLGATE_PG_BINDIR/postgres" --version | awk '{print $3}'), ddlgate $BIN"
echo "pgbench ($CLIENTS clients, scale $SCALE): ${tx:-?} transactions, ${tps:-?} tps; client errors: $client_errors (failed transactions ${failed_tx:-?}, aborted clients $aborted, exit $pgbench_rc)"
ddl_total=$(wc -l < "$OUT/churn.log")
ddl_ok=$(grep -c ' ok$' "$OUT/churn.log" || true)
echo "DDL client: $ddl_total statements, $ddl_ok ok; lock holds: $(grep -c ' ok$' "$work/locks.log" 2>/dev/null || true) ($(grep -c ' failed: ' "$work/locks.log" 2>/dev/null || true) failed)"
grep ' failed: ' "$work/locks.log" | sed 's/^/  lock holder /' | sort | uniq -c || true
echo "guard: $guarded statements guarded, $retries attempts retried after a lock timeout, $exhausted gave up (budget spent)"
echo "DDL errors by step and SQLSTATE:"
grep -v ' ok$' "$OUT/churn.log" | awk '{ print $1, $2 }' | sort | uniq -c | sed 's/^/  /' || true
grep -v ' ok$' "$OUT/churn.log" | awk '{ $1 = ""; print }' | sort | uniq -c | sort -rn | head -5 | sed 's/^/  e.g./' || true
# Lock timeouts the guard gave up on (55P03) and deadlocks with the lock holder (40P01: its
# LOCK TABLE waits behind a CREATE INDEX CONCURRENTLY that waits for the holder's transaction;
# PostgreSQL cancels one of them) are what the lock holder provokes; anything else is a failure.
unexpected=$(grep -v ' ok$' "$OUT/churn.log" | grep -vEc ' (55P03|40P01):' || true)

read -r rss_warm rss_last rss_max < <(awk -F, 'NR > 1 && $5 == "load" { if (!w) w = $2; l = $2; if ($2 > m) m = $2 } END { print w + 0, l + 0, m + 0 }' "$OUT/soak.csv")
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%+.1f%%", (a - b) * 100 / b; else print "-" }'; }
echo "RSS: first after warm-up $((rss_warm / 1024)) MiB, last $((rss_last / 1024)) MiB ($(pct "$rss_last" "$rss_warm")), max $((rss_max / 1024)) MiB ($(pct "$rss_max" "$rss_warm"))"
echo "descriptors: $fds_start before any client, $fds_end after every client left (listed in $OUT/fds.start, fds.end); samples: $(($(wc -l < "$OUT/soak.csv") - 1))"

"$VENV/bin/python" - "$OUT/soak.csv" "$OUT/soak.png" "$WARMUP_SECONDS" <<'EOF'
import csv, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = list(csv.DictReader(open(sys.argv[1])))
t = [int(r["seconds"]) / 60 for r in rows]
fig, axes = plt.subplots(3, 1, sharex=True, figsize=(7, 6))
for ax, key, label, scale in [
    (axes[0], "rss_kb", "RSS (MiB)", 1024),
    (axes[1], "fds", "open descriptors", 1),
    (axes[2], "sessions", "client sessions", 1),
]:
    ax.plot(t, [int(r[key]) / scale for r in rows], marker=".")
    ax.set_ylabel(label)
    ax.axvline(int(sys.argv[3]) / 60, color="grey", linestyle=":", linewidth=1)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
axes[2].set_xlabel("minutes (dotted: end of warm-up)")
fig.suptitle("ddlgate soak: pgbench + DDL churn + lock holder")
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=80)
EOF
echo "plot: $OUT/soak.png; samples: $OUT/soak.csv"

status=0
[ "$client_errors" -eq 0 ] || { echo "FAIL: pgbench client errors"; status=1; }
[ "$unexpected" -eq 0 ] || { echo "FAIL: $unexpected DDL errors other than lock timeouts"; status=1; }
awk -v w="$rss_warm" -v l="$rss_last" -v m="$rss_max" 'BEGIN { exit !(w > 0 && l <= w * 1.1 && l >= w * 0.9 && m <= w * 1.1) }' ||
  { echo "FAIL: RSS not within ±10% of the first sample after warm-up"; status=1; }
[ "$fds_end" -le "$fds_start" ] || { echo "FAIL: descriptors $fds_start at start, $fds_end at the end"; status=1; }
exit "$status"
