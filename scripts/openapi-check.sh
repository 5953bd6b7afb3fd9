#!/usr/bin/env bash
# The OpenAPI document as outside tools read it (issue 27): redocly lint, then
# schemathesis with every check and its stateful phase against the real
# binary, in open mode (a loopback server with no key yet) and in keyed mode
# (an admin key), each on a fresh database. Any finding fails the script.
#
#   scripts/openapi-check.sh [PATH_TO_WALLET_BINARY]
#
# Default binary: target/release/wallet (CARGO_TARGET_DIR honoured). The
# tools' versions are pinned here; the venv and npm cache live under
# ${OPENAPI_CHECK_HOME:-$HOME/.cache/wallet-openapi-check}, so a second run
# needs no network. Bounded: each schemathesis run stops after
# ${OPENAPI_CHECK_MAX_TIME:-240} seconds whatever it has left; the stateful
# phase runs for ${OPENAPI_CHECK_STATEFUL_TIME:-45} seconds in each mode.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
REDOCLY_VERSION=2.77.0
MAX_EXAMPLES=${OPENAPI_CHECK_MAX_EXAMPLES:-50}
MAX_TIME=${OPENAPI_CHECK_MAX_TIME:-240}
STATEFUL_TIME=${OPENAPI_CHECK_STATEFUL_TIME:-45}
# A fixed seed, so that CI draws the same cases each run and a finding
# replays; OPENAPI_CHECK_SEED=random draws new ones.
SEED=${OPENAPI_CHECK_SEED:-27}

target_dir=${CARGO_TARGET_DIR:-target}
binary=$(realpath "${1:-${target_dir}/release/wallet}")
home=${OPENAPI_CHECK_HOME:-$HOME/.cache/wallet-openapi-check}
here=$(pwd)/scripts/openapi-check

# schemathesis, in a venv of its own (a Debian-managed Python refuses plain
# installs), reinstalled only when the pinned version changes.
venv="${home}/venv-${SCHEMATHESIS_VERSION}"
if ! "${venv}/bin/schemathesis" --version 2>/dev/null | grep -q "${SCHEMATHESIS_VERSION}"; then
    rm -rf "${venv}"
    python3 -m venv "${venv}"
    "${venv}/bin/pip" install --quiet --disable-pip-version-check "schemathesis==${SCHEMATHESIS_VERSION}"
fi

work=$(mktemp -d)
server_pid=""
stop_server() {
    if [ -n "${server_pid}" ]; then
        kill "${server_pid}" 2>/dev/null || true
        wait "${server_pid}" 2>/dev/null || true
        server_pid=""
    fi
}
cleanup() {
    stop_server
    rm -rf "${work}"
}
trap cleanup EXIT

# A free loopback port, asked of the kernel.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_server DB PORT: serve DB on 127.0.0.1:PORT until /health answers.
start_server() {
    "${binary}" serve --db "$1" --bind "127.0.0.1:$2" >"${work}/server-$2.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 100); do
        if curl -fsS "http://127.0.0.1:$2/health" >/dev/null 2>&1; then
            return 0
        fi
        if ! kill -0 "${server_pid}" 2>/dev/null; then
            cat "${work}/server-$2.log"
            echo "openapi-check: the server did not start" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "openapi-check: the server did not answer /health in 10 s" >&2
    exit 1
}

failed=0

echo "== redocly lint (@redocly/cli@${REDOCLY_VERSION})"
port=$(free_port)
start_server "${work}/lint.db" "${port}"
curl -fsS "http://127.0.0.1:${port}/openapi.json" >"${work}/openapi.json"
stop_server
# The ignore file names the findings taken on purpose, each with its reason.
cp "${here}/.redocly.lint-ignore.yaml" "${work}/"
if ! (cd "${work}" && npm_config_cache="${home}/npm" timeout 300 \
    npx --yes "@redocly/cli@${REDOCLY_VERSION}" lint --format=stylish openapi.json); then
    failed=1
fi

# run_schemathesis MODE PORT [ARGS...]: every check and phase, bounded.
run_schemathesis() {
    local mode=$1 port=$2
    shift 2
    echo "== schemathesis ${SCHEMATHESIS_VERSION}, ${mode} mode"
    local seed_args=()
    if [ "${SEED}" != random ]; then
        seed_args=(--seed "${SEED}")
    fi
    # The examples, coverage and fuzzing phases, bounded by examples per
    # operation; then the stateful phase on its own, bounded by time, so
    # that it follows the document's links for long enough to reach the
    # chains they make (write, read it back, reverse it, capture a hold...).
    if ! (cd "${work}/schemathesis" && WALLET_CHECK_MODE="${mode}" timeout "${MAX_TIME}" \
        "${venv}/bin/schemathesis" --config-file schemathesis.toml --no-color run \
        "http://127.0.0.1:${port}/openapi.json" \
        --checks all --phases examples,coverage,fuzzing \
        --max-examples "${MAX_EXAMPLES}" --workers 1 \
        --warnings off "${seed_args[@]}" "$@"); then
        failed=1
    fi
    if ! (cd "${work}/schemathesis" && WALLET_CHECK_MODE="${mode}" timeout "${MAX_TIME}" \
        "${venv}/bin/schemathesis" --config-file schemathesis.toml --no-color run \
        "http://127.0.0.1:${port}/openapi.json" \
        --checks all --phases stateful --max-time "${STATEFUL_TIME}" --workers 1 \
        --warnings off "${seed_args[@]}" "$@"); then
        failed=1
    fi
}

# schemathesis runs in a folder of its own, with its config and hooks, so
# that what it keeps between runs (.schemathesis/) goes with the rest.
mkdir "${work}/schemathesis"
cp "${here}/schemathesis.toml" "${here}/hooks.py" "${work}/schemathesis/"

# Open mode: no key exists, every route answers without one. POST /keys is
# left out: the first key it made would lock the server for the rest of
# the run (API.md, Authentication); keyed mode covers it.
port=$(free_port)
start_server "${work}/open.db" "${port}"
run_schemathesis open "${port}" --exclude-operation-id post_keys
stop_server

# Keyed mode: an admin key made before the server starts; every route needs
# a key, and schemathesis sends this one.
"${binary}" keys create --db "${work}/keyed.db" --name openapi-check --scopes admin \
    >"${work}/admin.key" 2>/dev/null
port=$(free_port)
start_server "${work}/keyed.db" "${port}"
WALLET_CHECK_KEY_NAME=openapi-check run_schemathesis keyed "${port}" \
    -H "Authorization: Bearer $(cat "${work}/admin.key")"
stop_server

if [ "${failed}" -ne 0 ]; then
    echo "openapi-check: FAILED (findings above)"
    exit 1
fi
echo "openapi-check: redocly lint clean, schemathesis clean in open and keyed mode"
