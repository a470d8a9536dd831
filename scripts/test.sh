#!/usr/bin/env bash
# scripts/test.sh — the project's single test command.
#
# Owns the test prerequisites and the cargo invocation:
#   1. finds PostgreSQL server binaries (same order as tests/common/pg.rs:
#      $DDLGATE_PG_BINDIR, `pg_config --bindir`, highest /usr/lib/postgresql/*/bin)
#      and, when run as root on Debian/Ubuntu, installs them with apt-get;
#   2. as root, provides an unprivileged account for the test clusters
#      (initdb/postgres refuse to run as root) and exports DDLGATE_PG_USER;
#   3. runs `cargo test --all-targets [--locked]` with RUST_TEST_THREADS=N;
#   4. for the whole suite, then prints the relay's cost beside a direct connection and PgBouncer
#      (`SMOKE=1 FLOOR=1 benches/compare.sh`, about two minutes plus a release build; asserts nothing;
#      DDLGATE_SMOKE_BENCH=0 skips it);
#   5. with DDLGATE_FUZZ_SECONDS=N (default 0: off), then runs every cargo-fuzz target for N
#      seconds (`scripts/fuzz.sh N`: installs cargo-fuzz and builds the targets first) and fails
#      on a crash, hang or memory blow-up. Off by default: twelve 60-second runs plus their build
#      do not fit the suite's 15-minute CI budget on two cores; the default suite replays the
#      committed fuzz corpora instead (tests/fuzz_corpus.rs).
#
# Usage: scripts/test.sh [cargo test args] [-- test binary args]
#   e.g. scripts/test.sh harness_selftest
#        scripts/test.sh --test harness_selftest -- --nocapture
# Environment: TEST_THREADS (default 2), DDLGATE_PG_BINDIR, DDLGATE_PG_USER,
#              DDLGATE_SMOKE_BENCH, DDLGATE_FUZZ_SECONDS.
# Exits with cargo's exit code.

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/pg-env.sh
source scripts/pg-env.sh

# --- 1. PostgreSQL binaries ---------------------------------------------------

if [[ -n "${DDLGATE_PG_BINDIR:-}" ]]; then
    has_server "$DDLGATE_PG_BINDIR" ||
        die "DDLGATE_PG_BINDIR=$DDLGATE_PG_BINDIR does not contain initdb and postgres"
    bindir="$DDLGATE_PG_BINDIR"
elif bindir="$(find_bindir)"; then
    :
elif is_root; then
    log "PostgreSQL server binaries not found; installing postgresql and postgresql-client with apt-get"
    apt_install postgresql postgresql-client
    stop_packaged_clusters
    bindir="$(find_bindir)" || die "PostgreSQL was installed but initdb/postgres are still not found"
else
    not_installed_message
    exit 1
fi
export DDLGATE_PG_BINDIR="$bindir"

if ! psql="$(find_program "$bindir" psql)"; then
    if is_root; then
        log "psql not found; installing postgresql-client"
        apt_install postgresql-client
        psql="$(find_program "$bindir" psql)" || die "psql still not found after installing postgresql-client"
    else
        die "psql not found. Install it: sudo apt-get install postgresql-client"
    fi
fi

# pgbench ships with the server package on current Debian/Ubuntu; older
# releases had it in postgresql-contrib. Optional: tests that need it skip or
# fail on their own.
if ! pgbench="$(find_program "$bindir" pgbench)"; then
    if is_root && command -v apt-get >/dev/null 2>&1; then
        log "pgbench not found; trying postgresql-contrib"
        apt_install postgresql-contrib || log "could not install postgresql-contrib (ignored)"
    fi
    pgbench="$(find_program "$bindir" pgbench)" || pgbench="(not found; tests needing it cannot run)"
fi

# --- 2. Unprivileged account for the clusters when running as root -----------

ensure_pg_user

# --- 3. cargo test --------------------------------------------------------------

command -v cargo >/dev/null 2>&1 || die "cargo not found on PATH (install Rust: https://rustup.rs)"

threads="${TEST_THREADS:-2}"
[[ "$threads" =~ ^[1-9][0-9]*$ ]] || die "TEST_THREADS must be a positive integer, got '$threads'"

# Arguments before `--` go to cargo (e.g. a test-name filter), after it to
# the test binaries.
cargo_args=()
test_args=()
after_dashdash=false
for arg in "$@"; do
    if ! $after_dashdash && [[ "$arg" == "--" ]]; then
        after_dashdash=true
    elif $after_dashdash; then
        test_args+=("$arg")
    else
        cargo_args+=("$arg")
    fi
done
# Parallelism goes through RUST_TEST_THREADS rather than --test-threads: libtest reads
# it, and criterion benches (run once in test mode by --all-targets) would reject the flag.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-$threads}"

locked=()
if [[ -f Cargo.lock ]]; then
    locked=(--locked)
fi

log "PostgreSQL: $("$bindir/postgres" --version) (bindir $bindir)"
log "psql: $psql; pgbench: $pgbench"
if is_root; then
    log "running as root; test clusters run as user $DDLGATE_PG_USER"
fi

# The whole suite by default; only the targets named when the caller picks some
# (`--test relay`, `--lib`, …), so a single file really runs alone.
targets=(--all-targets)
for arg in "${cargo_args[@]}"; do
    case "$arg" in
        --test|--test=*|--tests|--lib|--bin|--bin=*|--bins|--bench|--bench=*|--benches|--example|--example=*|--examples|--doc)
            targets=()
            ;;
    esac
done

# The migration tools of tests/e2e, installed (pinned, cached under target/e2e-tools) before
# any test runs: compiling sqlx-cli and diesel_cli while timing-sensitive tests run beside them
# would load the machine under those tests. The e2e tests call the same script themselves
# (a no-op once installed), so `cargo test --test e2e` also works alone.
runs_e2e=false
if [[ ${#targets[@]} -gt 0 ]]; then
    runs_e2e=true
else
    for ((i = 0; i < ${#cargo_args[@]}; i++)); do
        case "${cargo_args[$i]}" in
            --test=e2e | --tests) runs_e2e=true ;;
            --test) [[ "${cargo_args[$((i + 1))]:-}" == e2e ]] && runs_e2e=true ;;
        esac
    done
fi
if $runs_e2e; then
    for component in python node sqlx diesel; do
        log "e2e tools: $component in $(scripts/e2e-tools.sh "$component")"
    done
fi

# Fault injection built in (Cargo feature `failpoints`): tests/steady_panic.rs provokes a panic
# that no client can. Unarmed fail points do nothing.
features=(--features failpoints)
cmd=(cargo test "${targets[@]}" "${features[@]}" "${locked[@]}" "${cargo_args[@]}" -- "${test_args[@]}")
log "running: ${cmd[*]}"
if [[ $# -gt 0 ]]; then
    exec "${cmd[@]}"
fi

# --- 4. Relay cost, side by side (the whole suite only) -----------------------
# A short run of benches/compare.sh after the tests: direct, PgBouncer, an optimised build of
# ddlgate and the floor relay (benches/floor_relay.rs: what any relay process costs) against one
# throwaway cluster, about 3 s per point, ratios printed, nothing asserted
# (timings on a shared machine are for reading, not for failing a build). DDLGATE_SMOKE_BENCH=0
# skips it. The optimised build (Cargo profile `smoke`) compiles at the lowest CPU priority
# while the tests run, on the CPU time they leave idle (they mostly wait for PostgreSQL).
smoke=1
[[ "${DDLGATE_SMOKE_BENCH:-1}" == 0 ]] && smoke=0
smoke_build=
if [[ $smoke == 1 ]]; then
    cargo test "${targets[@]}" "${features[@]}" "${locked[@]}" --no-run
    smoke_log=target/smoke-build.log
    mkdir -p target
    nice -n 19 cargo build --profile smoke "${locked[@]}" >"$smoke_log" 2>&1 &
    smoke_build=$!
fi
status=0
"${cmd[@]}" || status=$?
if [[ $status -ne 0 ]]; then
    [[ -n "$smoke_build" ]] && kill "$smoke_build" 2>/dev/null
    exit "$status"
fi
if [[ $smoke == 0 ]]; then
    :
elif wait "$smoke_build"; then
    log "relay cost smoke run: SMOKE=1 FLOOR=1 BIN=target/smoke/ddlgate benches/compare.sh"
    SMOKE=1 FLOOR=1 BIN=target/smoke/ddlgate benches/compare.sh ||
        log "the smoke benchmark could not run (ignored: it asserts nothing)"
else
    log "the smoke build failed (see $smoke_log); no relay cost figures this run"
fi

# --- 5. Fuzzing (opt-in) ------------------------------------------------------
fuzz_seconds="${DDLGATE_FUZZ_SECONDS:-0}"
if [[ "$fuzz_seconds" =~ ^[1-9][0-9]*$ ]]; then
    log "fuzzing every target for $fuzz_seconds s: scripts/fuzz.sh $fuzz_seconds"
    scripts/fuzz.sh "$fuzz_seconds" || exit $?
fi
