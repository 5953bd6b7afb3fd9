#!/usr/bin/env bash
# Spends, hot-user spends and balance reads, over HTTP, against one SQLite
# server and against one, two and three instances sharing one PostgreSQL
# database (synchronous_commit on, fsync on), in the same run on the same
# machine: the figures of the README's "PostgreSQL" section.
#
#   scripts/bench-instances.sh [BINARY] [DURATION] [CONNECTIONS]
#   (defaults: target/release/wallet, 5s, 64)
#
# Each setup gets a fresh database; the instances and the bench share the
# machine's cores, so the figures say what one machine does, not what
# separate machines would. Needs Debian's postgresql packages.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-target/release/wallet}
duration=${2:-5s}
connections=${3:-64}

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "${bin}/initdb" ] || { echo "PostgreSQL's server is not installed" >&2; exit 1; }
dir=$(mktemp -d)
as_server=()
if [ "$(id -u)" = 0 ]; then chown postgres "${dir}"; as_server=(runuser -u postgres --); fi
# Servers are started inside $(...), a subshell, so their pids go to a file
# (a variable set there would be lost) and are stopped from it.
pid_file="${dir}/servers"
stop_servers() {
    if [ -f "${pid_file}" ]; then
        while read -r pid; do kill "${pid}" 2>/dev/null || true; done <"${pid_file}"
        while read -r pid; do
            while kill -0 "${pid}" 2>/dev/null; do sleep 0.1; done
        done <"${pid_file}"
        rm -f "${pid_file}"
    fi
}
cleanup() {
    stop_servers
    "${as_server[@]}" "${bin}/pg_ctl" -D "${dir}/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "${dir}"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pg_port=$(free_port)
"${as_server[@]}" "${bin}/initdb" -D "${dir}/data" -U wallet -A trust >/dev/null
"${as_server[@]}" "${bin}/pg_ctl" -D "${dir}/data" -l "${dir}/pg.log" -w \
    -o "-p ${pg_port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c max_connections=200 -c shared_buffers=256MB" \
    start >/dev/null

# Starts one `wallet serve` on $1 (a --db value); prints its URL.
serve() {
    local port; port=$(free_port)
    "${binary}" serve --db "$1" --bind "127.0.0.1:${port}" >"${dir}/serve-${port}.log" 2>&1 &
    echo "$!" >>"${pid_file}"
    for _ in $(seq 1 100); do
        curl -fs "http://127.0.0.1:${port}/health" >/dev/null 2>&1 && { echo "http://127.0.0.1:${port}"; return; }
        sleep 0.1
    done
    echo "a server did not start: $(tail -n 3 "${dir}/serve-${port}.log")" >&2
    exit 1
}

bench() {
    local label=$1 urls=$2
    echo "== ${label}"
    "${binary}" bench --url "${urls}" --allow-writes --scenarios spend,hot,read \
        --duration "${duration}" --connections "${connections}" --users 1000
}

bench "SQLite, one server" "$(serve "${dir}/wallet.db")"
stop_servers
for instances in 1 2 3; do
    db="bench${instances}"
    "${bin}/psql" -h 127.0.0.1 -p "${pg_port}" -U wallet -d postgres -q -c "CREATE DATABASE ${db}"
    url="postgres://wallet@127.0.0.1:${pg_port}/${db}"
    first=$(serve "${url}")
    urls=${first}
    for _ in $(seq 2 "${instances}"); do urls="${urls},$(serve "${url}")"; done
    bench "PostgreSQL, ${instances} instance(s)" "${urls}"
    "${binary}" verify --db "${url}" | tail -n 1
    stop_servers
done
