"""End-to-end costs against the real control plane (tests/cluster/up.sh). Run by benches/cluster.sh.

1. Pod creations through kube-apiserver under four registrations, in one run and alternating rounds: no
   webhook; a null webhook (examples/null_webhook.rs: allowed, no patch); fargate-webhook with generated
   matchConditions for pods its profile selects (called and patched) and for pods no profile selects (not
   called). The same client (N threads, one keep-alive TLS connection each, POST /api/v1/namespaces/NS/pods),
   the same concurrency, the same number of pods. Prints pods/s, p50/p99 create latency and the CPU per pod
   of kube-apiserver, etcd and the webhook.
2. Profile propagation: three `serve --store kubernetes` replicas; a FargateProfile is created through
   the apiserver (what `kubectl apply` sends) and each replica's webhook is polled with an
   AdmissionReview until it answers with the mutation. Prints p50/p99 of the delay to every replica.
"""

import argparse
import http.client
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "cluster"))
import conftest as c  # noqa: E402  (the suite's helpers: kubectl, serve processes, registration)
from pysupport import control_plane_pid, cpu_seconds  # noqa: E402


class ApiClient:
    """One keep-alive HTTPS connection to kube-apiserver with the admin client certificate."""

    def __init__(self):
        pki = os.path.dirname(c.ENV["CLUSTER_CA"])
        ctx = ssl.create_default_context(cafile=c.ENV["CLUSTER_CA"])
        ctx.load_cert_chain(os.path.join(pki, "admin.crt"), os.path.join(pki, "admin.key"))
        host, port = c.ENV["APISERVER"].removeprefix("https://").split(":")
        self.conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=60)

    def request(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        self.conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        payload = r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {payload[:300]!r}")
        return json.loads(payload)


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def create_pods(ns, count, concurrency, expect_scheduler):
    latencies, errors = [], []
    lock = threading.Lock()
    per_thread = count // concurrency

    def worker(t):
        client = ApiClient()
        local = []
        for i in range(per_thread):
            body = c.pod(f"p-{t}-{i}", ns, labels={"app": "bench"})
            start = time.perf_counter()
            try:
                stored = client.request("POST", f"/api/v1/namespaces/{ns}/pods", body)
            except Exception as e:  # noqa: BLE001  (reported, and the run fails)
                errors.append(str(e))
                continue
            local.append(time.perf_counter() - start)
            if stored["spec"]["schedulerName"] != expect_scheduler:
                errors.append(f"pod {stored['metadata']['name']}: schedulerName {stored['spec']['schedulerName']}")
        with lock:
            latencies.extend(local)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(concurrency)]
    start = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise SystemExit(f"{len(errors)} errors, first: {errors[0]}")
    return len(latencies) / elapsed, percentile(latencies, 50), percentile(latencies, 99), len(latencies)


def delete_pods(ns):
    """One deletecollection call (kubectl would delete pod by pod under its client rate limit); pods
    that were never scheduled go at once. Then wait until the namespace lists none."""
    client = ApiClient()
    client.request("DELETE", f"/api/v1/namespaces/{ns}/pods")
    c.wait_until(f"the pods of {ns} gone",
                 lambda: not client.request("GET", f"/api/v1/namespaces/{ns}/pods?limit=1")["items"],
                 timeout=300, interval=0.5)


class NullWebhook(c.Process):
    """examples/null_webhook.rs: answers every review `allowed: true`, no patch (the "webhook that does
    nothing" baseline), with a certificate from `fargate-webhook certs generate`."""

    def __init__(self, base):
        certs = os.path.join(base, "certs")
        subprocess.run([os.environ["FARGATE_WEBHOOK_BIN"], "certs", "generate", "--ip", "127.0.0.1",
                          "--out", certs], check=True, capture_output=True)
        self.port = c.free_port()
        self.ca = os.path.join(certs, "ca.crt")
        self.url = f"https://127.0.0.1:{self.port}/mutate"
        super().__init__([os.environ["NULL_WEBHOOK_BIN"], f"127.0.0.1:{self.port}", os.path.join(certs, "tls.crt"),
                          os.path.join(certs, "tls.key")], os.path.join(base, "null.log"), cwd=base, name="null-webhook")


def condition_seconds():
    """The apiserver's own time evaluating webhook matchConditions so far (its histogram's sum)."""
    text = c.kubectl("get", "--raw", "/metrics").stdout
    return c.metric_sum(text, "apiserver_admission_match_condition_evaluation_seconds_sum")


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


# (mode, namespace of the pods, the scheduler they must end with)
MODES = [
    ("no webhook", "bench", "default-scheduler"),
    ("null webhook", "bench", "default-scheduler"),
    ("every pod", "bench", "fargate-scheduler"),
    ("selected", "bench", "fargate-scheduler"),
    ("not selected", "bench-other", "default-scheduler"),
]


def bench_pods(args):
    """Pod creations in one run under five registrations: none; the null webhook; fargate-webhook as the chart
    registers it without generated matchConditions (every pod called, these mutated: the null webhook plus the
    patch); fargate-webhook with them for pods its profile selects, and for pods no profile selects (kept away
    before the call). Prints pods/s, create p50/p99 and CPU per pod of the apiserver, etcd and the
    webhook, for each round and as medians."""
    for ns in ("bench", "bench-other"):
        c.ensure_namespace(ns)
    config = "fargate-webhook-bench"
    hook = c.start_webhook("--generate-match-conditions", "--webhook-configuration", config,
                           "--namespace-selector-exclude", "fargate-system",
                           profiles=[{"fargateProfileName": "bench", "podExecutionRoleArn": c.ROLE,
                                      "selectors": [{"namespace": "bench"}]}],
                           env={"KUBECONFIG": c.ENV["KUBECONFIG"]})
    plain = c.start_webhook(profiles=[{"fargateProfileName": "bench", "podExecutionRoleArn": c.ROLE,
                                       "selectors": [{"namespace": "bench"}]}])
    null = NullWebhook(hook.base)
    null.start()
    null.wait_ready("the null webhook listening", lambda: listening(null.port), timeout=30)
    rows = []
    try:
        for rnd in range(args.rounds):
            for mode, ns, expect in MODES:
                delete_pods(ns)
                c.unregister(config)
                if mode == "null webhook":
                    c.register(null, config)
                elif mode == "every pod":
                    c.register(plain, config)
                elif mode != "no webhook":
                    c.register(hook, config)
                    c.wait_until("the generated configuration written", lambda: "bench" in json.dumps(
                        c.kjson("get", "mutatingwebhookconfiguration", config)["webhooks"]), timeout=30)
                time.sleep(1)  # the apiserver picks up configuration changes asynchronously
                pids = {"apiserver": control_plane_pid("kube-apiserver"), "etcd": control_plane_pid("etcd"),
                        "webhook": {"null webhook": null.proc.pid, "every pod": plain.proc.pid}.get(mode, hook.proc.pid)}
                cpu_before = {k: cpu_seconds(v) for k, v in pids.items()}
                cel_before = condition_seconds()
                rate, p50, p99, n = create_pods(ns, args.pods, args.concurrency, expect)
                cpu = {k: (cpu_seconds(v) - cpu_before[k]) / n * 1e6 for k, v in pids.items()}
                cel = (condition_seconds() - cel_before) / n * 1e6
                if mode == "no webhook":
                    cpu["webhook"] = 0.0
                rows.append((mode, rate, p50, p99, cpu["apiserver"], cpu["webhook"], cel))
                print(f"round {rnd + 1} {mode:>12}: {n} pods, {args.concurrency} threads: "
                      f"{rate:7.1f} pods/s  p50 {p50 * 1000:6.2f} ms  p99 {p99 * 1000:6.2f} ms  CPU per pod: "
                      f"apiserver {cpu['apiserver']:.0f} µs, etcd {cpu['etcd']:.0f} µs, webhook {cpu['webhook']:.0f} µs; "
                      f"matchConditions evaluated in {cel:.1f} µs per pod", flush=True)
    finally:
        c.unregister(config)
        hook.stop()
        plain.stop()
        null.stop()
        for ns in ("bench", "bench-other"):
            delete_pods(ns)
    medians = {}
    for mode, _, _ in MODES:
        sel = [r for r in rows if r[0] == mode]
        m = [statistics.median(r[k] for r in sel) for k in range(1, 7)]
        medians[mode] = m
        print(f"median of {len(sel)} rounds, {mode:>12}: {m[0]:7.1f} pods/s  p50 {m[1] * 1000:6.2f} ms  "
              f"p99 {m[2] * 1000:6.2f} ms  apiserver CPU per pod {m[3]:.0f} µs  webhook CPU per pod {m[4]:.0f} µs  "
              f"matchConditions {m[5]:.1f} µs per pod")
    base = medians["no webhook"][3]
    for mode in ("null webhook", "every pod", "selected", "not selected"):
        print(f"apiserver CPU per pod, {mode} vs no webhook: {(medians[mode][3] / base - 1) * 100:+.1f} %")


def bench_propagation(args):
    c.kubectl("apply", "--server-side", "--force-conflicts", "-f", c.CRD)
    c.kubectl("wait", "--for=condition=Established", "crd/fargateprofiles.fargate-webhook.io", "--timeout=60s")
    c.ensure_namespace("fw-store")
    replicas = [c.start_webhook("--store", "kubernetes",
                                env={"KUBECONFIG": c.ENV["KUBECONFIG"], "POD_NAMESPACE": "fw-store"})
                for _ in range(3)]
    client = ApiClient()
    path = "/apis/fargate-webhook.io/v1alpha1/fargateprofiles"
    pod = {"metadata": {"name": "p", "namespace": "propagation", "labels": {"app": "x"}},
           "spec": {"containers": [{"name": "c", "image": "i"}]}}
    per_replica, to_all = [], []
    try:
        # Apply -1 is a warm-up, reported but not counted: the first events of a freshly watched
        # resource arrive late (2 s on all three replicas at once here).
        for i in range(-1, args.applies):
            name = f"prop-{i + 1}"
            body = {"apiVersion": "fargate-webhook.io/v1alpha1", "kind": "FargateProfile",
                    "metadata": {"name": name},
                    "spec": {"podExecutionRoleArn": c.ROLE, "selectors": [{"namespace": "propagation"}]}}
            seen = [None] * len(replicas)

            def poll(k, start):
                while time.perf_counter() - start < 30:
                    patch = replicas[k].review(pod)
                    if any(op.get("value") == name for op in patch):
                        seen[k] = time.perf_counter() - start
                        return

            start = time.perf_counter()
            client.request("POST", path, body)
            threads = [threading.Thread(target=poll, args=(k, start)) for k in range(len(replicas))]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            if None in seen:
                raise SystemExit(f"apply {i}: a replica never matched within 30 s: {seen}")
            if i < 0:
                print("warm-up apply: " + ", ".join(f"replica {k} {t * 1000:.0f} ms" for k, t in enumerate(seen)),
                      flush=True)
            else:
                per_replica.extend(seen)
                to_all.append(max(seen))
            if i >= 0 and max(seen) > 0.5:
                print(f"apply {i}: slow: " + ", ".join(f"replica {k} {t * 1000:.0f} ms" for k, t in enumerate(seen)),
                      flush=True)
            client.request("DELETE", f"{path}/{name}")
            c.wait_until("profile gone on every replica", lambda: all(r.review(pod) == [] for r in replicas), timeout=30)
    finally:
        for r in replicas:
            r.stop()
    print(f"profile apply -> replica matching, {args.applies} applies x 3 replicas: "
          f"per replica p50 {percentile(per_replica, 50) * 1000:.1f} ms p99 {percentile(per_replica, 99) * 1000:.1f} ms; "
          f"every replica p50 {percentile(to_all, 50) * 1000:.1f} ms p99 {percentile(to_all, 99) * 1000:.1f} ms "
          f"max {max(to_all) * 1000:.1f} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--applies", type=int, default=50)
    ap.add_argument("--only", choices=["pods", "propagation"])
    args = ap.parse_args()
    if args.only in (None, "pods"):
        bench_pods(args)
    if args.only in (None, "propagation"):
        bench_propagation(args)


if __name__ == "__main__":
    main()
