#!/usr/bin/env bash
# scripts/fuzz.sh — runs the cargo-fuzz targets of fuzz/ (see fuzz/README.md).
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#   SECONDS  how long each target runs (default 60)
#   TARGET   which targets (default: every target `cargo fuzz list` names)
# Environment: FUZZ_RUNS (stop a target after this many executions instead, e.g. 10000000),
#              FUZZ_NICE (default 19: fuzzing never competes with other work on the machine),
#              FUZZ_ARGS (extra libFuzzer flags),
#              FUZZ_SANITIZER (default address; "none" runs faster, for the long
#              10-million-execution runs: ddlgate's fuzzed code is safe Rust).
# Installs cargo-fuzz (and a nightly toolchain, with rustup) when missing. Runs the targets one
# after another, each an optimised (-O) AddressSanitizer build, with -timeout=1 (an input
# taking over a second is a hang) and -rss_limit_mb=512, and prints per target the executions,
# executions per second and peak RSS libFuzzer reported. Exits non-zero when a target found a
# crash, a hang or ran out of memory (the input is in fuzz/artifacts/<target>/).

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:-60}"
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS must be a number, got '$seconds'" >&2; exit 2; }
shift || true
nice_level="${FUZZ_NICE:-19}"
sanitizer="${FUZZ_SANITIZER:-address}"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing a nightly toolchain (libFuzzer needs -Zsanitizer)" >&2
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# Longest input per target: SQL and catalog answers get room for real statements; frames and
# startup packets need little more than a few headers.
max_len() {
    case "$1" in
        startup_packets | preauth_frames | frames) echo 4096 ;;
        *) echo 16384 ;;
    esac
}

nice -n "$nice_level" cargo +nightly fuzz build -O -s "$sanitizer"

logdir="fuzz/logs"
mkdir -p "$logdir"
failed=()
printf '%-16s %12s %10s %8s %s\n' target executions exec/s rss_mb result
for t in "${targets[@]}"; do
    log="$logdir/$t.log"
    limit=(-max_total_time="$seconds")
    if [[ -n "${FUZZ_RUNS:-}" ]]; then
        limit=(-runs="$FUZZ_RUNS")
    fi
    # Seeds stay read-only (new inputs go to a scratch corpus dir that git ignores).
    mkdir -p "fuzz/corpus-local/$t"
    result=ok
    # shellcheck disable=SC2086
    if ! nice -n "$nice_level" cargo +nightly fuzz run -O -s "$sanitizer" "$t" "fuzz/corpus-local/$t" "fuzz/corpus/$t" -- \
        "${limit[@]}" -max_len="$(max_len "$t")" -timeout=1 -rss_limit_mb=512 \
        -print_final_stats=1 ${FUZZ_ARGS:-} >"$log" 2>&1; then
        result="FAILED (see $log and fuzz/artifacts/$t/)"
        failed+=("$t")
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    rss=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    printf '%-16s %12s %10s %8s %s\n' "$t" "${runs:-?}" "${speed:-?}" "${rss:-?}" "$result"
done
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz.sh: failed: ${failed[*]}" >&2
    exit 1
fi
