#!/usr/bin/env bash
# The fargate-scheduler's bind latency and binds/s at a steady pod creation rate (benches/scheduler.py says
# what is measured), against a real control plane with kwok as the kubelet of the virtual nodes:
#   bash benches/scheduler.sh [--rate 100 --seconds 20 --in-flight 64 --pool N (pool placement over N nodes)
#                              --baseline (first the same load bound by a null scheduler)]
# Builds the release binary, starts the control plane in target/cluster-sched-bench, stops it at the end
# (benches/with-cluster.sh). Quote numbers from an otherwise idle machine.
exec bash "$(dirname "$0")/with-cluster.sh" cluster-sched-bench 1 scheduler.py "$@"
