#!/usr/bin/env bash
# The suite against a real control plane (tests/cluster/test_*.py): starts one with up.sh, runs pytest,
# stops it (KEEP_CLUSTER=1 leaves it up for a look: `kubectl --kubeconfig DIR/kubeconfig ...`).
#
#   bash tests/cluster/run.sh [VENV_DIR] [BINARY]
#
# VENV_DIR  virtual environment with the AWS CLI, boto3, pytest, PyYAML (default: .tools/venv)
# BINARY    the fargate-webhook binary (default: builds target/debug/fargate-webhook)
# FW_CLUSTER_DIR  where the control plane lives (default: target/cluster); extra pytest arguments in
#                 PYTEST_ADDOPTS (e.g. PYTEST_ADDOPTS="-k crd").
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${1:-$root/.tools/venv}"
binary="${2:-}"
export FW_CLUSTER_DIR="${FW_CLUSTER_DIR:-${CARGO_TARGET_DIR:-$root/target}/cluster}"

bash "$root/tests/aws/venv.sh" "$venv"
venv="$(cd "$venv" && pwd)"
if [ -z "$binary" ]; then
    (cd "$root" && cargo build --locked --bin fargate-webhook)
    binary="${CARGO_TARGET_DIR:-$root/target}/debug/fargate-webhook"
fi
export FARGATE_WEBHOOK_BIN="$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")"
[ -x "$FARGATE_WEBHOOK_BIN" ] || { echo "no executable at $FARGATE_WEBHOOK_BIN" >&2; exit 1; }
if [ -z "${HELM:-}" ]; then
    [ -x "$root/.tools/bin/helm" ] || bash "$root/tests/chart/install-helm.sh" "$root/.tools/bin"
    export HELM="$root/.tools/bin/helm"
fi

echo "== control plane in $FW_CLUSTER_DIR"
[ ! -f "$FW_CLUSTER_DIR/pids" ] || bash "$root/tests/cluster/down.sh" "$FW_CLUSTER_DIR"
rm -rf "$FW_CLUSTER_DIR"
# kwok acts as the kubelet of the scheduler's nodes (test_scheduler*.py).
KWOK=1 bash "$root/tests/cluster/up.sh" "$FW_CLUSTER_DIR"
if [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    trap 'bash "$root/tests/cluster/down.sh" "$FW_CLUSTER_DIR"' EXIT
fi

echo "== cluster suite against $(grep ^APISERVER= "$FW_CLUSTER_DIR/env")"
cd "$root/tests/cluster"
"$venv/bin/python" -m pytest -p no:cacheprovider -q -rf
