#!/usr/bin/env bash
# Load test of the real server over TLS: h2load (HTTP/2, one connection, 16 streams) and wrk
# (HTTP/1.1, 16 connections), both posting the ReplicaSet pod review fixture to /mutate.
#
# The server is pinned to CPU 0 and the load generators to CPU 1 (needs at least 2 CPUs).
# Measured: reviews/s, latency percentiles, server CPU per review (utime+stime from
# /proc/<pid>/stat), resident memory under load (peak sampled VmRSS and VmHWM), and how much of
# the server's CPU other processes took meanwhile (a concurrent build ruins every number).
#
# Usage: benches/load.sh
# Environment (all optional):
#   REQUESTS=200000     h2load request count per run
#   RUNS=3              h2load runs; the summary reports the median run by throughput
#   STREAMS=16          h2load concurrent streams on its single connection
#   WRK_CONNS=16        wrk connections
#   WRK_DURATION=10s    wrk run time
#   SERVER_CPU=0        CPU the server is pinned to
#   CLIENT_CPU=1        CPU the load generators are pinned to
#   QUIET_WAIT=120      seconds to wait for an idle machine before each run (0: do not wait)
#   KEEP_TMP=1          keep the temporary directory (server log, h2load per-request logs)
#   SKIP_BUILD=1        use the existing target/release/fargate-webhook
set -euo pipefail

REQUESTS=${REQUESTS:-200000}
RUNS=${RUNS:-3}
STREAMS=${STREAMS:-16}
WRK_CONNS=${WRK_CONNS:-16}
WRK_DURATION=${WRK_DURATION:-10s}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
QUIET_WAIT=${QUIET_WAIT:-120}

# Targets (issue 2): one HTTP/2 connection with 16 streams, server on one core.
TARGET_RPS=20000
TARGET_P99_MS=2
TARGET_CPU_US=50
TARGET_RSS_MB=30

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fixture="$root/tests/fixtures/replicaset-pod.review.json"
bin="$root/target/release/fargate-webhook"

missing=()
for tool in h2load wrk taskset curl awk sort; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "load.sh: missing tools: ${missing[*]}" >&2
    echo "  on Debian/Ubuntu: apt-get install -y nghttp2-client wrk util-linux curl" >&2
    echo "  (h2load is in nghttp2-client, taskset in util-linux)" >&2
    exit 2
fi
if (($(nproc) < 2)); then
    echo "load.sh: needs 2 CPUs (server on one, load generator on the other); nproc=$(nproc)" >&2
    exit 2
fi

if [[ -z ${SKIP_BUILD:-} ]]; then
    echo "==> cargo build --release"
    (cd "$root" && cargo build --release --bin fargate-webhook)
fi

tmp=$(mktemp -d -t fargate-load.XXXXXX)
server_pid=""
sampler_pid=""
cleanup() {
    if [[ -n $sampler_pid ]]; then kill "$sampler_pid" 2>/dev/null || true; fi
    if [[ -n $server_pid ]]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [[ -n ${KEEP_TMP:-} ]]; then
        echo "kept $tmp"
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT

# benches/profiles.json: a profile the fixture pod matches (namespace default,
# infrastructure=fargate), plus a few that it does not, so the snapshot is not trivially small.
mkdir -p "$tmp/state" "$tmp/certs"
cp "$root/benches/profiles.json" "$tmp/state/profiles.json"

echo "==> starting the server on CPU $SERVER_CPU"
taskset -c "$SERVER_CPU" "$bin" serve \
    --webhook-addr 127.0.0.1:0 \
    --metrics-addr 127.0.0.1:0 \
    --state-dir "$tmp/state" \
    --tls-cert "$tmp/certs/tls.crt" \
    --tls-key "$tmp/certs/tls.key" \
    >"$tmp/server.log" 2>&1 &
server_pid=$!

# The server binds port 0 and prints the addresses it got.
webhook_url="" ops_url=""
for _ in $(seq 1 100); do
    webhook_url=$(sed -n 's/^fargate-webhook: webhook \(https:[^ ]*\).*/\1/p' "$tmp/server.log" | head -n1)
    ops_url=$(sed -n 's/^fargate-webhook: ops \(http:[^ ]*\).*/\1/p' "$tmp/server.log" | head -n1)
    [[ -n $webhook_url && -n $ops_url ]] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
if [[ -z $webhook_url || -z $ops_url ]]; then
    echo "load.sh: the server did not start:" >&2
    cat "$tmp/server.log" >&2
    exit 1
fi
for _ in $(seq 1 100); do
    curl -fsS "$ops_url/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS "$ops_url/readyz" >/dev/null || {
    echo "load.sh: /readyz never became ready" >&2
    cat "$tmp/server.log" >&2
    exit 1
}
ca="$tmp/certs/ca.crt"
echo "    webhook $webhook_url, ops $ops_url, CA $ca"

# One checked request: 200 and a patch, so the load below measures the mutating path.
answer=$(curl -fsS --cacert "$ca" -H 'content-type: application/json' --data-binary "@$fixture" "$webhook_url")
if [[ $answer != *'"patchType":"JSONPatch"'* ]]; then
    echo "load.sh: the fixture was not mutated; answer: $answer" >&2
    exit 1
fi

clk_tck=$(getconf CLK_TCK)
page_kb=$(($(getconf PAGESIZE) / 1024))
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server_pid/stat"; }
status_kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$server_pid/status"; }
# Busy ticks of one CPU (user, nice, system, irq, softirq, steal), from /proc/stat.
cpu_busy() { awk -v c="cpu$1" '$1 == c {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
# "server ticks, busy ticks of the server's CPU, time" now.
sample() { echo "$(cpu_ticks) $(cpu_busy "$SERVER_CPU") $(date +%s.%N)"; }
# Server CPU per review (us) and the share of the server's CPU other processes used (%), between
# two samples, for n reviews.
cpu_report() {
    awk -v a="$1" -v b="$2" -v n="$3" -v hz="$clk_tck" 'BEGIN {
        split(a, x, " "); split(b, y, " ");
        own = y[1] - x[1]; busy = y[2] - x[2]; secs = y[3] - x[3];
        foreign = busy - own; if (foreign < 0) foreign = 0;
        printf "%.1f %.0f\n", own / hz * 1e6 / n, 100 * foreign / hz / secs }'
}
# Idle percentage of the whole machine over 2 s.
machine_idle() {
    local a b
    a=$(awk '$1 == "cpu" {print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
    sleep 2
    b=$(awk '$1 == "cpu" {print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN {
        split(a, x, " "); split(b, y, " "); printf "%d\n", 100 * (y[1] - x[1]) / (y[2] - x[2]) }'
}
# Wait up to QUIET_WAIT seconds for an idle machine; warn when it never comes.
wait_quiet() {
    ((QUIET_WAIT > 0)) || return 0
    local deadline=$((SECONDS + QUIET_WAIT)) idle
    while :; do
        idle=$(machine_idle)
        ((idle >= 90)) && return 0
        if ((SECONDS >= deadline)); then
            echo "    WARNING: the machine is only ${idle}% idle: expect pessimistic numbers" >&2
            return 0
        fi
    done
}
# Peak VmRSS seen while the load runs, sampled every 100 ms from the client CPU.
start_sampler() {
    rm -f "$tmp/rss_peak"
    (
        peak=0
        while kill -0 "$server_pid" 2>/dev/null; do
            rss=$(($(awk '{print $2}' "/proc/$server_pid/statm" 2>/dev/null || echo 0) * page_kb))
            ((rss > peak)) && peak=$rss && echo "$peak" >"$tmp/rss_peak"
            sleep 0.1
        done
    ) &
    sampler_pid=$!
    taskset -pc "$CLIENT_CPU" "$sampler_pid" >/dev/null
}
stop_sampler() {
    kill "$sampler_pid" 2>/dev/null || true
    wait "$sampler_pid" 2>/dev/null || true
    sampler_pid=""
}
peak_rss_mb() { awk -v k="$(cat "$tmp/rss_peak" 2>/dev/null || echo 0)" 'BEGIN {printf "%.1f\n", k / 1024}'; }
# Percentile (in ms, 3 decimals) of a file of microsecond values, one per line.
percentile_ms() {
    sort -n "$1" | awk -v p="$2" '{v[NR] = $1} END {
        i = int(NR * p / 100); if (i < NR * p / 100) i++; if (i < 1) i = 1;
        printf "%.3f\n", v[i] / 1000 }'
}
ms() { awk -v u="$1" 'BEGIN {printf "%.3f\n", u / 1000}'; }

echo "==> warm-up"
taskset -c "$CLIENT_CPU" h2load -n 20000 -c 1 -m "$STREAMS" -d "$fixture" \
    -H 'content-type: application/json' "$webhook_url" >/dev/null

# ---------------------------------------------------------------- h2load, HTTP/2 over TLS
echo "==> h2load: $RUNS x $REQUESTS reviews, 1 connection, $STREAMS streams (HTTP/2 over TLS)"
h2_rows=()
for run in $(seq 1 "$RUNS"); do
    wait_quiet
    log="$tmp/h2load-$run.log"
    rm -f "$log" # h2load appends to an existing log file
    h2_cmd=(taskset -c "$CLIENT_CPU" h2load -n "$REQUESTS" -c 1 -m "$STREAMS" -d "$fixture"
        -H 'content-type: application/json' --log-file "$log" "$webhook_url")
    ((run == 1)) && echo "    ${h2_cmd[*]}"
    start_sampler
    s0=$(sample)
    "${h2_cmd[@]}" >"$tmp/h2load-$run.out"
    s1=$(sample)
    stop_sampler
    rss_mb=$(peak_rss_mb)
    ok=$(awk '/^status codes:/ {gsub(",", ""); print $3}' "$tmp/h2load-$run.out")
    rps=$(awk '/^finished in/ {gsub(",", ""); printf "%.0f\n", $4}' "$tmp/h2load-$run.out")
    awk -F'\t' '$2 == 200 {print $3}' "$log" >"$tmp/h2load.lat"
    p50=$(percentile_ms "$tmp/h2load.lat" 50)
    p99=$(percentile_ms "$tmp/h2load.lat" 99)
    p999=$(percentile_ms "$tmp/h2load.lat" 99.9)
    read -r cpu_us foreign < <(cpu_report "$s0" "$s1" "$ok")
    printf '    run %d: %6s reviews/s  p50 %s  p99 %s  p99.9 %s ms  %5s us CPU/review  RSS %s MB  foreign load on CPU %s: %s%%  (%s 2xx)\n' \
        "$run" "$rps" "$p50" "$p99" "$p999" "$cpu_us" "$rss_mb" "$SERVER_CPU" "$foreign" "$ok"
    h2_rows+=("$rps $p50 $p99 $p999 $cpu_us $rss_mb $foreign $ok")
done
median=$(printf '%s\n' "${h2_rows[@]}" | sort -n | awk -v m=$(((RUNS + 1) / 2)) 'NR == m')
read -r h2_rps h2_p50 h2_p99 h2_p999 h2_cpu_us h2_rss_mb h2_foreign h2_ok <<<"$median"
echo "    h2load output of run $RUNS:"
sed 's/^/    | /' "$tmp/h2load-$RUNS.out"

# ---------------------------------------------------------------- wrk, HTTP/1.1 over TLS
cat >"$tmp/post.lua" <<'LUA'
local f = assert(io.open(os.getenv("FIXTURE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
    io.write(string.format("LAT %d %d %d %d\n", latency:percentile(50), latency:percentile(99),
        latency:percentile(99.9), latency.max))
    local errors = summary.errors.connect + summary.errors.read + summary.errors.write
        + summary.errors.status + summary.errors.timeout
    io.write(string.format("REQ %d %d %d\n", summary.requests, summary.duration, errors))
end
LUA
echo "==> wrk: $WRK_DURATION, $WRK_CONNS connections (HTTP/1.1 over TLS)"
wrk_cmd=(taskset -c "$CLIENT_CPU" wrk -t1 -c"$WRK_CONNS" -d"$WRK_DURATION" --latency
    -s "$tmp/post.lua" "$webhook_url")
echo "    FIXTURE=$fixture ${wrk_cmd[*]}"
wait_quiet
start_sampler
s0=$(sample)
FIXTURE="$fixture" "${wrk_cmd[@]}" >"$tmp/wrk.out"
s1=$(sample)
stop_sampler
wrk_rss_mb=$(peak_rss_mb)
grep -v -E '^(LAT|REQ) ' "$tmp/wrk.out" | sed 's/^/    | /'
read -r _ wrk_p50 wrk_p99 wrk_p999 _ < <(grep '^LAT ' "$tmp/wrk.out")
read -r _ wrk_n wrk_dur_us wrk_err < <(grep '^REQ ' "$tmp/wrk.out")
wrk_rps=$(awk -v n="$wrk_n" -v d="$wrk_dur_us" 'BEGIN {printf "%.0f\n", n / (d / 1e6)}')
read -r wrk_cpu_us wrk_foreign < <(cpu_report "$s0" "$s1" "$wrk_n")

hwm_mb=$(awk -v k="$(status_kb VmHWM)" 'BEGIN {printf "%.1f\n", k / 1024}')
rss_mb=$(awk -v k="$(status_kb VmRSS)" 'BEGIN {printf "%.1f\n", k / 1024}')
served=$(curl -fsS "$ops_url/metrics" | awk '/^fargate_webhook_admission_requests_total\{/ && /outcome="mutated"/ {s += $NF} END {print s + 0}')

verdict() {
    if awk -v a="$1" -v op="$2" -v b="$3" 'BEGIN {exit !(op == "ge" ? a >= b : a <= b)}'; then
        echo ok
    else
        echo MISSED
    fi
}

cat <<SUMMARY

================================ fargate-webhook load summary ================================
machine   : $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(uname -r)
server    : $bin (pid $server_pid) pinned to CPU $SERVER_CPU; load generators on CPU $CLIENT_CPU
payload   : $(wc -c <"$fixture") byte AdmissionReview (tests/fixtures/replicaset-pod.review.json), mutated

h2load  HTTP/2 TLS, 1 connection x $STREAMS streams, $REQUESTS requests ($h2_ok 2xx), median of $RUNS runs
  throughput      : $h2_rps reviews/s                  [target >= $TARGET_RPS: $(verdict "$h2_rps" ge $TARGET_RPS)]
  latency         : p50 $h2_p50 ms, p99 $h2_p99 ms, p99.9 $h2_p999 ms   [p99 target <= $TARGET_P99_MS ms: $(verdict "$h2_p99" le $TARGET_P99_MS)]
  server CPU      : $h2_cpu_us us/review                    [target <= $TARGET_CPU_US: $(verdict "$h2_cpu_us" le $TARGET_CPU_US)]
  peak VmRSS      : $h2_rss_mb MB                           [target <= $TARGET_RSS_MB: $(verdict "$h2_rss_mb" le $TARGET_RSS_MB)]
  foreign load    : $h2_foreign% of CPU $SERVER_CPU used by other processes meanwhile

wrk     HTTP/1.1 TLS, $WRK_CONNS connections, $WRK_DURATION ($wrk_n requests, $wrk_err errors)
  throughput      : $wrk_rps reviews/s
  latency         : p50 $(ms "$wrk_p50") ms, p99 $(ms "$wrk_p99") ms, p99.9 $(ms "$wrk_p999") ms
  server CPU      : $wrk_cpu_us us/review
  peak VmRSS      : $wrk_rss_mb MB
  foreign load    : $wrk_foreign% of CPU $SERVER_CPU used by other processes meanwhile

memory    : VmRSS now $rss_mb MB, VmHWM (lifetime peak) $hwm_mb MB   [target <= $TARGET_RSS_MB: $(verdict "$hwm_mb" le $TARGET_RSS_MB)]
server    : $served mutated reviews counted in /metrics
==============================================================================================
SUMMARY
