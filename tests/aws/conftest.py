"""Fixtures: start `fargate-webhook serve` on free loopback ports and drive it with the real AWS
CLI v1 (`python -m awscli`, from this virtual environment) and boto3.

Environment:
  FARGATE_WEBHOOK_BIN  the binary to start (required), run as `BIN serve ...`.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import boto3
import botocore.config
import pytest

REGION = "us-west-2"
CLUSTER = "fargate"
ROLE = "arn:aws:iam::012345678910:role/AmazonEKSPodExecutionRole"
SUBNET_A = "subnet-0420a37ee456daf3f"
SUBNET_B = "subnet-09a8afb8db4f02d21"
PUBLIC_SUBNET = "subnet-0aaaaaaaaaaaaaaaa"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def aws_env(access_key="x", secret_key="y"):
    """A clean environment for the CLI: dummy credentials, no config files, default retries."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_") and k not in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
    }
    env.update(
        AWS_ACCESS_KEY_ID=access_key,
        AWS_SECRET_ACCESS_KEY=secret_key,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        NO_PROXY="*",
    )
    return env


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self):
        return json.loads(self.stdout)

    def error_line(self):
        """The CLI's `An error occurred (...) when calling the ... operation: ...` line."""
        for line in self.stderr.splitlines():
            if line.startswith("An error occurred ("):
                return line
        return None


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
        cmd = [sys.executable, "-m", "awscli", "eks", *args, "--endpoint-url", self.url, "--output", "json"]
        proc = subprocess.run(
            cmd,
            env=aws_env(access_key or self.access_key, secret_key or self.secret_key),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    def client(self, access_key=None, secret_key=None):
        session = boto3.session.Session(
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name=REGION,
        )
        return session.client("eks", endpoint_url=self.url, config=botocore.config.Config())

    def metrics(self):
        with urllib.request.urlopen(self.metrics_url, timeout=10) as r:
            return r.read().decode()

    def api_requests(self, operation, code=""):
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
