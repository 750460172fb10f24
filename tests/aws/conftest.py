"""Fixtures: start `fargate-webhook serve` on free loopback ports and drive it with the real AWS
CLI v1 (`python -m awscli`, from this virtual environment) and boto3.

Environment:
  FARGATE_WEBHOOK_BIN  the binary to start (required), run as `BIN serve ...`.
"""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import pytest

from ekscli import (  # noqa: F401  (re-exported to the tests)
    CLUSTER, PUBLIC_SUBNET, REGION, ROLE, SUBNET_A, SUBNET_B, CliResult, aws_cli, aws_env, eks_client, free_port,
)


@dataclass
class Server:
    url: str
    metrics_url: str
    state_dir: str
    proc: subprocess.Popen
    log_path: str
    access_key: str = "x"
    secret_key: str = "y"
    extra: list = field(default_factory=list)

    def aws(self, *args, access_key=None, secret_key=None, timeout=300):
        return aws_cli(self.url, *args, access_key=access_key or self.access_key,
                       secret_key=secret_key or self.secret_key, timeout=timeout)

    def client(self, access_key=None, secret_key=None):
        return eks_client(self.url, access_key or self.access_key, secret_key or self.secret_key)

    def metrics(self):
        with urllib.request.urlopen(self.metrics_url, timeout=10) as r:
            return r.read().decode()

    def api_requests(self, operation, code="ok"):
        """fargate_webhook_api_requests_total{operation=..., code=...} as seen on /metrics."""
        total = 0
        for line in self.metrics().splitlines():
            if not line.startswith("fargate_webhook_api_requests_total{"):
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if labels.get("operation") == operation and labels.get("code") == code:
                total += int(float(line.rsplit(" ", 1)[1]))
        return total

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(*extra, empty=True):
    binary = os.environ.get("FARGATE_WEBHOOK_BIN")
    if not binary:
        pytest.fail("set FARGATE_WEBHOOK_BIN to the fargate-webhook binary (tests/aws/run.sh does)")
    base = tempfile.mkdtemp(prefix="fargate-aws-")
    # The state directory is watched by the server: keep the log and certificates out of it.
    state_dir = os.path.join(base, "state")
    os.makedirs(state_dir)
    if empty:
        with open(os.path.join(state_dir, "profiles.json"), "w") as f:
            f.write('{"fargateProfiles": []}\n')
    api_port, metrics_port = free_port(), free_port()
    flags = {
        "--state-dir": state_dir,
        "--tls-cert": os.path.join(base, "tls.crt"),
        "--tls-key": os.path.join(base, "tls.key"),
        "--webhook-addr": "127.0.0.1:0",
        "--metrics-addr": f"127.0.0.1:{metrics_port}",
        "--api-addr": f"127.0.0.1:{api_port}",
        "--create-delay": "1s",
        "--delete-delay": "1s",
        "--public-subnets": PUBLIC_SUBNET,
    }
    # `extra` is flag/value pairs; they override the defaults above (clap refuses repeats).
    assert len(extra) % 2 == 0, extra
    flags.update(zip(extra[::2], extra[1::2]))
    cmd = [binary, "serve"] + [word for pair in flags.items() for word in pair]
    log_path = os.path.join(base, "server.log")
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=base)
    server = Server(
        url=f"http://127.0.0.1:{api_port}",
        metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
        state_dir=base,
        proc=proc,
        log_path=log_path,
        extra=list(extra),
    )
    deadline = time.time() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{server.log()}")
        try:
            urllib.request.urlopen(f"{server.url}/clusters/{CLUSTER}/fargate-profiles", timeout=2).read()
            break
        except urllib.error.HTTPError:
            break  # it answers (e.g. 403 when SigV4 is on)
        except OSError:
            if time.time() > deadline:
                server.stop()
                pytest.fail(f"server did not answer within 60 s:\n{server.log()}")
            time.sleep(0.1)
    return server


@pytest.fixture(scope="module")
def server():
    s = start_server()
    yield s
    s.stop()
    shutil.rmtree(s.state_dir, ignore_errors=True)


@pytest.fixture
def fresh_server():
    """A server of its own, for tests that need an empty cluster; extra flags via start()."""
    started = []

    def start(*extra):
        s = start_server(*extra)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
        shutil.rmtree(s.state_dir, ignore_errors=True)
