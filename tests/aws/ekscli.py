"""What the AWS CLI/boto3 suites share (this one and tests/cluster/): the reference cluster's names,
free loopback ports, a clean environment for the CLI, and the CLI's result."""

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass

import boto3
import botocore.config

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




def aws_cli(url, *args, access_key="x", secret_key="y", timeout=300):
    """`aws eks ARGS --endpoint-url URL --output json` with the real AWS CLI v1 of this environment."""
    cmd = [sys.executable, "-m", "awscli", "eks", *args, "--endpoint-url", url, "--output", "json"]
    proc = subprocess.run(cmd, env=aws_env(access_key, secret_key), capture_output=True, text=True, timeout=timeout)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def eks_client(url, access_key="x", secret_key="y"):
    session = boto3.session.Session(aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=REGION)
    return session.client("eks", endpoint_url=url, config=botocore.config.Config())
