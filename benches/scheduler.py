"""The fargate-scheduler's bind latency and rate against the real control plane, kwok playing the kubelet
of the virtual nodes (KWOK=1 tests/cluster/up.sh). Run by benches/scheduler.sh.

Pods are created at a steady rate (default 100 per second) through kube-apiserver with the webhook
registered (so each pod is mutated first, as on EKS) by the compiled load generator (examples/loadgen.rs;
the Python client of earlier runs stopped near 60-80 creations/s here); its watch records when each pod is
first seen with a `nodeName`. Bind latency = that moment minus the moment its create call returned (the
generator's clock for both). Prints the achieved creation rate, binds per second over the run, and
p50/p90/p99 bind latency, plus the scheduler's own histogram (seen-to-bound, excluding the watch delay).
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "cluster"))
import conftest as c  # noqa: E402  (it puts tests/ on the path for pysupport)
from pysupport import Process, buckets, http_ok, http_text  # noqa: E402

NS = "bench-sched"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=100.0, help="pod creations per second")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--in-flight", type=int, default=64, help="creations in flight at once")
    ap.add_argument("--pool", type=int, default=0,
                    help="N > 0: placement pool over N kwok nodes (the chart's default placement); else virtual")
    args = ap.parse_args()

    c.ensure_namespace(NS)
    pool = [f"bench-pool-{i}" for i in range(args.pool)]
    for name in pool:
        room = {"cpu": "1000", "memory": "4000Gi", "pods": "1000"}
        c.kubectl("create", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"fargate-webhook.io/pool": "bench"}},
            "status": {"capacity": room, "allocatable": room}}))
    placement = ["--placement", "pool", "--pool-selector", "fargate-webhook.io/pool=bench"] if pool else []
    hook = c.start_webhook(profiles=[{"fargateProfileName": "bench", "podExecutionRoleArn": c.ROLE,
                                      "selectors": [{"namespace": NS}]}])
    c.register(hook, "fargate-webhook-sched-bench")
    port = c.free_port()
    sched = Process([os.environ["FARGATE_WEBHOOK_BIN"], "scheduler", "--state-dir",
                     os.path.join(hook.base, "state"), "--metrics-addr", f"127.0.0.1:{port}",
                     "--lease-name", "bench", *placement], os.path.join(hook.base, "scheduler.log"),
                    env={"KUBECONFIG": c.ENV["KUBECONFIG"], "RUST_LOG": "warn"}, name="the scheduler").start()
    try:
        sched.wait_ready("the scheduler ready", lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), timeout=30)
        run = subprocess.run([os.environ["LOADGEN_BIN"], "--namespace", NS, "--rate", str(args.rate),
                              "--seconds", str(args.seconds), "--in-flight", str(args.in_flight)],
                             env=dict(os.environ, KUBECONFIG=c.ENV["KUBECONFIG"]), capture_output=True,
                             text=True, check=True)
        result = dict(line.split(" ", 1) for line in run.stdout.splitlines())
        hist = buckets(http_text(f"http://127.0.0.1:{port}/metrics", timeout=5),
                       "fargate_webhook_scheduler_bind_latency_seconds")
        print(f"placement: {'pool of ' + str(len(pool)) + ' nodes' if pool else 'virtual'}")
        print(f"pods: {result['created']} created ({result['create_errors']} errors, {result['unbound']} never "
              f"bound) = {result['creations_per_second']} creations/s (target {args.rate:.0f}/s)")
        print(f"binds: {result['binds_per_second']} binds/s from the first creation to the last binding")
        print(f"bind latency (create returned -> nodeName seen by a watch): p50 {result['bind_latency_p50_ms']} ms, "
              f"p90 {result['bind_latency_p90_ms']} ms, p99 {result['bind_latency_p99_ms']} ms, "
              f"max {result['bind_latency_max_ms']} ms")
        n = hist.get("+Inf", 0)
        cumulative = " ".join(f"<={le}s:{v / n * 100:.0f}%" for le, v in hist.items() if le in ("0.01", "0.025", "0.05", "0.1", "0.25"))
        print(f"scheduler histogram (seen -> bound), {n:.0f} binds: {cumulative}")
        if "first_error" in result:
            print("first error:", result["first_error"])
    finally:
        sched.stop()
        c.unregister("fargate-webhook-sched-bench")
        hook.stop()
        c.kubectl("delete", "namespace", NS, "--wait=false", check=False)
        if pool:
            c.kubectl("delete", "node", *pool, "--wait=false", check=False)


if __name__ == "__main__":
    main()
