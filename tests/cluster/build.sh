#!/usr/bin/env bash
# Builds the pinned control-plane binaries (kube-apiserver, kube-controller-manager, kubectl, etcd)
# and the real node's (kubelet, kube-proxy, kube-scheduler: up.sh NODE=1) from the Go modules pinned in
# tests/cluster/tools/go.mod, and kwok (the kubelet of the
# scheduler's virtual nodes) from its own module in tests/cluster/kwok/go.mod, once, into
# .tools/k8s-<release>/bin. Later runs reuse them: the stamp records the hash of both go.mod and
# go.sum files and this script.
#   bash tests/cluster/build.sh            prints the bin directory on stdout
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tools="$here/tools"
release="$(awk '$1=="k8s.io/kubernetes" {print $2}' "$tools/go.mod" | head -n1)"
[ -n "$release" ] || { echo "build.sh: no k8s.io/kubernetes line in $tools/go.mod" >&2; exit 1; }
bin="${FW_TOOLS_DIR:-$root/.tools}/k8s-$release/bin"
kwok="$here/kwok"
want="$(cat "$tools/go.mod" "$tools/go.sum" "$kwok/go.mod" "$kwok/go.sum" "$0" | sha256sum | cut -c1-16)"
if [ -f "$bin/.stamp" ] && [ "$(cat "$bin/.stamp")" = "$want" ]; then
  echo "$bin"; exit 0
fi
command -v go >/dev/null 2>&1 || { echo "build.sh: 'go' is not on PATH; the control plane is built from Go modules (Go >= 1.25)" >&2; exit 1; }
mkdir -p "$bin"
log="$bin/../build.log"
echo "build.sh: building Kubernetes $release control plane into $bin (the first time takes about 7 min on 2 cores; log: $log)" >&2
start=$(date +%s)
# -mod=readonly: go.mod/go.sum are the pins; a build must never rewrite them.
# Static, stripped, no VCS stamping (module builds carry no git data). Version stamped as upstream does.
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$release -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$(echo "$release" | cut -d. -f2) -X k8s.io/client-go/pkg/version.gitVersion=$release"
if ! ( cd "$tools" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath -ldflags "$ldflags" -o "$bin/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy \
      k8s.io/kubernetes/cmd/kube-scheduler ) >"$log" 2>&1; then
  echo "build.sh: building the Kubernetes binaries failed; last lines of $log:" >&2; tail -n 30 "$log" >&2; exit 1
fi
if ! ( cd "$tools" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath -ldflags "-s -w" -o "$bin/etcd" \
      go.etcd.io/etcd/server/v3 ) >>"$log" 2>&1; then
  echo "build.sh: building etcd failed; last lines of $log:" >&2; tail -n 30 "$log" >&2; exit 1
fi
if ! ( cd "$kwok" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath -ldflags "-s -w" -o "$bin/kwok" \
      sigs.k8s.io/kwok/cmd/kwok ) >>"$log" 2>&1; then
  echo "build.sh: building kwok failed; last lines of $log:" >&2; tail -n 30 "$log" >&2; exit 1
fi
echo "$want" > "$bin/.stamp"
echo "build.sh: built in $(( $(date +%s) - start )) s" >&2
echo "$bin"
