"""What the Python suites and benches share (tests/aws, tests/cluster, benches): a process whose output
goes to a log file, started, waited for and stopped as the suites need, a reader of the Prometheus
text format the servers' /metrics answer in, and the CPU time of the processes a bench measures.

Import it with `tests/` on `sys.path` (the suites' conftest.py files put it there).
"""

import os
import re
import signal
import subprocess
import time
import urllib.request


class Process:
    """A long-running process; its output is appended to `log_path`, so a restart keeps the story."""

    def __init__(self, args, log_path, cwd=None, env=None, name=None):
        self.args = list(args)
        self.log_path = log_path
        self.cwd = cwd
        self.env = dict(env or {})  # added to this process's environment
        self.name = name or os.path.basename(self.args[0])
        self.proc = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd,
                                         env=dict(os.environ, **self.env))
        return self

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self):
        """Fail, with the log, if the process has exited."""
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")

    def wait_ready(self, what, ready, timeout=60.0, interval=0.1):
        """Poll `ready()` until it is true. Fails with the log if the process exits first, or stops it and
        fails if `timeout` seconds pass."""
        deadline = time.time() + timeout
        while True:
            self.check_alive()
            if ready():
                return
            if time.time() > deadline:
                self.stop()
                raise AssertionError(f"timed out after {timeout}s waiting for {what}:\n{self.log()}")
            time.sleep(interval)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Send `sig` and wait for the exit; SIGKILL when it has not exited within `timeout` seconds."""
        if self.running():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def http_text(url, timeout=10):
    """The body of a GET, decoded."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def http_ok(url, timeout=2):
    """Whether a GET answers 200 (an ops port's /readyz); never raises for a refused or failed call."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except OSError:  # urllib.error.URLError and HTTPError are OSErrors
        return False


# A sample line of the text format: name, optional {labels}, value, optional timestamp.
_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text):
    """(name, labels, value) of every sample of a Prometheus text exposition; comments are skipped."""
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            yield m[1], dict(_LABEL.findall(m[2] or "")), float(m[3])


def metric_sum(text, metric, /, **labels):
    """The sum of the samples of `metric` whose labels include `labels` (0.0 when there is none); a label
    may be called `name`, as the apiserver's webhook metrics have it."""
    want = {k: str(v) for k, v in labels.items()}
    return sum((value for n, have, value in samples(text)
                if n == metric and all(have.get(k) == v for k, v in want.items())), 0.0)


def buckets(text, histogram):
    """The cumulative buckets of a histogram: {le: count}, in the exposition's order ("+Inf" last)."""
    return {have["le"]: value for n, have, value in samples(text) if n == histogram + "_bucket"}


def cpu_seconds(pid):
    """utime + stime of a process, in seconds (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def control_plane_pid(name):
    """The pid tests/cluster/up.sh recorded for `name` in $FW_CLUSTER_DIR/pids."""
    with open(os.path.join(os.environ["FW_CLUSTER_DIR"], "pids")) as f:
        for line in f:
            n, pid = line.split()
            if n == name:
                return int(pid)
    raise SystemExit(f"no {name} in the cluster's pids")
