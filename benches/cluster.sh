#!/usr/bin/env bash
# End-to-end costs against a real kube-apiserver (benches/cluster.py says what is measured):
#   bash benches/cluster.sh [cluster.py flags: --pods 2000 --concurrency 16 --rounds 3 --applies 50]
# Builds the release binary, starts a control plane with tests/cluster/up.sh in target/cluster-bench,
# and stops it at the end (benches/with-cluster.sh). Quote numbers from an otherwise idle machine.
exec bash "$(dirname "$0")/with-cluster.sh" cluster-bench 0 cluster.py "$@"
