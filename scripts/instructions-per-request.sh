#!/usr/bin/env bash
# Counts the CPU instructions a wallet server executes per request, every
# thread together (the HTTP workers, the writer, the log writer), under
# valgrind's callgrind: a figure that does not move with the machine's
# noise, where requests/s on a shared machine moves by 10-30%.
#
#   scripts/instructions-per-request.sh BINARY SCENARIO [REQUESTS]
#
# SCENARIO is `read` (GET a balance), `spend` (a spend of 1, each with its
# own key) or `events` (GET a page of 100 events). The server runs twice
# on a fresh database: once serving REQUESTS requests from one keep-alive
# connection, once serving none; the difference over REQUESTS is the
# figure, so start-up, seeding and shutdown cancel out. SERVER_ENV holds
# the server's settings (such as "RUST_LOG=warn"). Prints one line:
# `SCENARIO instructions_per_request`.
set -euo pipefail

binary=$1
scenario=$2
requests=${3:-3000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

command -v valgrind >/dev/null || {
    echo "valgrind is needed (apt-get install valgrind)" >&2
    exit 2
}

# The instructions of one server run that serves `count` requests.
instructions_of_run() {
    local count=$1 port=$2
    local db="$work/run-$port.db" out="$work/callgrind-$port.out"
    # shellcheck disable=SC2086 # SERVER_ENV is a list of NAME=value words
    env ${SERVER_ENV:-} valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$binary" serve --db "$db" --bind "127.0.0.1:$port" >"$work/server-$port.log" 2>&1 &
    local server=$!
    python3 - "$port" "$scenario" "$count" <<'EOF'
import http.client, json, sys, time

port, scenario, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
deadline = time.time() + 120
while True:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("GET", "/health")
        if connection.getresponse().read() is not None:
            break
    except OSError:
        if time.time() > deadline:
            sys.exit("the server did not start")
        time.sleep(0.2)

def call(method, path, body=None, headers=None):
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    response.read()
    return response.status

# What every run does before the measured requests, so that it cancels out.
json_headers = {"Content-Type": "application/json"}
for n in range(20):
    body = json.dumps({"asset": "GOLD", "amount": 1000000, "idempotencyKey": f"fund-{n}"})
    assert call("POST", "/wallets/user_alice/topup", body, json_headers) == 201

for n in range(count):
    if scenario == "read":
        status = call("GET", "/wallets/user_alice/balance")
        assert status == 200, status
    elif scenario == "spend":
        headers = dict(json_headers, **{"Idempotency-Key": f"spend-{n}"})
        status = call("POST", "/wallets/user_alice/spend", json.dumps({"asset": "GOLD", "amount": 1}), headers)
        assert status == 201, status
    elif scenario == "events":
        status = call("GET", "/events?limit=100")
        assert status == 200, status
    else:
        sys.exit(f"unknown scenario {scenario}")
EOF
    kill -TERM "$server"
    wait "$server" || true
    # callgrind's totals line: the instructions executed, all threads.
    awk '/^(summary|totals):/ { print $2; exit }' "$out"
}

measured=$(instructions_of_run "$requests" 18501)
idle=$(instructions_of_run 0 18502)
echo "$scenario $(((measured - idle) / requests))"
