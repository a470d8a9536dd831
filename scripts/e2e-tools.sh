#!/usr/bin/env bash
# scripts/e2e-tools.sh — installs the migration tools the end-to-end tests (tests/e2e) drive,
# pinned, under target/e2e-tools/, and prints the directory holding their programs.
#
# Usage: scripts/e2e-tools.sh python|node|sqlx|diesel
#
#   python  a venv with Alembic (SQLAlchemy + psycopg 3) and Django (+ psycopg 2)  -> .../python/bin
#   node    knex + pg, node-pg-migrate, dbmate (its npm package)                  -> .../node/node_modules/.bin
#   sqlx    sqlx-cli, postgres only                                                -> .../sqlx/bin
#   diesel  diesel_cli, postgres only (needs libpq-dev: installed with apt when root) -> .../diesel/bin
#
# Each component is installed once: a stamp file records the pinned versions, and a rerun with
# the same pins only prints the path. Changing a pin below reinstalls that component.
# The tests call this script themselves (tests/e2e/harness.rs), so `cargo test --test e2e`
# works alone; scripts/test.sh needs nothing more.

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD/target/e2e-tools"
mkdir -p "$root"

# Pins. Bump deliberately: the tests assert on these tools' output.
PY_PINS="alembic==1.20.1 SQLAlchemy==2.1.9 psycopg[binary]==3.3.9 Django==5.2.19 psycopg2-binary==2.9.13"
NODE_PINS='"knex": "3.3.0", "pg": "8.23.1", "node-pg-migrate": "9.0.0", "dbmate": "2.36.0"'
SQLX_PIN="0.9.0"
DIESEL_PIN="2.3.14"

log() { echo "e2e-tools: $*" >&2; }
die() { log "error: $*"; exit 1; }

# stamp_ok DIR SPEC: the component in DIR was installed with SPEC.
stamp_ok() { [[ -f "$1/.stamp" && "$(cat "$1/.stamp")" == "$2" ]]; }
stamp() { printf '%s' "$2" >"$1/.stamp"; }

# apt_get PACKAGE...: installs Debian packages when run as root (as the test command does for
# PostgreSQL); otherwise says what to install.
apt_get() {
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing $* with apt-get"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2 ||
            { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2; }
    else
        die "needed: $* (sudo apt-get install $*)"
    fi
}

# A lock per component, so parallel tests install it once.
lock() {
    exec 9>"$root/.$1.lock"
    flock 9
}

install_python() {
    local dir="$root/python" spec="$PY_PINS"
    lock python
    if ! stamp_ok "$dir" "$spec"; then
        command -v python3 >/dev/null || apt_get python3 python3-venv
        log "installing $spec into $dir"
        rm -rf "$dir"
        python3 -m venv "$dir" 2>/dev/null || { rm -rf "$dir" && apt_get python3-venv && python3 -m venv "$dir"; } ||
            die "python3 -m venv failed"
        # shellcheck disable=SC2086
        "$dir/bin/pip" install --quiet --disable-pip-version-check $spec >&2
        stamp "$dir" "$spec"
    fi
    echo "$dir/bin"
}

install_node() {
    local dir="$root/node" spec="$NODE_PINS"
    lock node
    if ! stamp_ok "$dir" "$spec"; then
        # node-pg-migrate 9 needs Node.js 20.11 or newer; older distributions' nodejs is older.
        command -v npm >/dev/null || apt_get nodejs npm
        log "installing $spec into $dir"
        rm -rf "$dir"
        mkdir -p "$dir"
        printf '{ "name": "ddlgate-e2e-tools", "private": true, "dependencies": { %s } }\n' "$spec" >"$dir/package.json"
        (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >&2)
        stamp "$dir" "$spec"
    fi
    echo "$dir/node_modules/.bin"
}

# cargo_tool NAME CRATE VERSION FEATURES
cargo_tool() {
    local name="$1" crate="$2" version="$3" features="$4"
    local dir="$root/$name" spec="$crate@$version $features debug"
    lock "$name"
    if ! stamp_ok "$dir" "$spec"; then
        log "installing $spec into $dir (compiles from crates.io: a few minutes the first time)"
        rm -rf "$dir/bin" "$dir/.stamp"
        # A debug build: the tests need the tools' behaviour, not their speed, and it compiles
        # in about 60% of the time of a release build.
        cargo install --quiet --locked --debug "$crate" --version "=$version" \
            --no-default-features --features "$features" \
            --root "$dir" --target-dir "$root/build-$name" >&2
        rm -rf "$root/build-$name"
        stamp "$dir" "$spec"
    fi
    echo "$dir/bin"
}

ensure_libpq_dev() {
    if command -v pg_config >/dev/null 2>&1 && [[ -e "$(pg_config --includedir)/libpq-fe.h" ]]; then
        return
    fi
    apt_get libpq-dev
}

case "${1:-}" in
    python) install_python ;;
    node) install_node ;;
    sqlx) cargo_tool sqlx sqlx-cli "$SQLX_PIN" postgres ;;
    diesel)
        ensure_libpq_dev
        cargo_tool diesel diesel_cli "$DIESEL_PIN" postgres
        ;;
    *) die "usage: $0 python|node|sqlx|diesel" ;;
esac
