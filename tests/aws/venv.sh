#!/usr/bin/env bash
# Creates (or reuses) the Python virtual environment the AWS CLI and cluster suites run in, with the
# real AWS CLI v1, boto3, pytest and PyYAML from PyPI.   bash tests/aws/venv.sh VENV_DIR
set -euo pipefail
venv="$1"
if [ ! -x "$venv/bin/python" ]; then
    echo "== creating the virtual environment $venv"
    python3 -m venv "$venv"
fi
echo "== installing awscli (v1), boto3, pytest and PyYAML from PyPI"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade awscli boto3 pytest pyyaml
"$venv/bin/python" -m awscli --version
