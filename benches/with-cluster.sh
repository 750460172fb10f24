#!/usr/bin/env bash
# What benches/cluster.sh and benches/scheduler.sh share: build the release binary (and the load generator), start a control plane
# with tests/cluster/up.sh in target/DIR (KWOK=1: kwok as the kubelet of every node), run the Python bench
# SCRIPT with the rest of the arguments, and stop the control plane at the end.
#   bash benches/with-cluster.sh DIR KWOK SCRIPT [SCRIPT flags]
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: bash benches/with-cluster.sh DIR KWOK(0|1) SCRIPT [flags]" >&2; exit 2; }
dir="$1" kwok="$2" script="$3"
shift 3
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.tools/venv"
bash "$root/tests/aws/venv.sh" "$venv" >/dev/null
(cd "$root" && cargo build --release --locked --bin fargate-webhook --example loadgen --example null_webhook \
  --example null_scheduler)
[ -x "$root/.tools/bin/helm" ] || bash "$root/tests/chart/install-helm.sh" "$root/.tools/bin"
export HELM="${HELM:-$root/.tools/bin/helm}"   # the chart renders the webhook configuration
export FARGATE_WEBHOOK_BIN="${CARGO_TARGET_DIR:-$root/target}/release/fargate-webhook"
export LOADGEN_BIN="${CARGO_TARGET_DIR:-$root/target}/release/examples/loadgen"   # benches/scheduler.py
export NULL_SCHEDULER_BIN="${CARGO_TARGET_DIR:-$root/target}/release/examples/null_scheduler"   # benches/scheduler.py
export NULL_WEBHOOK_BIN="${CARGO_TARGET_DIR:-$root/target}/release/examples/null_webhook"   # benches/cluster.py
export FW_CLUSTER_DIR="${CARGO_TARGET_DIR:-$root/target}/$dir"
[ ! -f "$FW_CLUSTER_DIR/pids" ] || bash "$root/tests/cluster/down.sh" "$FW_CLUSTER_DIR"
rm -rf "$FW_CLUSTER_DIR"
KWOK="$kwok" bash "$root/tests/cluster/up.sh" "$FW_CLUSTER_DIR" >/dev/null
trap 'bash "$root/tests/cluster/down.sh" "$FW_CLUSTER_DIR"' EXIT
echo "== $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), Kubernetes $(basename "$(dirname "$(grep ^CLUSTER_BIN= "$FW_CLUSTER_DIR/env" | cut -d= -f2)")")"
"$venv/bin/python" "$root/benches/$script" "$@"
