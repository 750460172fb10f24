#!/usr/bin/env bash
# Run the AWS CLI v1 / boto3 suite against freshly started `fargate-webhook serve` processes.
#
#   tests/aws/run.sh [VENV_DIR] [BINARY]
#
# VENV_DIR  virtual environment to create or reuse (default: .venv-aws at the crate root)
# BINARY    fargate-webhook binary to start (default: build target/release/fargate-webhook)
# Extra pytest arguments go in PYTEST_ADDOPTS (e.g. PYTEST_ADDOPTS="-k sigv4").
#
# The suite (tests/aws/conftest.py) starts each server itself, on free loopback ports:
#   BINARY serve --state-dir TMP/state --webhook-addr 127.0.0.1:0 --metrics-addr 127.0.0.1:M \
#     --api-addr 127.0.0.1:P --create-delay 1s --delete-delay 1s --public-subnets ... [test flags]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${1:-$root/.venv-aws}"
binary="${2:-}"

bash "$root/tests/aws/venv.sh" "$venv"
venv="$(cd "$venv" && pwd)"

if [ -z "$binary" ]; then
    echo "== building fargate-webhook (release)"
    (cd "$root" && cargo build --release --locked --bin fargate-webhook)
    binary="$root/target/release/fargate-webhook"
fi
binary="$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")"
[ -x "$binary" ] || { echo "no executable at $binary" >&2; exit 1; }

echo "== AWS CLI / boto3 suite against $binary"
cd "$root/tests/aws"
export FARGATE_WEBHOOK_BIN="$binary"
exec "$venv/bin/python" -m pytest -p no:cacheprovider -q -rf
