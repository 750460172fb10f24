#!/usr/bin/env bash
# The suites against a real control plane: tests/cluster/test_*.py on a loopback control plane with kwok
# (up.sh KWOK=1), then tests/cluster/node/test_*.py on a control plane with a real node (up.sh NODE=1: the
# chart's own pods and Fargate pods' containers run). Each cluster is stopped after its suite
# (KEEP_CLUSTER=1 leaves the last one up for a look: `kubectl --kubeconfig DIR/kubeconfig ...`).
#
#   bash tests/cluster/run.sh [VENV_DIR] [BINARY]
#
# VENV_DIR  virtual environment with the AWS CLI, boto3, pytest, PyYAML (default: .tools/venv)
# BINARY    the fargate-webhook binary (default: builds target/debug/fargate-webhook)
# FW_CLUSTER_DIR  where the control plane lives (default: target/cluster; the node's: FW_CLUSTER_DIR-node);
#                 extra pytest arguments in PYTEST_ADDOPTS (e.g. PYTEST_ADDOPTS="-k crd").
# FW_SUITES       which suites: "loopback node" (default), "loopback" or "node". The node suite needs root.
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

suites="${FW_SUITES:-loopback node}"
loopback_dir="$FW_CLUSTER_DIR" node_dir="$FW_CLUSTER_DIR-node"
cleanup() { [ "${KEEP_CLUSTER:-0}" = 1 ] || for d in "$loopback_dir" "$node_dir"; do
  [ ! -f "$d/pids" ] || bash "$root/tests/cluster/down.sh" "$d"; done; }
trap cleanup EXIT
fresh() { # fresh DIR: whatever an earlier run left there is stopped and removed
  [ ! -f "$1/pids" ] && [ ! -f "$1/node/restore" ] || bash "$root/tests/cluster/down.sh" "$1"
  rm -rf "$1"
}
cd "$root/tests/cluster"

if [[ " $suites " == *" loopback "* ]]; then
  echo "== control plane in $loopback_dir"
  fresh "$loopback_dir"
  # kwok acts as the kubelet of the scheduler's nodes (test_scheduler*.py).
  KWOK=1 bash "$root/tests/cluster/up.sh" "$loopback_dir"
  echo "== cluster suite against $(grep ^APISERVER= "$loopback_dir/env")"
  FW_CLUSTER_DIR="$loopback_dir" "$venv/bin/python" -m pytest -p no:cacheprovider -q -rf --ignore=node
  # One cluster at a time on this machine.
  if [[ " $suites " == *" node "* ]]; then bash "$root/tests/cluster/down.sh" "$loopback_dir"; fi
fi

if [[ " $suites " == *" node "* ]]; then
  echo "== control plane with a real node in $node_dir"
  fresh "$node_dir"
  NODE=1 bash "$root/tests/cluster/up.sh" "$node_dir"
  echo "== real-node suite against $(grep ^APISERVER= "$node_dir/env") (node $(grep ^NODE_NAME= "$node_dir/env"))"
  FW_CLUSTER_DIR="$node_dir" "$venv/bin/python" -m pytest -p no:cacheprovider -q -rf -s node
fi
