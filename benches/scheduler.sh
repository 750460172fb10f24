#!/usr/bin/env bash
# The fargate-scheduler's bind latency and binds/s at a steady pod creation rate (benches/scheduler.py says
# what is measured), against a real control plane with kwok as the kubelet of the virtual nodes:
#   bash benches/scheduler.sh [--rate 100 --seconds 20 --in-flight 64 --pool N (pool placement over N nodes)
#                              --baseline (first the same load bound by a null scheduler)
#                              --watch-delay (the load generator also watches unbound pods)
#                              --workers N (the fargate-scheduler's)
#                              --node-per-pod [--bare-node] [--annotate] [--events N] (the null scheduler of --baseline
#                              makes a Fargate node per pod, patches EKS's annotations, sends N events:
#                              the fargate-scheduler's writes one by one, README "Benchmarks")]
# Builds the release binary, starts the control plane in target/cluster-sched-bench, stops it at the end
# (benches/with-cluster.sh). With --baseline the null scheduler's round runs first on a control plane of its
# own, then the fargate-scheduler's on a fresh one: neither round pays for what the other left behind.
# Quote numbers from an otherwise idle machine.
set -euo pipefail
here="$(dirname "$0")" args=() baseline=0
for arg in "$@"; do
  if [ "$arg" = --baseline ]; then baseline=1; else args+=("$arg"); fi
done
if [ "$baseline" = 1 ]; then
  bash "$here/with-cluster.sh" cluster-sched-bench 1 scheduler.py --null "${args[@]}"
fi
exec bash "$here/with-cluster.sh" cluster-sched-bench 1 scheduler.py "${args[@]}"
