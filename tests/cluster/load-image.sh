#!/usr/bin/env bash
# Puts a container image on the real node of a NODE=1 cluster (tests/cluster/up.sh), with no registry
# and no container engine:
#   bash tests/cluster/load-image.sh DIR            the project's image, made from the binary
#                                                   (FARGATE_WEBHOOK_BIN, or target/debug/fargate-webhook
#                                                   built now) by node/image.py
#   bash tests/cluster/load-image.sh DIR ARCHIVE    a docker-archive or OCI-layout tar (`docker save`,
#                                                   `buildah push oci-archive:`), imported as it is
# The last line on stdout is the image reference the node now has: give it to the chart as
# image.repository/image.tag with image.pullPolicy=Never.
#
# The made image is the Dockerfile's, but for what the binary carries: the release image holds a static
# musl binary, and the musl target cannot be installed here, so this image carries the glibc binary and
# every shared library it links (with the loader), and nothing else; its user, entrypoint, command, ports
# and labels are read from the Dockerfile's final stage.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
die() { echo "load-image.sh: $*" >&2; exit 1; }
[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: bash tests/cluster/load-image.sh DIR [ARCHIVE]"
dir="$(cd "$1" && pwd)"
address="$(awk -F= '$1=="CONTAINERD_ADDRESS" {print $2}' "$dir/env" 2>/dev/null)"
[ -n "$address" ] && [ -S "$address" ] || die "$dir has no real node up (NODE=1 bash tests/cluster/up.sh $dir)"
ctr() { command ctr --address "$address" --namespace k8s.io "$@"; }

if [ $# -eq 2 ]; then
  archive="$2"
  [ -f "$archive" ] || die "no archive at $archive"
else
  binary="${FARGATE_WEBHOOK_BIN:-}"
  if [ -z "$binary" ]; then
    (cd "$root" && cargo build --locked --bin fargate-webhook >&2)
    binary="${CARGO_TARGET_DIR:-$root/target}/debug/fargate-webhook"
  fi
  [ -x "$binary" ] || die "no executable at $binary"
  work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
  # Debug information is of no use in the image and is most of a debug build's size.
  strip --strip-debug -o "$work/fargate-webhook" "$binary" 2>/dev/null || cp "$binary" "$work/fargate-webhook"
  tag="dev-$(sha256sum "$work/fargate-webhook" | cut -c1-12)"
  version="$(awk -F'"' '/^version = / {print $2; exit}' "$root/Cargo.toml")"
  revision="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
  VERSION="$version" GIT_REVISION="$revision" CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    python3 "$root/tests/cluster/node/image.py" project "$work/fargate-webhook" "$root/Dockerfile" \
      "$work/image.tar" "localhost/fargate-webhook:$tag"
  archive="$work/image.tar"
fi
out="$(ctr images import "$archive" 2>&1)" || die "ctr images import failed: $out"
echo "$out" >&2
ref="$(echo "$out" | sed -n 's/^unpacking \([^ ]*\) (sha256:.*/\1/p' | tail -n1)"
[ -n "$ref" ] || die "ctr images import named no image"
echo "$ref"
