#!/usr/bin/env bash
# End-to-end costs against a real kube-apiserver (benches/cluster.py says what is measured):
#   bash benches/cluster.sh [cluster.py flags: --pods 2000 --concurrency 16 --rounds 3 --applies 50]
# Builds the release binary, starts a control plane with tests/cluster/up.sh in target/cluster-bench,
# and stops it at the end. Quote numbers from an otherwise idle machine.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.tools/venv"
bash "$root/tests/aws/venv.sh" "$venv" >/dev/null
(cd "$root" && cargo build --release --locked --bin fargate-webhook)
[ -x "$root/.tools/bin/helm" ] || bash "$root/tests/chart/install-helm.sh" "$root/.tools/bin"
export HELM="${HELM:-$root/.tools/bin/helm}"   # the chart renders the webhook configuration
export FARGATE_WEBHOOK_BIN="${CARGO_TARGET_DIR:-$root/target}/release/fargate-webhook"
export FW_CLUSTER_DIR="${CARGO_TARGET_DIR:-$root/target}/cluster-bench"
[ ! -f "$FW_CLUSTER_DIR/pids" ] || bash "$root/tests/cluster/down.sh" "$FW_CLUSTER_DIR"
rm -rf "$FW_CLUSTER_DIR"
bash "$root/tests/cluster/up.sh" "$FW_CLUSTER_DIR" >/dev/null
trap 'bash "$root/tests/cluster/down.sh" "$FW_CLUSTER_DIR"' EXIT
echo "== $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), Kubernetes $(basename "$(dirname "$(grep ^CLUSTER_BIN= "$FW_CLUSTER_DIR/env" | cut -d= -f2)")")"
"$venv/bin/python" "$root/benches/cluster.py" "$@"
