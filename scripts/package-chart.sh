#!/usr/bin/env bash
# Packages the chart for a release (scripts/release.sh calls it; tests/helm_chart.rs checks it):
#   scripts/package-chart.sh IMAGE_REPOSITORY IMAGE_DIGEST SOURCE_URL VERSION OUTDIR
# The packaged chart pulls exactly IMAGE_REPOSITORY@IMAGE_DIGEST by default, and its Chart.yaml names the
# project's public repository (`home`, `sources`): SOURCE_URL, an https address.
# Prints the path of the .tgz. Uses $HELM, or helm on PATH.
set -euo pipefail
[ $# -eq 5 ] || {
  echo "usage: scripts/package-chart.sh IMAGE_REPOSITORY IMAGE_DIGEST SOURCE_URL VERSION OUTDIR" >&2
  exit 2
}
repository="$1" digest="$2" source_url="$3" version="$4" outdir="$5"
root="$(cd "$(dirname "$0")/.." && pwd)"
die() { echo "package-chart.sh: $*" >&2; exit 2; }

[[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || die "IMAGE_DIGEST must be sha256:<64 hex digits>, not '$digest'"
[[ "$repository" =~ ^[a-z0-9][a-z0-9._/:-]*$ ]] || die "IMAGE_REPOSITORY '$repository' is not an image name"
[[ "$source_url" =~ ^https://[^/]+/.+ ]] || die "SOURCE_URL '$source_url' is not an https repository address"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chart="$work/fargate-webhook"
cp -r "$root/charts/fargate-webhook" "$chart"
# values.yaml: the image block's repository and digest, each exactly once (refuse if its layout moved).
sed -i "s|^  repository: fargate-webhook\$|  repository: $repository|; s|^  digest: \"\"\$|  digest: \"$digest\"|" \
  "$chart/values.yaml"
[ "$(grep -c "^  repository: $repository\$" "$chart/values.yaml")" -eq 1 ] \
  && [ "$(grep -c "^  digest: \"$digest\"\$" "$chart/values.yaml")" -eq 1 ] \
  || die "values.yaml no longer has the image block this script edits"
printf 'home: %s\nsources:\n  - %s\n' "$source_url" "$source_url" >>"$chart/Chart.yaml"
mkdir -p "$outdir"
"${HELM:-helm}" package "$chart" --version "$version" --app-version "$version" --destination "$outdir" >/dev/null
echo "$outdir/fargate-webhook-$version.tgz"
