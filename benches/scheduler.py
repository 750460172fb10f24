"""The fargate-scheduler's bind latency and rate against the real control plane, kwok playing the kubelet
of the virtual nodes (KWOK=1 tests/cluster/up.sh). Run by benches/scheduler.sh.

Pods are created at a steady rate (default 100 per second) through kube-apiserver with the webhook
registered (so each pod is mutated first, as on EKS) by the compiled load generator (examples/loadgen.rs;
the Python client of earlier runs stopped near 60-80 creations/s here); its watch records when each pod is
first seen with a `nodeName`. Bind latency = that moment minus the moment its create call returned (the
generator's clock for both). With --null, a null scheduler (examples/null_scheduler.rs: one binding per pod
to one existing node, nothing else) gets the load instead: the floor any scheduler stands on here.
benches/scheduler.sh --baseline runs that round first, each round on a fresh control plane. For each round it prints the achieved creation rate, binds per second over the run, and
p50/p90/p99 bind latency, plus what that chain is made of: the create call itself (one pod write through
the apiserver and the webhook at this load), with --watch-delay the watch delay (create returned -> first
seen by a watch), and the scheduler's own histogram (seen-to-bound); and the CPU each process used during the run, against
the machine's (how busy the cores the whole chain shares were).
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "cluster"))
import conftest as c  # noqa: E402  (it puts tests/ on the path for pysupport)
from pysupport import Process, buckets, control_plane_pid, cpu_seconds, http_ok, http_text, samples  # noqa: E402

NS = "bench-sched"
NULL_NS = "bench-null"
NULL_NODE = "bench-null-node"
# The verbs of apiserver_request_total that write; the others (GET, LIST, WATCH) read.
WRITES = {"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"}


def apiserver_requests():
    """kube-apiserver's requests so far by "verb resource/subresource"."""
    out = {}
    for name, labels, value in samples(c.kubectl("get", "--raw", "/metrics").stdout):
        if name == "apiserver_request_total":
            key = labels.get("resource", "") + ("/" + labels["subresource"] if labels.get("subresource") else "")
            key = f"{labels['verb']} {key}"
            out[key] = out.get(key, 0) + value
    return out


def machine_cpu_seconds():
    """Busy CPU seconds of the whole machine so far (/proc/stat: every state but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def kwok_node(name, labels, pods):
    """A Node with room for `pods` pods that kwok (the kubelet here) takes: it takes only nodes with a label."""
    room = {"cpu": "1000", "memory": "4000Gi", "pods": str(pods)}
    c.kubectl("create", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
        "status": {"capacity": room, "allocatable": room}}))


def run_load(args, namespace, processes):
    """Creates the pods of one round in `namespace` with the load generator; returns its results, the CPU
    each process used (of `processes` and the control plane), the machine's, and the apiserver's requests."""
    pids = {name: control_plane_pid(name) for name in ("kube-apiserver", "etcd", "kwok", "kube-controller-manager")}
    pids.update({name: p.proc.pid for name, p in processes.items()})
    requests_before = apiserver_requests()
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    machine_before, wall_before = machine_cpu_seconds(), time.monotonic()
    gen = subprocess.Popen([os.environ["LOADGEN_BIN"], "--namespace", namespace, "--rate", str(args.rate),
                            "--seconds", str(args.seconds), "--in-flight", str(args.in_flight),
                            "--watch-all", "true" if args.watch_delay else "false"],
                           env=dict(os.environ, KUBECONFIG=c.ENV["KUBECONFIG"]), stdout=subprocess.PIPE, text=True)
    used = {}
    while gen.poll() is None:
        # The generator's own CPU is read while it still runs; the others' at the end.
        try:
            used["loadgen"] = cpu_seconds(gen.pid)
        except OSError:
            pass
        time.sleep(0.2)
    out = gen.stdout.read()
    if gen.returncode != 0:
        raise SystemExit(f"the load generator failed ({gen.returncode})")
    wall = time.monotonic() - wall_before
    machine = machine_cpu_seconds() - machine_before
    for name, pid in pids.items():
        used[name] = cpu_seconds(pid) - before[name]
    requests = {k: v - requests_before.get(k, 0) for k, v in apiserver_requests().items()}
    return dict(line.split(" ", 1) for line in out.splitlines()), used, machine, wall, requests


def report(title, args, load):
    result, used, machine, wall, requests = load
    print(f"-- {title}")
    print(f"pods: {result['created']} created ({result['create_errors']} errors, {result['unbound']} never "
          f"bound) = {result['creations_per_second']} creations/s (target {args.rate:.0f}/s)")
    print(f"binds: {result['binds_per_second']} binds/s from the first creation to the last binding")
    print(f"bind latency (create returned -> nodeName seen by a watch): p50 {result['bind_latency_p50_ms']} ms, "
          f"p90 {result['bind_latency_p90_ms']} ms, p99 {result['bind_latency_p99_ms']} ms, "
          f"max {result['bind_latency_max_ms']} ms")
    watch = (f"; watch delay p50 {result['watch_delay_p50_ms']} ms, p99 {result['watch_delay_p99_ms']} ms"
             if "watch_delay_p50_ms" in result else "")
    print(f"the pods' own create call: p50 {result['create_call_p50_ms']} ms, p99 {result['create_call_p99_ms']} ms"
          f"{watch}")
    cores = os.cpu_count() or 1
    share = " ".join(f"{name} {v / wall * 100:.0f}%" for name, v in sorted(used.items(), key=lambda kv: -kv[1]))
    print(f"CPU over {wall:.1f} s ({cores} cores = {cores * 100}%): machine {machine / wall * 100:.0f}%; {share}")
    created = int(result["created"]) or 1
    for kind, verbs in (("writes", lambda v: v in WRITES), ("reads", lambda v: v not in WRITES)):
        some = {k: v for k, v in requests.items() if verbs(k.split(" ")[0])}
        mix = ", ".join(f"{k} {v / created:.2f}" for k, v in sorted(some.items(), key=lambda kv: -kv[1])
                        if v / created >= 0.05)
        print(f"apiserver {kind} per pod created: {sum(some.values()) / created:.1f} ({mix})")
    if "first_error" in result:
        print("first error:", result["first_error"])


def null_round(args, hook):
    """The baseline: the same load, bound by the null scheduler to one kwok node."""
    kwok_node(NULL_NODE, {"fargate-webhook.io/bench": "null"}, 10000)
    shape = (["--node-per-pod"] if args.node_per_pod else []) + (["--bare-node"] if args.bare_node else []) \
        + (["--annotate"] if args.annotate else []) \
        + (["--events", str(args.events)] if args.events else [])
    null = Process([os.environ["NULL_SCHEDULER_BIN"], NULL_NS, NULL_NODE, *shape], os.path.join(hook.base, "null.log"),
                   env={"KUBECONFIG": c.ENV["KUBECONFIG"]}, name="the null scheduler").start()
    try:
        null.wait_ready("the null scheduler watching", lambda: "ready" in null.log(), timeout=30)
        what = ("a node, then a binding, per pod" if args.node_per_pod else "one binding per pod") \
            + (" (a bare node)" if args.bare_node else "") \
            + (", the annotation patch" if args.annotate else "") + (f", {args.events} events" if args.events else "")
        report(f"baseline: the null scheduler ({what})", args,
               run_load(args, NULL_NS, {"webhook": hook, "null": null}))
    finally:
        null.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=100.0, help="pod creations per second")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--in-flight", type=int, default=64, help="creations in flight at once")
    ap.add_argument("--pool", type=int, default=0,
                    help="N > 0: placement pool over N kwok nodes (the chart's default placement); else virtual")
    ap.add_argument("--watch-delay", action="store_true",
                    help="also the watch delay: the load generator watches every pod, not only bound ones "
                         "(about twice the watch events for the apiserver)")
    ap.add_argument("--null", action="store_true",
                    help="the null scheduler's round instead (scheduler.sh --baseline runs it first, on a control "
                         "plane of its own)")
    ap.add_argument("--node-per-pod", action="store_true",
                    help="the null scheduler makes a node per pod and binds the pod to it (virtual placement's "
                         "floor: EKS's shape with nothing else)")
    ap.add_argument("--workers", type=int, default=0, help="the fargate-scheduler's --workers (default: its own)")
    ap.add_argument("--bare-node", action="store_true",
                    help="with --node-per-pod: a node of a name and a capacity only, not the Fargate node object")
    ap.add_argument("--annotate", action="store_true",
                    help="the null scheduler also patches EKS's annotations onto the pod while making the node")
    ap.add_argument("--events", type=int, default=0, help="the null scheduler also sends N events per pod")
    args = ap.parse_args()

    ns = NULL_NS if args.null else NS
    c.ensure_namespace(ns)
    hook = c.start_webhook(profiles=[{"fargateProfileName": "bench", "podExecutionRoleArn": c.ROLE,
                                      "selectors": [{"namespace": ns}]}])
    c.register(hook, "fargate-webhook-sched-bench")
    try:
        if args.null:
            null_round(args, hook)
        else:
            scheduler_round(args, hook)
    finally:
        c.unregister("fargate-webhook-sched-bench")
        hook.stop()
        c.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def scheduler_round(args, hook):
    pool = [f"bench-pool-{i}" for i in range(args.pool)]
    for name in pool:
        kwok_node(name, {"fargate-webhook.io/pool": "bench"}, 1000)
    placement = ["--placement", "pool", "--pool-selector", "fargate-webhook.io/pool=bench"] if pool else []
    port = c.free_port()
    sched = Process([os.environ["FARGATE_WEBHOOK_BIN"], "scheduler", "--state-dir",
                     os.path.join(hook.base, "state"), "--metrics-addr", f"127.0.0.1:{port}",
                     "--lease-name", "bench", *placement, *(["--workers", str(args.workers)] if args.workers else [])], os.path.join(hook.base, "scheduler.log"),
                    env={"KUBECONFIG": c.ENV["KUBECONFIG"], "RUST_LOG": "warn"}, name="the scheduler").start()
    try:
        sched.wait_ready("the scheduler ready", lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), timeout=30)
        load = run_load(args, NS, {"webhook": hook, "scheduler": sched})
        where = f"pool of {len(pool)} nodes" if pool else "virtual"
        report(f"the fargate-scheduler, {where} placement", args, load)
        hist = buckets(http_text(f"http://127.0.0.1:{port}/metrics", timeout=5),
                       "fargate_webhook_scheduler_bind_latency_seconds")
        n = hist.get("+Inf", 0)
        cumulative = " ".join(f"<={le}s:{v / n * 100:.0f}%" for le, v in hist.items()
                              if le in ("0.01", "0.025", "0.05", "0.1", "0.25"))
        print(f"scheduler histogram (seen -> bound), {n:.0f} binds: {cumulative}")
    finally:
        sched.stop()
        if pool:
            c.kubectl("delete", "node", *pool, "--wait=false", check=False)


if __name__ == "__main__":
    main()
