#!/usr/bin/env bash
# Release (run by a maintainer, with docker buildx and helm logged in to the registry):
#   scripts/release.sh REGISTRY            e.g. ghcr.io/my-org
# Builds the image for linux/amd64 and linux/arm64 on digest-pinned base images, stamps the OCI labels
# (version, revision, created, source, licenses), pushes it, then packages the chart with that image's
# digest and pushes it as an OCI artifact (oci://REGISTRY/charts).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: scripts/release.sh REGISTRY" >&2; exit 2; }
registry="$1"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
revision="$(git rev-parse --short=12 HEAD)"
created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
# The image's `source` label and the chart's `home`/`sources`: the origin remote, as an https address.
source_url="$(git config --get remote.origin.url)" \
  || { echo "release.sh: no origin remote: the image and the chart name their source" >&2; exit 1; }
[[ "$source_url" =~ ^git@([^:]+):(.+)$ ]] && source_url="https://${BASH_REMATCH[1]}/${BASH_REMATCH[2]}"
source_url="${source_url%.git}"
[ -z "$(git status --porcelain)" ] || { echo "release.sh: the work tree is not clean" >&2; exit 1; }
# No release with a known advisory against Cargo.lock, nor without having checked (scripts/advisories.sh).
bash scripts/advisories.sh || { echo "release.sh: cargo deny advisories did not pass" >&2; exit 1; }
# Base images by digest: what the tag points to today, recorded in the image's build arguments.
digest_of() { docker buildx imagetools inspect "$1" --format '{{json .Manifest.Digest}}' | tr -d '"'; }
rust_image="rust:1-bookworm@$(digest_of rust:1-bookworm)"
runtime_image="gcr.io/distroless/static-debian12:nonroot@$(digest_of gcr.io/distroless/static-debian12:nonroot)"
image="$registry/fargate-webhook:$version"
docker buildx build --platform linux/amd64,linux/arm64 \
  --build-arg RUST_IMAGE="$rust_image" --build-arg RUNTIME_IMAGE="$runtime_image" \
  --build-arg VERSION="$version" --build-arg GIT_REVISION="$revision" \
  --build-arg CREATED="$created" --build-arg SOURCE="$source_url" \
  --tag "$image" --push .
image_digest="$(digest_of "$image")"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
# The packaged chart pulls exactly this image and names the repository it came from.
package="$(bash scripts/package-chart.sh "$registry/fargate-webhook" "$image_digest" "$source_url" "$version" "$work")"
helm push "$package" "oci://$registry/charts"
echo "released $image ($image_digest) and oci://$registry/charts/fargate-webhook:$version"
