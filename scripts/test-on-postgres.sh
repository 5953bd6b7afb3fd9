#!/usr/bin/env bash
# Runs the API tests and the property model on PostgreSQL instead of SQLite:
# starts a throwaway cluster in a temporary folder (Debian's postgresql
# packages; as the postgres user when run as root, which PostgreSQL
# refuses; fsync on), points WALLET_TEST_POSTGRES at it, runs
#   cargo test --no-fail-fast --test api --test properties "$@"
# and stops the cluster whatever the outcome. Tests of what only a SQLite
# file has print "SKIPPED on PostgreSQL".
#
#   scripts/test-on-postgres.sh            # the whole portable suite
#   scripts/test-on-postgres.sh holds      # a filter, as cargo test takes
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "${bin}" ] || [ ! -x "${bin}/initdb" ]; then
    echo "PostgreSQL's server is not installed (apt-get install postgresql)" >&2
    exit 1
fi
dir=$(mktemp -d)
run_as_server=()
if [ "$(id -u)" = 0 ]; then
    chown postgres "${dir}"
    run_as_server=(runuser -u postgres --)
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
stop() {
    "${run_as_server[@]}" "${bin}/pg_ctl" -D "${dir}/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "${dir}"
}
trap stop EXIT
"${run_as_server[@]}" "${bin}/initdb" -D "${dir}/data" -U wallet -A trust --no-sync >/dev/null
# Each test's servers hold a few connections; the suite runs tests two at a
# time per core.
"${run_as_server[@]}" "${bin}/pg_ctl" -D "${dir}/data" -l "${dir}/server.log" -w \
    -o "-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=400" \
    start >/dev/null
export WALLET_TEST_POSTGRES="postgres://wallet@127.0.0.1:${port}"
# Without arguments: every test but those that start clusters of their own
# (postgres::, instances::), which `cargo test` runs already.
if [ "$#" -eq 0 ]; then
    set -- -- --skip postgres:: --skip instances::
fi
echo "== cargo test --no-fail-fast --test api --test properties $* (on PostgreSQL at ${WALLET_TEST_POSTGRES})"
cargo test --no-fail-fast --test api --test properties "$@"
