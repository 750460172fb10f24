# Sourced by tests/cluster/down.sh when DIR/node/restore exists (up.sh NODE=1). Two steps:
#   node_drain    before any process stops: stops what makes or places pods (kube-controller-manager,
#                 kube-scheduler), then deletes every pod while the kubelet still runs, so containers
#                 stop the way Kubernetes stops them;
#   node_restore  after every process stopped: kills what outlived them (by pid: the pods' cgroups, the
#                 shims of this containerd), then undoes what node/up.sh recorded in DIR/node/restore:
#                 mounts, network namespaces, iptables chains, the bridge, sysctls, cgroups.
# Uses down.sh's variables and functions: dir, ours, stop_recorded.

node_dir="$dir/node"

node_drain() {
  stop_recorded kube-controller-manager
  stop_recorded kube-scheduler
  # kubectl sits beside the apiserver's binary (DIR/env is not written yet when up.sh failed).
  local apiserver kubectl=""
  apiserver="$(awk '$1=="kube-apiserver" {print $2}' "$dir/pids")"
  if [ -n "$apiserver" ] && ours kube-apiserver "$apiserver"; then
    kubectl="$(dirname "$(tr '\0' '\n' < "/proc/$apiserver/cmdline" | head -n1)")/kubectl"
  fi
  if [ -x "$kubectl" ]; then
    timeout 90 "$kubectl" --kubeconfig "$dir/kubeconfig" delete pods --all --all-namespaces \
      --grace-period=5 --wait=true --timeout=80s >/dev/null 2>&1 \
      || echo "down.sh: not every pod was deleted through the kubelet; what is left is killed" >&2
  fi
}

node_restore() {
  local restore="$node_dir/restore" pid key value ipt table chain rule new
  # Best effort, step by step: one thing that cannot be undone does not stop the others.
  set +e +o pipefail
  # Container processes the kubelet did not stop, then the shims of this containerd (their command line
  # names its socket): by pid.
  if [ -d /sys/fs/cgroup/pids/kubepods ] && ! grep -qx "cgroup /sys/fs/cgroup/pids/kubepods" "$restore"; then
    for pid in $(find /sys/fs/cgroup/pids/kubepods -name cgroup.procs -exec cat {} + 2>/dev/null); do
      kill -KILL "$pid" 2>/dev/null || true
    done
  fi
  for pid in $(grep -lsF -- "$node_dir/containerd/containerd.sock" /proc/[0-9]*/cmdline | cut -d/ -f3); do
    case "$(readlink "/proc/$pid/exe" 2>/dev/null)" in
      */containerd-shim*) kill -KILL "$pid" 2>/dev/null || true ;;
    esac
  done
  sleep 0.5
  # Mounts under the node's directory (the kubelet's volumes and its bind mount of itself, containerd's
  # snapshots and sandboxes' shm), deepest first.
  awk -v d="$node_dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || echo "down.sh: could not unmount $m" >&2
  done
  # Network namespaces the CNI made for pods.
  ip netns list 2>/dev/null | awk '{print $1}' | while read -r ns; do
    grep -qx "netns $ns" "$restore" || ip netns delete "$ns" 2>/dev/null || true
  done
  # iptables: every chain that was not there before (KUBE-*, CNI-*, FW-NODE-*), the rules that jump to
  # it first.
  for ipt in iptables ip6tables; do
    for table in filter nat mangle raw; do
      new="$("$ipt-save" -t "$table" 2>/dev/null | awk '/^:/ {print substr($1, 2)}' | while read -r chain; do
               grep -qx "chain $ipt $table $chain" "$restore" || echo "$chain"; done)"
      [ -n "$new" ] || continue
      for chain in $new; do
        "$ipt-save" -t "$table" | grep -E -- "^-A [^ ]+ .*-j $chain( |\$)" | sed 's/^-A /-D /' | while read -r rule; do
          eval "\"$ipt\" -t \"$table\" $rule" 2>/dev/null || true
        done
      done
      for chain in $new; do "$ipt" -t "$table" -F "$chain" 2>/dev/null || true; done
      for chain in $new; do "$ipt" -t "$table" -X "$chain" 2>/dev/null || true; done
    done
  done
  # The bridges (with them their addresses and routes), and any pod veth left on them.
  for link in $(awk '$1=="link" {print $2}' "$restore"); do ip link del "$link" 2>/dev/null; done
  # sysctls the CNI bridge (ip_forward) and the kubelet (kernel tunables) set.
  while read -r kind key value; do
    [ "$kind" = sysctl ] || continue
    [ "$(cat "/proc/sys/$key")" = "$value" ] || echo "$value" > "/proc/sys/$key" || echo "down.sh: could not restore $key" >&2
  done < "$restore"
  # The kubelet's cgroups, leaves first (a cgroup with processes cannot be removed).
  for controller in /sys/fs/cgroup/*/; do
    [ -d "${controller}kubepods" ] || continue
    grep -qx "cgroup ${controller}kubepods" "$restore" && continue
    find "${controller}kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [ ! -d "${controller}kubepods" ] || echo "down.sh: ${controller}kubepods could not be removed" >&2
  done
  rm -f "$restore"
  set -e -o pipefail
}
