#!/usr/bin/env bash
# Compares two wallet servers (two builds, or one build with two settings)
# under the same load, in alternating rounds (A B B A A B ...), each round on
# a fresh database, and prints each round's requests/s and the median ratio
# A/B per scenario. On a shared, noisy machine only a ratio taken this way,
# pair by pair, means anything.
#
#   scripts/ab-bench.sh A_BINARY B_BINARY [ROUNDS] [SCENARIOS]
#
# Environment: A_ENV and B_ENV, settings for each server (such as
# "RUST_LOG=warn"); CLIENT, the binary whose `wallet bench --url` drives the
# load (default: target/release/wallet); DURATION per scenario (default 5s).
set -euo pipefail

a_binary=$1
b_binary=$2
rounds=${3:-4}
scenarios=${4:-read,spend}
client=${CLIENT:-target/release/wallet}
duration=${DURATION:-5s}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One server, one bench against it: prints "scenario requests_per_second"
# lines.
run_one() {
    local binary=$1 settings=$2 port=$3
    local db="$work/round-$port.db"
    rm -f "$db" "$db"-*
    # shellcheck disable=SC2086 # settings is a list of NAME=value words
    env $settings "$binary" serve --db "$db" --bind "127.0.0.1:$port" >"$work/server.log" 2>&1 &
    local server=$!
    for _ in $(seq 1 100); do
        curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
        sleep 0.05
    done
    "$client" bench --url "http://127.0.0.1:$port" --allow-writes --scenarios "$scenarios" \
        --duration "$duration" --startup-runs 0 --json 2>/dev/null |
        python3 -c 'import json,sys
for s in json.load(sys.stdin)["scenarios"]:
    print(s["scenario"], round(s["requests_per_second"]))'
    kill -TERM "$server"
    wait "$server" || true
}

results="$work/results"
port=18400
for round in $(seq 1 "$rounds"); do
    if [ $((round % 2)) -eq 1 ]; then order="A B"; else order="B A"; fi
    for side in $order; do
        port=$((port + 1))
        if [ "$side" = A ]; then
            run_one "$a_binary" "${A_ENV:-}" "$port"
        else
            run_one "$b_binary" "${B_ENV:-}" "$port"
        fi | sed "s/^/$round $side /" | tee -a "$results"
    done
done

python3 - "$results" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
figures = {}
for round_, side, scenario, rate in rows:
    figures.setdefault(scenario, {}).setdefault(round_, {})[side] = int(rate)
for scenario, by_round in figures.items():
    pairs = [(r["A"], r["B"]) for r in by_round.values() if "A" in r and "B" in r]
    ratios = [a / b for a, b in pairs]
    print(f"{scenario}: A median {statistics.median(a for a, _ in pairs):.0f}/s, "
          f"B median {statistics.median(b for _, b in pairs):.0f}/s, "
          f"A/B per round {' '.join(f'{x:.3f}' for x in ratios)}, median {statistics.median(ratios):.3f}")
EOF
