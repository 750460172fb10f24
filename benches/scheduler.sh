#!/usr/bin/env bash
# The fargate-scheduler's bind latency and binds/s at a steady pod creation rate (benches/scheduler.py says
# what is measured), against a real control plane with kwok as the kubelet of the virtual nodes:
#   bash benches/scheduler.sh [--rate 100 --seconds 20 --threads 8]
# Builds the release binary, starts the control plane in target/cluster-sched-bench, stops it at the end.
# Quote numbers from an otherwise idle machine.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.tools/venv"
bash "$root/tests/aws/venv.sh" "$venv" >/dev/null
(cd "$root" && cargo build --release --locked --bin fargate-webhook)
[ -x "$root/.tools/bin/helm" ] || bash "$root/tests/chart/install-helm.sh" "$root/.tools/bin"
export HELM="${HELM:-$root/.tools/bin/helm}"   # the chart renders the webhook configuration
export FARGATE_WEBHOOK_BIN="${CARGO_TARGET_DIR:-$root/target}/release/fargate-webhook"
export FW_CLUSTER_DIR="${CARGO_TARGET_DIR:-$root/target}/cluster-sched-bench"
[ ! -f "$FW_CLUSTER_DIR/pids" ] || bash "$root/tests/cluster/down.sh" "$FW_CLUSTER_DIR"
rm -rf "$FW_CLUSTER_DIR"
KWOK=1 bash "$root/tests/cluster/up.sh" "$FW_CLUSTER_DIR" >/dev/null
trap 'bash "$root/tests/cluster/down.sh" "$FW_CLUSTER_DIR"' EXIT
echo "== $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
"$venv/bin/python" "$root/benches/scheduler.py" "$@"
