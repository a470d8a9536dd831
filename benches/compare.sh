#!/usr/bin/env bash
# Side-by-side relay cost: pgbench -S against one throwaway PostgreSQL cluster directly, through
# PgBouncer (session mode) and through ddlgate, interleaved (direct, PgBouncer, ddlgate, direct,
# …) so that the machine's noise hits all three alike.
#
#   benches/compare.sh                            # the full table (about 15 minutes)
#   SMOKE=1 benches/compare.sh                    # about 3 s per point, 1 and 8 clients
#   CLIENTS="1 8" PROTOCOLS=prepared ROUNDS=5 benches/compare.sh
#   FLOOR=1 CLIENTS=1 benches/compare.sh          # also the floor relay (benches/floor_relay.rs)
#   PIN_CPU=0 benches/compare.sh                  # every process on CPU 0: CPU cost alone
#
# For every point (clients × protocol) it prints, per target, the median TPS of the rounds, the
# p50 and p99 latency of every transaction of those rounds (pgbench's per-transaction log), and
# the ratios ddlgate/direct, PgBouncer/direct and ddlgate/PgBouncer. Then, for both proxies: CPU
# per transaction (utime + stime of the proxy process from /proc/PID/stat over the runs, divided
# by the transactions they served) and system calls per transaction (`strace -c -f` attached
# over a fixed number of transactions at one client, prepared protocol).
#
# Environment: CLIENTS (default "1 8 64"), PROTOCOLS ("simple extended prepared"),
# SECONDS_PER_RUN (10), ROUNDS (3), SCALE (10), STRACE_TRANSACTIONS (5000; 0 skips strace),
# BIN (the ddlgate binary; default: a release build of this checkout, with SMOKE=1 the `smoke`
# profile's), SMOKE=1 (CLIENTS="1 8",
# SECONDS_PER_RUN=3, ROUNDS=1, STRACE_TRANSACTIONS=2000), FLOOR=1 (a fourth target in every
# round: `benches/floor_relay.rs`, the least any relay process does — a blocking recv and send
# per message, one thread per direction — built with rustc; at one client its ratio to direct
# is about the most a relay process on this machine can reach), PIN_CPU=N (PostgreSQL, both
# proxies, the floor relay and pgbench all run on CPU N only: no wake-up crosses CPUs, so TPS
# measures what each path costs in CPU; on a virtual machine, a wake-up of an idle virtual CPU
# costs tens of microseconds and decides the one-client figures otherwise), BOUNCER_POOL
# (fresh: PgBouncer closes a server connection idle for a second — `server_idle_timeout = 1` —
# so every round of every target starts on new backends, as a direct connection does; warm:
# PgBouncer's default, where its rounds after the first reuse backends that already mapped
# shared memory and filled their caches: a pooler's real advantage for clients that reconnect,
# but not relay cost). PgBouncer is installed with apt-get
# when it is missing and we are root; otherwise the script says how to install it.
# No timing is asserted: the figures are for people to read.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg-env.sh

if [ "${SMOKE:-0}" = 1 ]; then
  CLIENTS=${CLIENTS:-"1 8"}
  SECONDS_PER_RUN=${SECONDS_PER_RUN:-3}
  ROUNDS=${ROUNDS:-1}
  STRACE_TRANSACTIONS=${STRACE_TRANSACTIONS:-2000}
fi
CLIENTS=${CLIENTS:-"1 8 64"}
PROTOCOLS=${PROTOCOLS:-"simple extended prepared"}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
ROUNDS=${ROUNDS:-3}
SCALE=${SCALE:-10}
STRACE_TRANSACTIONS=${STRACE_TRANSACTIONS:-5000}

DDLGATE_PG_BINDIR="${DDLGATE_PG_BINDIR:-$(find_bindir)}" || { not_installed_message; exit 1; }
PGBENCH=$(find_program "$DDLGATE_PG_BINDIR" pgbench) || die "pgbench not found (Debian: apt-get install postgresql-contrib)"
ensure_pg_user

if ! PGBOUNCER=$(command -v pgbouncer || ls /usr/sbin/pgbouncer 2>/dev/null); then
  if is_root; then
    log "PgBouncer not found; installing it with apt-get"
    apt_install pgbouncer
    # Debian's package starts its own instance on port 6432; this script runs its own.
    systemctl stop pgbouncer >/dev/null 2>&1 || service pgbouncer stop >/dev/null 2>&1 || true
    PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
  else
    die "PgBouncer is not installed. On Debian/Ubuntu: sudo apt-get install pgbouncer"
  fi
fi
[ -x "$PGBOUNCER" ] || die "PgBouncer is not installed. On Debian/Ubuntu: sudo apt-get install pgbouncer"

if [ -z "${BIN:-}" ]; then
  if [ "${SMOKE:-0}" = 1 ]; then
    # Release code without debug information (Cargo.toml's `smoke` profile): quicker to build.
    cargo build --profile smoke --quiet
    BIN=target/smoke/ddlgate
  else
    cargo build --release --quiet
    BIN=target/release/ddlgate
  fi
fi

pin=()
[ -n "${PIN_CPU:-}" ] && pin=(taskset -c "$PIN_CPU")
FLOOR=${FLOOR:-0}

case "${BOUNCER_POOL:=fresh}" in
  fresh) bouncer_idle=1 ;;
  warm) bouncer_idle=600 ;;
  *) die "BOUNCER_POOL must be fresh or warm, got '$BOUNCER_POOL'" ;;
esac

max_clients=0
for c in $CLIENTS; do [ "$c" -gt "$max_clients" ] && max_clients=$c; done

work=$(mktemp -d /tmp/ddlgate-compare.XXXXXX)
chmod 755 "$work"
pg_port=$(free_port)
bouncer_port=$(free_port)
proxy_port=$(free_port)
proxy_pid=
floor_pid=
cleanup() {
  [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null || true
  [ -n "$floor_pid" ] && kill "$floor_pid" 2>/dev/null || true
  [ -f "$work/pgbouncer.pid" ] && kill "$(cat "$work/pgbouncer.pid")" 2>/dev/null || true
  as_pg_user "$DDLGATE_PG_BINDIR/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

start_bench_cluster "$work" "$pg_port" $((2 * max_clients + 20)) "$SCALE" "${PIN_CPU:-}"

# PgBouncer in session mode, as the cluster owner (it refuses to run as root), trusting the
# local user like the cluster does.
echo '"bench" ""' > "$work/users.txt"
cat > "$work/pgbouncer.ini" <<EOF
[databases]
postgres = host=127.0.0.1 port=$pg_port dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
unix_socket_dir =
auth_type = trust
auth_file = $work/users.txt
pool_mode = session
max_client_conn = $((max_clients + 10))
default_pool_size = $((max_clients + 10))
server_idle_timeout = $bouncer_idle
logfile = $work/pgbouncer.log
pidfile = $work/pgbouncer.pid
EOF
chown_to_pg_user "$work"
as_pg_user "${pin[@]}" "$PGBOUNCER" -d "$work/pgbouncer.ini"

# In a session of its own, as PgBouncer (`-d`) and PostgreSQL (`pg_ctl`) are: with the kernel's
# scheduler autogroups (on by default), a process started from this script would otherwise share
# its CPU share with pgbench, and the two proxies would not run on the same footing.
DDLGATE__ADMIN__LISTEN="127.0.0.1:$(free_port)" DDLGATE__LIMITS__MAX_CLIENTS=$((max_clients + 10)) \
  RUST_LOG=warn setsid "${pin[@]}" "$BIN" --listen "127.0.0.1:$proxy_port" --upstream "127.0.0.1:$pg_port" &
proxy_pid=$!
targets="direct pgbouncer ddlgate"
ports=("$bouncer_port" "$proxy_port")
if [ "$FLOOR" = 1 ]; then
  floor_port=$(free_port)
  rustc --edition 2024 -C opt-level=3 -o "$work/floor_relay" benches/floor_relay.rs
  setsid "${pin[@]}" "$work/floor_relay" "127.0.0.1:$floor_port" "127.0.0.1:$pg_port" &
  floor_pid=$!
  targets="$targets floor"
  ports+=("$floor_port")
fi
for port in "${ports[@]}"; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
bouncer_pid=$(cat "$work/pgbouncer.pid")

# CPU ticks (utime + stime) a process has used so far.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# One pgbench run: prints "tps transactions", leaves per-transaction latencies (µs) in $work/lat.
run() { # port mode clients
  local dir="$work/log" threads=$(( $3 < 2 ? $3 : 2 ))
  rm -rf "$dir"; mkdir -p "$dir"
  local out
  out=$(cd "$dir" && "${pin[@]}" "$PGBENCH" -h 127.0.0.1 -p "$1" -U bench -S -M "$2" -c "$3" -j "$threads" \
    -T "$SECONDS_PER_RUN" -n -l --log-prefix=tx postgres 2>/dev/null)
  cat "$dir"/tx* 2>/dev/null | awk '{ print $3 }' > "$work/lat"
  echo "$(awk '/^tps = / { printf "%.0f", $3 }' <<<"$out") $(awk '/^number of transactions actually processed/ { print $NF }' <<<"$out" | cut -d/ -f1)"
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
percentile() { # p file (µs) → ms
  sort -n "$2" | awk -v p="$1" '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit } i = int(NR * p / 100 + 0.5); if (i < 1) i = 1; if (i > NR) i = NR; printf "%.3f", v[i] / 1000 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

hz=$(getconf CLK_TCK)
declare -A cpu_ticks=([pgbouncer]=0 [ddlgate]=0) cpu_tx=([pgbouncer]=0 [ddlgate]=0)

echo "relay cost, side by side: pgbench -S, scale $SCALE, ${SECONDS_PER_RUN}s × $ROUNDS round(s) interleaved per point; $(nproc) cores${PIN_CPU:+, every process on CPU $PIN_CPU}; PostgreSQL $("$DDLGATE_PG_BINDIR/postgres" --version | awk '{print $3}'), PgBouncer $("$PGBOUNCER" --version 2>/dev/null | awk 'NR == 1 { print $NF }') (session mode, $BOUNCER_POOL backends), ddlgate $BIN"
floor_head=
[ "$FLOOR" = 1 ] && floor_head=$(printf ' | %9s %13s %7s' floor "p50/p99 floor" "fl/dir")
printf '%-8s %-8s | %9s %9s %9s | %13s %13s %13s | %7s %7s %7s%s\n' clients mode \
  direct pgbouncer ddlgate "p50/p99 dir" "p50/p99 pgb" "p50/p99 ddlg" "dg/dir" "pgb/dir" "dg/pgb" \
  "$floor_head"
for clients in $CLIENTS; do
  for mode in $PROTOCOLS; do
    declare -A tps_list=() lat_file=()
    for target in $targets; do
      tps_list[$target]=""
      lat_file[$target]="$work/lat.$target"
      : > "${lat_file[$target]}"
    done
    for _ in $(seq "$ROUNDS"); do
      for target in $targets; do
        case $target in
          direct) port=$pg_port; pid= ;;
          floor) port=$floor_port; pid= ;;
          pgbouncer) port=$bouncer_port; pid=$bouncer_pid ;;
          ddlgate) port=$proxy_port; pid=$proxy_pid ;;
        esac
        [ -n "$pid" ] && before=$(ticks "$pid")
        read -r tps tx < <(run "$port" "$mode" "$clients")
        if [ -n "$pid" ]; then
          cpu_ticks[$target]=$(( ${cpu_ticks[$target]} + $(ticks "$pid") - before ))
          cpu_tx[$target]=$(( ${cpu_tx[$target]} + ${tx:-0} ))
        fi
        tps_list[$target]+="${tps:-0} "
        cat "$work/lat" >> "${lat_file[$target]}"
      done
    done
    d=$(tr ' ' '\n' <<<"${tps_list[direct]}" | grep . | median)
    b=$(tr ' ' '\n' <<<"${tps_list[pgbouncer]}" | grep . | median)
    p=$(tr ' ' '\n' <<<"${tps_list[ddlgate]}" | grep . | median)
    lat() { echo "$(percentile 50 "${lat_file[$1]}")/$(percentile 99 "${lat_file[$1]}")"; }
    floor_cols=
    if [ "$FLOOR" = 1 ]; then
      f=$(tr ' ' '\n' <<<"${tps_list[floor]}" | grep . | median)
      floor_cols=$(printf ' | %9s %13s %7s' "$f" "$(lat floor)" "$(ratio "$f" "$d")")
    fi
    printf '%-8s %-8s | %9s %9s %9s | %13s %13s %13s | %7s %7s %7s%s\n' "$clients" "$mode" \
      "$d" "$b" "$p" "$(lat direct)" "$(lat pgbouncer)" "$(lat ddlgate)" \
      "$(ratio "$p" "$d")" "$(ratio "$b" "$d")" "$(ratio "$p" "$b")" "$floor_cols"
  done
done
echo "(TPS: median of the rounds; latency in ms over every transaction of the rounds; ratios of median TPS)"

echo
printf '%-10s %16s %16s\n' proxy "cpu_us_per_tx" "syscalls_per_tx"
for target in pgbouncer ddlgate; do
  cpu=$(awk -v t="${cpu_ticks[$target]}" -v n="${cpu_tx[$target]}" -v hz="$hz" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "-" }')
  sys="-"
  if [ "$STRACE_TRANSACTIONS" -gt 0 ]; then
    pid=$([ "$target" = pgbouncer ] && echo "$bouncer_pid" || echo "$proxy_pid")
    port=$([ "$target" = pgbouncer ] && echo "$bouncer_port" || echo "$proxy_port")
    strace -c -f -p "$pid" -o "$work/strace.$target" 2>/dev/null &
    strace_pid=$!
    sleep 0.5
    "${pin[@]}" "$PGBENCH" -h 127.0.0.1 -p "$port" -U bench -S -M prepared -c 1 -j 1 -t "$STRACE_TRANSACTIONS" -n postgres >/dev/null 2>&1
    kill -INT "$strace_pid" 2>/dev/null || true
    wait "$strace_pid" 2>/dev/null || true
    sys=$(awk -v n="$STRACE_TRANSACTIONS" '/ total$/ { printf "%.1f", $4 / n }' "$work/strace.$target" 2>/dev/null)
    [ -n "$sys" ] || sys="-"
  fi
  printf '%-10s %16s %16s\n' "$target" "$cpu" "$sys"
done
echo "(CPU: utime+stime of the proxy process over all runs above ÷ transactions served; syscalls: strace -c -f over $STRACE_TRANSACTIONS prepared transactions at 1 client, connection set-up included)"
