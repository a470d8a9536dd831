#!/usr/bin/env bash
# End-to-end benchmark: pgbench -S (read-only, one SELECT per transaction) against a throwaway
# PostgreSQL cluster, directly and through ddlgate, and the ratio of the two.
#
#   benches/pgbench.sh                      # defaults below
#   CLIENTS=8 SECONDS_PER_RUN=20 PROTOCOLS="simple prepared" benches/pgbench.sh
#
# Environment: CLIENTS (default 4), THREADS (2), SECONDS_PER_RUN (10), SCALE (10),
# PROTOCOLS (space-separated pgbench -M modes; default "simple extended prepared"),
# ROUNDS (alternating direct/proxy rounds per mode, default 2; the best round of each is kept),
# BIN (the ddlgate binary; default: a release build of this checkout),
# BASELINE_BIN (another ddlgate binary, e.g. a release build of an earlier commit: it runs as a
# third leg, interleaved with the other two, and the table adds its TPS and the ratio of this
# build to it).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg-env.sh

CLIENTS=${CLIENTS:-4}
THREADS=${THREADS:-2}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
SCALE=${SCALE:-10}
PROTOCOLS=${PROTOCOLS:-"simple extended prepared"}
ROUNDS=${ROUNDS:-2}
# WORKLOAD=select (default): pgbench -S. WORKLOAD=ddl: one guarded DDL statement per transaction
# (ALTER TABLE … ALTER COLUMN … SET DEFAULT, ACCESS EXCLUSIVE) — what the lock guard, the
# catalog read and the per-table turn cost a migration, statement by statement.
WORKLOAD=${WORKLOAD:-select}
# TLS=1: clients use sslmode=require both ways — directly to a PostgreSQL with ssl=on, and to
# ddlgate with tls.mode=require (a throwaway self-signed certificate, openssl). The leg from
# ddlgate to PostgreSQL is plaintext unless UPSTREAM_TLS=1 (upstream.tls=require).
TLS=${TLS:-0}
UPSTREAM_TLS=${UPSTREAM_TLS:-0}

DDLGATE_PG_BINDIR="${DDLGATE_PG_BINDIR:-$(find_bindir)}" || { not_installed_message; exit 1; }
PGBENCH=$(find_program "$DDLGATE_PG_BINDIR" pgbench) || die "pgbench not found (Debian: apt-get install postgresql-contrib)"
ensure_pg_user

if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=target/release/ddlgate
fi
BASELINE_BIN=${BASELINE_BIN:-}

work=$(mktemp -d /tmp/ddlgate-bench.XXXXXX)
chmod 755 "$work"
pg_port=$(free_port)
proxy_port=$(free_port)
base_port=$(free_port)
proxy_pid=
base_pid=
cleanup() {
  [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null || true
  [ -n "$base_pid" ] && kill "$base_pid" 2>/dev/null || true
  as_pg_user "$DDLGATE_PG_BINDIR/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

chown_to_pg_user "$work"
as_pg_user "$DDLGATE_PG_BINDIR/initdb" -D "$work/data" -U bench --auth=trust >/dev/null
pg_opts="-p $pg_port -k $work -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=200"
proxy_env=()
if [ "$TLS" = 1 ]; then
  command -v openssl >/dev/null || die "TLS=1 needs openssl (Debian: apt-get install openssl)"
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -keyout "$work/server.key" -out "$work/server.crt" >/dev/null 2>&1
  chown_to_pg_user "$work/server.key"
  chown_to_pg_user "$work/server.crt"
  chmod 600 "$work/server.key"
  pg_opts="$pg_opts -c ssl=on -c ssl_cert_file=$work/server.crt -c ssl_key_file=$work/server.key"
  proxy_env=(DDLGATE__TLS__MODE=require DDLGATE__TLS__CERT_FILE="$work/server.crt" DDLGATE__TLS__KEY_FILE="$work/server.key")
  export PGSSLMODE=require
fi
[ "$UPSTREAM_TLS" = 1 ] && proxy_env+=(DDLGATE__UPSTREAM__TLS=require)
as_pg_user "$DDLGATE_PG_BINDIR/pg_ctl" -D "$work/data" -l "$work/pg.log" -w -o "$pg_opts" start >/dev/null
"$PGBENCH" -h 127.0.0.1 -p "$pg_port" -U bench -i -s "$SCALE" -q postgres >/dev/null 2>&1

env "${proxy_env[@]}" DDLGATE__ADMIN__LISTEN="127.0.0.1:$(free_port)" RUST_LOG=warn setsid "$BIN" --listen "127.0.0.1:$proxy_port" --upstream "127.0.0.1:$pg_port" &
proxy_pid=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$proxy_port) 2>/dev/null && break; sleep 0.1; done
if [ -n "$BASELINE_BIN" ]; then
  env "${proxy_env[@]}" DDLGATE__ADMIN__LISTEN="127.0.0.1:$(free_port)" RUST_LOG=warn setsid "$BASELINE_BIN" --listen "127.0.0.1:$base_port" --upstream "127.0.0.1:$pg_port" &
  base_pid=$!
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$base_port) 2>/dev/null && break; sleep 0.1; done
fi

echo "ALTER TABLE pgbench_branches ALTER COLUMN filler SET DEFAULT 'x';" > "$work/ddl.sql"
chmod 644 "$work/ddl.sql"
tps() { # port mode
  local what=(-S)
  [ "$WORKLOAD" = ddl ] && what=(-f "$work/ddl.sql")
  "$PGBENCH" -h 127.0.0.1 -p "$1" -U bench "${what[@]}" -M "$2" -c "$CLIENTS" -j "$THREADS" -T "$SECONDS_PER_RUN" -n postgres 2>/dev/null \
    | awk '/^tps = / { printf "%.0f", $3 }'
}

echo "pgbench ($WORKLOAD, tls=$TLS upstream_tls=$UPSTREAM_TLS): clients=$CLIENTS threads=$THREADS duration=${SECONDS_PER_RUN}s scale=$SCALE rounds=$ROUNDS ($(nproc) cores, PostgreSQL $("$DDLGATE_PG_BINDIR/postgres" --version | awk '{print $3}'))"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }'; }
if [ -n "$BASELINE_BIN" ]; then
  printf '%-10s %12s %12s %8s %12s %10s\n' mode direct_tps ddlgate_tps ratio baseline_tps vs_base
else
  printf '%-10s %12s %12s %8s\n' mode direct_tps ddlgate_tps ratio
fi
for mode in $PROTOCOLS; do
  best_d=0; best_p=0; best_b=0
  for _ in $(seq "$ROUNDS"); do
    d=$(tps "$pg_port" "$mode"); p=$(tps "$proxy_port" "$mode")
    [ "${d:-0}" -gt "$best_d" ] && best_d=$d
    [ "${p:-0}" -gt "$best_p" ] && best_p=$p
    if [ -n "$BASELINE_BIN" ]; then
      b=$(tps "$base_port" "$mode")
      [ "${b:-0}" -gt "$best_b" ] && best_b=$b
    fi
  done
  if [ -n "$BASELINE_BIN" ]; then
    printf '%-10s %12s %12s %8s %12s %10s\n' "$mode" "$best_d" "$best_p" "$(ratio "$best_p" "$best_d")" "$best_b" "$(ratio "$best_p" "$best_b")"
  else
    printf '%-10s %12s %12s %8s\n' "$mode" "$best_d" "$best_p" "$(ratio "$best_p" "$best_d")"
  fi
done
