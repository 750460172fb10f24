"""The fargate-scheduler's bind latency and rate against the real control plane, kwok playing the kubelet
of the virtual nodes (KWOK=1 tests/cluster/up.sh). Run by benches/scheduler.sh.

Pods are created at a steady rate (default 100 per second) through kube-apiserver with the webhook
registered (so each pod is mutated first, as on EKS); a watch records when each pod is first seen with a
`nodeName`. Bind latency = that moment minus the moment its create call returned (the client's clock for
both). Prints the achieved creation rate, binds per second over the run, and p50/p90/p99 bind latency,
plus the scheduler's own histogram (seen-to-bound, excluding the watch delay).
"""

import argparse
import http.client
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "cluster"))
import conftest as c  # noqa: E402
from cluster import ApiClient, percentile  # noqa: E402

NS = "bench-sched"


def watch_bound(stop, bound, ready, resumed):
    """Record the first time each pod of NS is seen with a nodeName. The watch asks only for bound pods
    (`spec.nodeName!=`), so a pod arrives as ADDED when it is bound. The apiserver closes a watch whose
    reader falls behind; the watch then resumes from a fresh list, and pods first seen in that list are
    counted in `resumed` (their time is late: reported, not hidden)."""
    pki = os.path.dirname(c.ENV["CLUSTER_CA"])
    ctx = ssl.create_default_context(cafile=c.ENV["CLUSTER_CA"])
    ctx.load_cert_chain(os.path.join(pki, "admin.crt"), os.path.join(pki, "admin.key"))
    host, port = c.ENV["APISERVER"].removeprefix("https://").split(":")
    path = f"/api/v1/namespaces/{NS}/pods?fieldSelector=spec.nodeName%21%3D"
    first = True
    while not stop.is_set():
        listed = ApiClient().request("GET", path)
        for item in listed["items"]:
            name = item["metadata"]["name"]
            if name not in bound:
                bound[name] = time.monotonic()
                resumed.append(name)
        conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=600)
        rv = listed["metadata"]["resourceVersion"]
        conn.request("GET", f"{path}&watch=1&resourceVersion={rv}&allowWatchBookmarks=false")
        r = conn.getresponse()
        if first:
            ready.set()
            first = False
        while not stop.is_set():
            line = r.readline()
            if not line:
                break
            event = json.loads(line)
            if event["type"] == "ERROR":
                break
            name = event["object"]["metadata"].get("name")
            if name not in bound:
                bound[name] = time.monotonic()
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=100.0, help="pod creations per second")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=8)
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
    log = open(os.path.join(hook.base, "scheduler.log"), "ab")
    sched = subprocess.Popen([os.environ["FARGATE_WEBHOOK_BIN"], "scheduler", "--state-dir",
                              os.path.join(hook.base, "state"), "--metrics-addr", f"127.0.0.1:{port}",
                              "--lease-name", "bench", *placement], stdout=log, stderr=subprocess.STDOUT,
                             env=dict(os.environ, KUBECONFIG=c.ENV["KUBECONFIG"], RUST_LOG="warn"))
    try:
        def ready():
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200
            except OSError:
                return False
        c.wait_until("the scheduler ready", ready, timeout=30)
        stop, ready, bound, resumed = threading.Event(), threading.Event(), {}, []
        watcher = threading.Thread(target=watch_bound, args=(stop, bound, ready, resumed), daemon=True)
        watcher.start()
        ready.wait(10)

        total = int(args.rate * args.seconds)
        created, errors = {}, []
        start = time.monotonic()

        def creator(t):
            api = ApiClient()
            for i in range(t, total, args.threads):
                due = start + i / args.rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                name = f"p-{i}"
                body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}}
                try:
                    api.request("POST", f"/api/v1/namespaces/{NS}/pods", body)
                    created[name] = time.monotonic()
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(str(e))
        threads = [threading.Thread(target=creator, args=(t,)) for t in range(args.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        creating = time.monotonic() - start
        c.wait_until("every pod bound", lambda: all(n in bound for n in created), timeout=300, interval=0.5)
        stop.set()
        latencies = [(bound[n] - created[n]) * 1000 for n in created]
        first, last = min(created.values()), max(bound[n] for n in created)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        hist = {}
        for line in text.splitlines():
            if line.startswith("fargate_webhook_scheduler_bind_latency_seconds_bucket"):
                le = line.split('le="')[1].split('"')[0]
                hist[le] = float(line.rsplit(" ", 1)[1])
        print(f"placement: {'pool of ' + str(len(pool)) + ' nodes' if pool else 'virtual'}")
        print(f"pods: {len(created)} created ({len(errors)} errors) in {creating:.1f} s = "
              f"{len(created) / creating:.1f} creations/s (target {args.rate:.0f}/s)")
        print(f"binds: {len(created) / (last - first):.1f} binds/s from the first creation to the last binding")
        print(f"bind latency (create returned -> nodeName seen by a watch): p50 {percentile(latencies, 50):.1f} ms, "
              f"p90 {percentile(latencies, 90):.1f} ms, p99 {percentile(latencies, 99):.1f} ms, "
              f"max {max(latencies):.1f} ms")
        n = hist.get("+Inf", 0)
        cumulative = " ".join(f"<={le}s:{v / n * 100:.0f}%" for le, v in hist.items() if le in ("0.01", "0.025", "0.05", "0.1", "0.25"))
        print(f"scheduler histogram (seen -> bound), {n:.0f} binds: {cumulative}")
        if resumed:
            print(f"the watch fell behind and was resumed from a list: {len(resumed)} pods first seen late")
        if errors:
            print("first errors:", errors[:3])
    finally:
        sched.terminate()
        sched.wait(timeout=30)
        c.unregister("fargate-webhook-sched-bench")
        hook.stop()
        c.kubectl("delete", "namespace", NS, "--wait=false", check=False)
        if pool:
            c.kubectl("delete", "node", *pool, "--wait=false", check=False)


if __name__ == "__main__":
    main()
