#!/usr/bin/env bash
# scripts/replay-migrations.sh — replay a real migration history through ddlgate.
#
# Starts a throwaway PostgreSQL cluster (trust auth, its own temp directory and
# free ports) and a ddlgate in its DEFAULT configuration (no config file, admin
# endpoint disabled) in front of it, then applies every *.sql file of DIR in
# sorted (C-locale) order, one transaction per file, the way most migration
# tools do:
#
#     psql -X -v ON_ERROR_STOP=1 -1 -f FILE        (through ddlgate)
#
# When ddlgate refuses a file, its SQLSTATE, rule(s) and message are recorded
# and the same file is then applied DIRECTLY to the database, so that later
# files still find their prerequisites. A file that fails directly too is an
# error of the history itself (reported as `error`), not a ddlgate block.
#
# Usage: scripts/replay-migrations.sh DIR_WITH_SQL_FILES [--ddlgate BIN] [--out DIR]
#                                                        [--setup FILE] [--keep]
#   --ddlgate BIN  ddlgate binary (default: target/debug/ddlgate, else target/release/ddlgate)
#   --out DIR      where to write results.tsv and one .log per file
#                  (default: a new directory under /tmp, printed at the end)
#   --setup FILE   SQL applied directly before the replay (extensions, roles, …)
#   --keep         do not stop the cluster and ddlgate, nor delete the cluster
#
# Output: a table on stdout, one row per file: file, outcome, rule, where outcome is
#   ok        applied through ddlgate
#   blocked   refused by ddlgate (rule = the DG… rule ids named in the error), then applied directly
#   error     failed through ddlgate for a reason of the server, and failed directly too
#   gatefail  failed through ddlgate without naming a rule, but applies directly
#             (counted as blocked)
#   error*    refused by ddlgate and then failed directly too
# followed by the totals. results.tsv holds the same rows plus the first error line.
# Environment: DDLGATE_PG_BINDIR (PostgreSQL bin directory; otherwise found as
# scripts/test.sh does), DDLGATE_PG_USER (account for initdb/postgres when run as
# root; default postgres).
# Exit status: 0 when the replay ran (whatever was blocked), 1 on set-up errors.

set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/pg-env.sh
source "$repo/scripts/pg-env.sh"

usage() {
    sed -n "/^# Usage:/,/^#   --keep/p" "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 1
}

dir="" ddlgate="" out="" setup="" keep=false
while [[ $# -gt 0 ]]; do
    case "$1" in
    --ddlgate) ddlgate="${2:?--ddlgate needs a value}"; shift 2 ;;
    --out) out="${2:?--out needs a value}"; shift 2 ;;
    --setup) setup="${2:?--setup needs a value}"; shift 2 ;;
    --keep) keep=true; shift ;;
    -h | --help) usage ;;
    -*) die "unknown option $1" ;;
    *) [[ -z "$dir" ]] || usage; dir="$1"; shift ;;
    esac
done
[[ -n "$dir" && -d "$dir" ]] || usage
dir="$(cd "$dir" && pwd)"

if [[ -z "$ddlgate" ]]; then
    for c in "$repo/target/debug/ddlgate" "$repo/target/release/ddlgate"; do
        [[ -x "$c" ]] && { ddlgate="$c"; break; }
    done
    [[ -n "$ddlgate" ]] || die "no ddlgate binary: run cargo build, or pass --ddlgate BIN"
fi
[[ -x "$ddlgate" ]] || die "$ddlgate is not executable"

if [[ -n "${DDLGATE_PG_BINDIR:-}" ]]; then
    bindir="$DDLGATE_PG_BINDIR"
else
    bindir="$(find_bindir)" || die "no PostgreSQL server binaries; set DDLGATE_PG_BINDIR"
fi
has_server "$bindir" || die "$bindir does not contain initdb and postgres"
psql="$(find_program "$bindir" psql)" || die "psql not found"

# Run as the unprivileged account when we are root (initdb/postgres refuse root).
pguser="$(id -un)"
as_pg() { "$@"; }
if is_root; then
    pguser="${DDLGATE_PG_USER:-postgres}"
    id "$pguser" >/dev/null 2>&1 || die "user $pguser does not exist (set DDLGATE_PG_USER)"
    as_pg() { runuser -u "$pguser" -- "$@"; }
fi

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local p
    for ((p = $1; p < $1 + 200; p++)); do
        port_free "$p" && { echo "$p"; return 0; }
    done
    return 1
}

files=()
while IFS= read -r f; do files+=("$f"); done < <(cd "$dir" && find . -maxdepth 1 -type f -name '*.sql' -printf '%f\n' | LC_ALL=C sort)
[[ ${#files[@]} -gt 0 ]] || die "no *.sql files in $dir"

work="$(mktemp -d /tmp/ddlgate-replay.XXXXXX)"
chmod 755 "$work"
[[ -n "$out" ]] || out="$work/out"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
is_root && chown "$pguser" "$work"
# The cluster's user must read the files (psql runs as that user).
copy="$work/sql"
mkdir -p "$copy"
for f in "${files[@]}"; do cp "$dir/$f" "$copy/$f"; done
[[ -z "$setup" ]] || cp "$setup" "$work/setup.sql"
chmod -R a+rX "$work"

pg_port="$(free_port 55432)" || die "no free port for PostgreSQL"
pgdata="$work/data"
gate_pid=""
cleanup() {
    if $keep; then
        log "kept: cluster $pgdata (port $pg_port), ddlgate pid ${gate_pid:-none}"
        return
    fi
    [[ -z "$gate_pid" ]] || kill "$gate_pid" 2>/dev/null || true
    as_pg "$bindir/pg_ctl" -D "$pgdata" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$pgdata" "$copy"
}
trap cleanup EXIT

as_pg "$bindir/initdb" -D "$pgdata" -A trust -U "$pguser" >"$work/initdb.log" 2>&1 || die "initdb failed, see $work/initdb.log"
as_pg "$bindir/pg_ctl" -D "$pgdata" -l "$work/postgres.log" -w \
    -o "-p $pg_port -c listen_addresses=127.0.0.1 -k $work -c fsync=off" start >/dev/null ||
    die "postgres failed to start, see $work/postgres.log"

db=replay
direct=(as_pg "$psql" -X -h 127.0.0.1 -p "$pg_port" -U "$pguser")
"${direct[@]}" -d postgres -qc "CREATE DATABASE $db" >/dev/null
if [[ -n "$setup" ]]; then
    "${direct[@]}" -d "$db" -v ON_ERROR_STOP=1 -q -f "$work/setup.sql" >"$out/_setup.log" 2>&1 ||
        die "--setup failed, see $out/_setup.log"
fi

gate_port="$(free_port $((pg_port + 1)))" || die "no free port for ddlgate"
DDLGATE__ADMIN__ENABLED=false "$ddlgate" --upstream "127.0.0.1:$pg_port" --listen "127.0.0.1:$gate_port" \
    >"$out/_ddlgate.log" 2>&1 &
gate_pid=$!
for _ in $(seq 100); do
    as_pg "$bindir/pg_isready" -q -h 127.0.0.1 -p "$gate_port" && break
    kill -0 "$gate_pid" 2>/dev/null || die "ddlgate exited, see $out/_ddlgate.log"
    sleep 0.1
done
as_pg "$bindir/pg_isready" -q -h 127.0.0.1 -p "$gate_port" || die "ddlgate does not answer on $gate_port"

apply() { # port file logfile
    as_pg "$psql" -X -q -h 127.0.0.1 -p "$1" -U "$pguser" -d "$db" -v ON_ERROR_STOP=1 \
        -v VERBOSITY=verbose -1 -f "$copy/$2" >"$3" 2>&1
}

printf '%s\t%s\t%s\t%s\n' file outcome rule first_error >"$out/results.tsv"
n_ok=0 n_blocked=0 n_error=0
for f in "${files[@]}"; do
    logf="$out/${f%.sql}.log"
    rule="" first=""
    if apply "$gate_port" "$f" "$logf"; then
        outcome=ok
        n_ok=$((n_ok + 1))
    else
        first="$(grep -m1 'ERROR:' "$logf" | sed 's/.*ERROR: *//' | cut -c1-200 || true)"
        # A ddlgate block names its rule ids (DG001, …) in the error; the server's own
        # errors do not.
        rule="$(grep -A3 'ERROR:' "$logf" | grep -o 'DG[0-9][0-9][0-9]' | sort -u | paste -sd, - || true)"
        if [[ -n "$rule" ]] || grep -q 'ddlgate' <<<"$first"; then
            outcome=blocked
            [[ -n "$rule" ]] || rule="(none named)"
        else
            outcome=error
        fi
        if apply "$pg_port" "$f" "$logf.direct"; then
            # Failed through ddlgate only, without naming a rule: still ddlgate's doing.
            [[ "$outcome" == blocked ]] || { outcome=gatefail; rule="(none named)"; }
        else
            [[ "$outcome" == blocked ]] && outcome="error*"
        fi
        case "$outcome" in
        blocked | gatefail) n_blocked=$((n_blocked + 1)) ;;
        *) n_error=$((n_error + 1)) ;;
        esac
    fi
    printf '%s\t%s\t%s\t%s\n' "$f" "$outcome" "${rule:--}" "${first:--}" >>"$out/results.tsv"
done

printf '%-70s %-8s %s\n' FILE OUTCOME RULE
tail -n +2 "$out/results.tsv" | while IFS=$'\t' read -r f o r _; do
    printf '%-70s %-8s %s\n' "$f" "$o" "$r"
done
printf '\nfiles: %d  ok: %d  blocked: %d  error: %d\n' "${#files[@]}" "$n_ok" "$n_blocked" "$n_error"
printf 'ddlgate: %s (%s)\nresults: %s/results.tsv (per-file logs alongside)\n' \
    "$ddlgate" "$("$ddlgate" --version 2>/dev/null || echo '?')" "$out"
