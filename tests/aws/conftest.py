"""Fixtures: start `fargate-webhook serve` on free loopback ports and drive it with the real AWS
CLI v1 (`python -m awscli`, from this virtual environment) and boto3.

Environment:
  FARGATE_WEBHOOK_BIN  the binary to start (required), run as `BIN serve ...`.
"""

import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request

import pytest

from ekscli import (  # noqa: F401  (re-exported to the tests)
    CLUSTER, PUBLIC_SUBNET, REGION, ROLE, SUBNET_A, SUBNET_B, CliResult, aws_cli, aws_env, eks_client, free_port,
)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pysupport import Process, http_text, metric_sum  # noqa: E402  (tests/pysupport)


class Server(Process):
    """A `fargate-webhook serve` process, its EKS API at `url`, its log beside its state directory."""

    def __init__(self, args, base, api_port, metrics_port, extra=()):
        super().__init__(args, os.path.join(base, "server.log"), cwd=base, name="server")
        self.url = f"http://127.0.0.1:{api_port}"
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.state_dir = base
        self.access_key = "x"
        self.secret_key = "y"
        self.extra = list(extra)

    def aws(self, *args, access_key=None, secret_key=None, timeout=300):
        return aws_cli(self.url, *args, access_key=access_key or self.access_key,
                       secret_key=secret_key or self.secret_key, timeout=timeout)

    def client(self, access_key=None, secret_key=None):
        return eks_client(self.url, access_key or self.access_key, secret_key or self.secret_key)

    def metrics(self):
        return http_text(self.metrics_url)

    def api_requests(self, operation, code="ok"):
        """fargate_webhook_api_requests_total{operation=..., code=...} as seen on /metrics."""
        return int(metric_sum(self.metrics(), "fargate_webhook_api_requests_total", operation=operation, code=code))

    def answers(self):
        """Whether the EKS API answers at all (any HTTP status: 403 when SigV4 is on)."""
        try:
            urllib.request.urlopen(f"{self.url}/clusters/{CLUSTER}/fargate-profiles", timeout=2).read()
            return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False


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
    server = Server(cmd, base, api_port, metrics_port, extra).start()
    try:
        server.wait_ready("the server's EKS API", server.answers, timeout=60)
    except AssertionError as e:
        pytest.fail(str(e))
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
