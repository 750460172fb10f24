# Sourced by tests/cluster/up.sh when NODE=1, after the control plane is ready: one real node.
#   containerd (its own root, state and sockets under DIR/node), a CNI bridge, a kubelet registered and
#   Ready, kube-proxy (iptables mode). kube-scheduler is started by up.sh itself.
# Uses up.sh's variables and functions: dir, here, bin, pki, start, wait_for, fail, free_port, die.
# Everything it changes on the machine is recorded in DIR/node/restore first; node/down.sh undoes it.
#
# The network (docs/testing.md, "The real node"): two bridges made here. fwnode0 holds the node's
# address (10.250.0.1/32) and the route of the Service range, so a packet to a ClusterIP kube-proxy has
# not programmed yet dies there instead of leaving by the default route. fwbr0 is the pods' (the CNI
# bridge plugin's), made beforehand with the pods' gateway (10.244.0.1/24) so the pod range is routed
# onto it before the first pod. A FORWARD guard drops anything between fwbr0 and another interface, so
# no pod packet leaves the machine; an INPUT guard keeps the apiserver's port (bound on every address so
# that pods reach it at the node's address) to loopback and fwbr0.

node_dir="$dir/node"
mkdir -p "$node_dir"/{containerd,cni/net.d,cni/ipam,kubelet,pod-logs,images}
: > "$node_dir/restore"

# --- what the node changes on the machine, recorded before it changes it
for key in net/ipv4/ip_forward vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops \
           kernel/keys/root_maxkeys kernel/keys/root_maxbytes; do
  [ -r "/proc/sys/$key" ] && echo "sysctl $key $(cat "/proc/sys/$key")" >> "$node_dir/restore"
done
for ipt in iptables ip6tables; do
  for table in filter nat mangle raw; do
    "$ipt-save" -t "$table" 2>/dev/null | awk -v ipt="$ipt" -v t="$table" '/^:/ {print "chain", ipt, t, substr($1, 2)}'
  done
done >> "$node_dir/restore"
ip netns list 2>/dev/null | awk '{print "netns", $1}' >> "$node_dir/restore"
for controller in /sys/fs/cgroup/*/; do
  [ -d "$controller/kubepods" ] && echo "cgroup ${controller}kubepods" >> "$node_dir/restore"
done
if [ -d /sys/fs/cgroup/kubepods ] || [ -d /sys/fs/cgroup/kubepods.slice ]; then
  die "a kubelet's cgroups already exist on this machine (/sys/fs/cgroup/kubepods): is another node up?"
fi

# --- network
for link in "$NODE_LINK" "$NODE_BRIDGE"; do
  if ip link show "$link" >/dev/null 2>&1; then
    die "the bridge $link exists already: another NODE=1 cluster is up (down.sh its DIR first)"
  fi
done
# From here on the machine changes: a failure undoes what was done so far (down.sh reads the record).
trap 'echo "up.sh: the node failed to start; undoing what it changed" >&2; bash "$here/down.sh" "$dir" >&2 || true' ERR
ip link add "$NODE_LINK" type bridge
echo "link $NODE_LINK" >> "$node_dir/restore"
ip addr add "$NODE_IP/32" dev "$NODE_LINK"
ip link set "$NODE_LINK" up
ip route add "$SERVICE_CIDR" dev "$NODE_LINK"
ip link add "$NODE_BRIDGE" type bridge
echo "link $NODE_BRIDGE" >> "$node_dir/restore"
ip addr add "${POD_CIDR%.*}.1/${POD_CIDR#*/}" dev "$NODE_BRIDGE"
ip link set "$NODE_BRIDGE" up
for ipt in iptables ip6tables; do
  "$ipt" -N FW-NODE-FORWARD
  "$ipt" -A FW-NODE-FORWARD -i "$NODE_BRIDGE" ! -o "$NODE_BRIDGE" -j DROP
  "$ipt" -A FW-NODE-FORWARD -o "$NODE_BRIDGE" ! -i "$NODE_BRIDGE" -j DROP
  "$ipt" -I FORWARD 1 -j FW-NODE-FORWARD
  "$ipt" -N FW-NODE-INPUT
  "$ipt" -A FW-NODE-INPUT -p tcp --dport "$api_port" -i lo -j RETURN
  "$ipt" -A FW-NODE-INPUT -p tcp --dport "$api_port" -i "$NODE_BRIDGE" -j RETURN
  "$ipt" -A FW-NODE-INPUT -p tcp --dport "$api_port" -j DROP
  "$ipt" -I INPUT 1 -j FW-NODE-INPUT
done

# --- images: the pod sandbox, built once from node/pause.c
pause_bin="$node_dir/images/pause"
gcc -static -Os -o "$pause_bin" "$here/node/pause.c"  # Debian: gcc, libc6-dev
python3 "$here/node/image.py" pause "$pause_bin" "$node_dir/images/pause.tar" "$PAUSE_IMAGE"

# --- containerd
ctrd="$node_dir/containerd"
cat > "$ctrd/config.toml" <<TOML
version = 2
root = "$ctrd/root"
state = "$ctrd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$ctrd/containerd.sock"
[ttrpc]
  address = "$ctrd/containerd.sock.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$ctrd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # The machine lacks CAP_SYS_RESOURCE: runc cannot lower a sandbox's oom_score_adj below its own.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$ctrd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$node_dir/cni/net.d"
TOML
cat > "$node_dir/cni/net.d/10-fw-node.conflist" <<JSON
{"cniVersion": "0.4.0", "name": "fw-node", "plugins": [
  {"type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$node_dir/cni/ipam",
            "ranges": [[{"subnet": "$POD_CIDR", "gateway": "${POD_CIDR%.*}.1"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}}]}
JSON
# No registry is reachable, nor may one be tried: every pull goes to a closed loopback port as its proxy
# and fails at once. Images come from `ctr images import` (tests/cluster/load-image.sh).
HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY= \
  setsid "$(command -v containerd)" --config "$ctrd/config.toml" >"$dir/logs/containerd.log" 2>&1 < /dev/null &
echo "containerd $!" >> "$dir/pids"
ctr() { command ctr --address "$ctrd/containerd.sock" --namespace k8s.io "$@"; }
wait_for containerd 30 ctr version
ctr images import "$node_dir/images/pause.tar" >/dev/null || fail "importing the pause image failed" "$dir/logs/containerd.log"

# --- kubelet: a client certificate as system:node:<name> (RBAC: system:node, system:node-proxier)
cat > "$node_dir/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "https://127.0.0.1:$api_port", certificate-authority: "$pki/ca.crt"}
users:
- name: node
  user: {client-certificate: "$pki/node.crt", client-key: "$pki/node.key"}
contexts:
- name: local
  context: {cluster: local, user: node}
current-context: local
KC
kc() { "$bin/kubectl" --kubeconfig "$dir/kubeconfig" "$@"; }
kc create clusterrolebinding fw-test-node --clusterrole system:node --user "system:node:$NODE_NAME" >/dev/null
kc create clusterrolebinding fw-test-node-proxier --clusterrole system:node-proxier --user "system:node:$NODE_NAME" >/dev/null
kubelet_healthz="$(free_port)"
cat > "$node_dir/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $kubelet_healthz
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$ctrd/containerd.sock
imageServiceEndpoint: unix://$ctrd/containerd.sock
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: "$pki/ca.crt"}
authorization: {mode: AlwaysAllow}
tlsCertFile: "$pki/kubelet.crt"
tlsPrivateKeyFile: "$pki/kubelet.key"
# Nothing imported may ever be collected: it cannot be pulled again.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
podLogsDirectory: "$node_dir/pod-logs"
# Pods ask node/dns.py (Service names only) and never the machine's resolver (it is off the machine).
resolvConf: ""
clusterDNS: [$NODE_IP]
clusterDomain: cluster.local
maxPods: 110
serializeImagePulls: false
YAML
start kubelet --config "$node_dir/kubelet.yaml" --kubeconfig "$node_dir/kubeconfig" \
  --root-dir "$node_dir/kubelet" --cert-dir "$node_dir/kubelet/pki" \
  --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --node-labels "$NODE_LABEL=true"
wait_for kubelet 60 kc wait --for=condition=Ready "node/$NODE_NAME" --timeout 1s

# --- cluster DNS for the pods: Service names only, never forwarded (node/dns.py)
setsid python3 "$here/node/dns.py" "$NODE_IP" "$dir" "https://127.0.0.1:$api_port" >"$dir/logs/dns.log" 2>&1 < /dev/null &
echo "dns.py $!" >> "$dir/pids"

# --- kube-proxy
cat > "$node_dir/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$node_dir/kubeconfig"}
mode: iptables
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
nodePortAddresses: ["$NODE_IP/32"]
clusterCIDR: $POD_CIDR
metricsBindAddress: 127.0.0.1:$(free_port)
healthzBindAddress: 127.0.0.1:$(free_port)
iptables: {localhostNodePorts: false}
# Leave the machine's conntrack sysctls as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s, udpTimeout: 0s, udpStreamTimeout: 0s}
YAML
start kube-proxy --config "$node_dir/kube-proxy.yaml"
proxy_healthz="$(awk '/^healthzBindAddress/ {print $2}' "$node_dir/kube-proxy.yaml")"
wait_for kube-proxy 60 curl -sf --max-time 2 "http://$proxy_healthz/healthz"
trap - ERR
