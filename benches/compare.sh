#!/usr/bin/env bash
# Compare two server binaries on a shared, noisy host: alternate short h2load runs of each (server
# pinned to CPU 0, h2load to CPU 1, the ReplicaSet review of tests/fixtures), then print the median
# server CPU per review and throughput of each, and in how many pairs the second was slower.
# Two load.sh runs of one binary can differ by 15% here; alternating pairs keep both builds under
# the same noise (benches/README.md, "Comparing two builds").
#
# Usage: benches/compare.sh OLD_BINARY NEW_BINARY
# Environment: PAIRS=10 (runs of each), REQUESTS=100000 (per run), STREAMS=16.
set -euo pipefail

PAIRS=${PAIRS:-10}
REQUESTS=${REQUESTS:-100000}
STREAMS=${STREAMS:-16}
[[ $# -eq 2 && -x $1 && -x $2 ]] || {
    echo "usage: $0 OLD_BINARY NEW_BINARY (both executable)" >&2
    exit 2
}
for tool in h2load taskset awk sort; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "compare.sh: missing $tool (apt-get install -y nghttp2-client util-linux)" >&2
        exit 2
    }
done
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fixture="$root/tests/fixtures/replicaset-pod.review.json"
tmp=$(mktemp -d -t fargate-compare.XXXXXX)
server_pid=""
cleanup() {
    [[ -z $server_pid ]] || kill "$server_pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# The profiles of load.sh: one the fixture matches, two it does not.
mkdir -p "$tmp/state"
cp "$root/benches/profiles.json" "$tmp/state/profiles.json"

# One run: prints "reviews/s cpu_us_per_review".
run() {
    local bin=$1 url="" log="$tmp/server.log" before after rps
    rm -rf "$tmp/certs"
    taskset -c 0 "$bin" serve --webhook-addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 \
        --api-addr 127.0.0.1:0 --state-dir "$tmp/state" \
        --tls-cert "$tmp/certs/tls.crt" --tls-key "$tmp/certs/tls.key" >"$log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 100); do
        url=$(sed -n 's/^fargate-webhook: webhook \(https:[^ ]*\).*/\1/p' "$log" | head -n1)
        [[ -n $url ]] && break
        sleep 0.1
    done
    [[ -n $url ]] || { echo "compare.sh: $bin did not start:" >&2; cat "$log" >&2; exit 1; }
    # Warm-up, not counted.
    taskset -c 1 h2load -n 20000 -c 1 -m "$STREAMS" -H 'content-type: application/json' \
        -d "$fixture" "$url" >/dev/null
    before=$(awk '{print $14 + $15}' "/proc/$server_pid/stat")
    rps=$(taskset -c 1 h2load -n "$REQUESTS" -c 1 -m "$STREAMS" \
        -H 'content-type: application/json' -d "$fixture" "$url" |
        awk '/^finished in/ {gsub(",", "", $4); print $4} /succeeded/ && $8 + 0 != '"$REQUESTS"' {exit 1}')
    after=$(awk '{print $14 + $15}' "/proc/$server_pid/stat")
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
    awk -v a="$before" -v b="$after" -v n="$REQUESTS" -v hz="$(getconf CLK_TCK)" -v r="$rps" \
        'BEGIN { printf "%s %.1f\n", r, (b - a) / hz * 1e6 / n }'
}

median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

: >"$tmp/old" && : >"$tmp/new"
slower=0
for i in $(seq 1 "$PAIRS"); do
    read -r old_rps old_cpu < <(run "$1")
    read -r new_rps new_cpu < <(run "$2")
    echo "$old_rps $old_cpu" >>"$tmp/old"
    echo "$new_rps $new_cpu" >>"$tmp/new"
    awk -v o="$old_cpu" -v n="$new_cpu" 'BEGIN {exit !(n > o)}' && slower=$((slower + 1))
    printf 'pair %2d: old %8.0f reviews/s %6.1f us/review | new %8.0f reviews/s %6.1f us/review\n' \
        "$i" "$old_rps" "$old_cpu" "$new_rps" "$new_cpu"
done
for side in old new; do
    printf '%s: median %s us CPU/review, %s reviews/s (%s)\n' "$side" \
        "$(awk '{print $2}' "$tmp/$side" | median)" "$(awk '{print $1}' "$tmp/$side" | median)" \
        "$([[ $side == old ]] && echo "$1" || echo "$2")"
done
echo "the new binary used more CPU per review in $slower of $PAIRS pairs"
