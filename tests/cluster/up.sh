#!/usr/bin/env bash
# A local Kubernetes control plane on loopback, for the tests and for contributors:
#   bash tests/cluster/up.sh DIR      build once (reused from .tools/), then start etcd, kube-apiserver and
#                                      kube-controller-manager; write DIR/kubeconfig (cluster-admin) and DIR/env
#   bash tests/cluster/down.sh DIR    stop exactly what up.sh started
# Without NODE=1: no kubelet, no kube-scheduler, no containers: pods are stored, not run. Every port is on
# 127.0.0.1 and chosen free at start (or set FW_ETCD_PORT, FW_APISERVER_PORT, FW_KCM_PORT). Running it
# again on a DIR whose control plane is up only prints the env file.
#   KWOK=1 bash tests/cluster/up.sh DIR  also starts kwok as the kubelet of every node but the real one:
#                                        the scheduler's virtual Fargate nodes and the test's pool nodes
#                                        turn Ready, and the pods bound to them Running.
#   NODE=1 bash tests/cluster/up.sh DIR  also starts kube-scheduler and one real node (node/up.sh):
#                                        containerd, a CNI bridge, a kubelet, kube-proxy. Needs root and
#                                        Debian's containerd, runc and containernetworking-plugins. The
#                                        apiserver then listens on every address (guarded: loopback and the
#                                        node's bridge only) so that pods reach it; DIR/env gains NODE_NAME,
#                                        NODE_IP and CONTAINERD_ADDRESS. Images: tests/cluster/load-image.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
die() { echo "up.sh: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: bash tests/cluster/up.sh DIR"
mkdir -p "$1"; dir="$(cd "$1" && pwd)"
for tool in openssl curl python3 setsid; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is needed and not on PATH"
done
# The real node's fixed names and ranges (one NODE=1 cluster per machine). The Service range is the
# apiserver's; the pod range is the CNI bridge's.
NODE_NAME=fw-node NODE_IP=10.250.0.1 NODE_LINK=fwnode0 NODE_BRIDGE=fwbr0 POD_CIDR=10.244.0.0/24 SERVICE_CIDR=10.0.0.0/24
NODE_LABEL=fargate-webhook.test/real-node PAUSE_IMAGE=localhost/fargate-webhook-test/pause:1
if [ "${NODE:-}" = 1 ]; then
  [ "$(id -u)" = 0 ] || die "NODE=1 needs root (containerd, the kubelet, iptables)"
  for tool in containerd ctr runc ip iptables gcc; do
    command -v "$tool" >/dev/null 2>&1 || die "NODE=1 needs '$tool' (Debian: containerd runc containernetworking-plugins iproute2 iptables gcc)"
  done
  [ -x /usr/lib/cni/bridge ] || die "NODE=1 needs the CNI plugins in /usr/lib/cni (Debian: containernetworking-plugins)"
fi
# Webhook calls from the apiserver and our own probes go to loopback only: never through a proxy.
unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy ALL_PROXY all_proxy
export NO_PROXY='*'

alive() { # alive NAME: the process up.sh recorded under NAME is still running
  local pid; pid="$(awk -v n="$1" '$1==n {print $2}' "$dir/pids" 2>/dev/null)"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}
if [ -f "$dir/env" ] && alive etcd && alive kube-apiserver && alive kube-controller-manager \
   && { [ "${KWOK:-}" != 1 ] || alive kwok; } && { [ "${NODE:-}" != 1 ] || alive kubelet; }; then
  # shellcheck disable=SC1091
  . "$dir/env"
  if curl -sf --max-time 5 --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" --key "$dir/pki/admin.key" \
       "$APISERVER/readyz" >/dev/null; then
    echo "up.sh: control plane in $dir is already up" >&2; cat "$dir/env"; exit 0
  fi
  die "processes recorded in $dir/pids run but $APISERVER/readyz does not answer; run down.sh $dir first"
fi
if [ -f "$dir/pids" ]; then
  bash "$here/down.sh" "$dir" >&2 || true
fi

bin="$(bash "$here/build.sh")" || die "the control-plane build failed (see above)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port_taken() { python3 - "$1" <<'PY'
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try: s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError: sys.exit(0)
sys.exit(1)
PY
}
etcd_port="${FW_ETCD_PORT:-$(free_port)}"; peer_port="$(free_port)"
api_port="${FW_APISERVER_PORT:-$(free_port)}"; kcm_port="${FW_KCM_PORT:-$(free_port)}"
for p in "$etcd_port" "$peer_port" "$api_port" "$kcm_port"; do
  if port_taken "$p"; then die "port 127.0.0.1:$p is taken (by: $(ss -ltnp "sport = :$p" 2>/dev/null | tail -n +2 | awk '{print $NF}'))"; fi
done

# --- PKI: one CA for serving, clients and the controller-manager's signer; an RSA service-account key pair.
pki="$dir/pki"; mkdir -p "$pki"
if [ ! -f "$pki/admin.crt" ]; then
  (
    cd "$pki"
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=fargate-webhook-test-ca" -out ca.crt 2>/dev/null
    sign() { # sign NAME SUBJECT [EXTFILE-CONTENT]
      openssl ecparam -name prime256v1 -genkey -noout -out "$1.key" 2>/dev/null
      openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
      printf '%s\n' "$3" > "$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 3650 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    sign apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.0.0.1,IP:$NODE_IP"
    sign admin "/O=system:masters/CN=kubernetes-admin" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    # The real node (NODE=1): the apiserver's client certificate for the kubelet (logs, exec,
    # port-forward), the node's own identity, and the kubelet's serving certificate on the node's address.
    sign kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    sign node "/O=system:nodes/CN=system:node:$NODE_NAME" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    sign kubelet "/CN=$NODE_NAME" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$NODE_IP,DNS:$NODE_NAME"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    chmod 600 ./*.key
  ) || die "generating the PKI with openssl failed"
fi

cat > "$dir/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $pki/ca.crt
users:
- name: admin
  user:
    client-certificate: $pki/admin.crt
    client-key: $pki/admin.key
contexts:
- name: local
  context: {cluster: local, user: admin}
current-context: local
KC
chmod 600 "$dir/kubeconfig"

mkdir -p "$dir/logs"; : > "$dir/pids"
start() { # start NAME ARGS...: a process of its own session, recorded by pid
  local name="$1"; shift
  setsid "$bin/$name" "$@" >"$dir/logs/$name.log" 2>&1 < /dev/null &
  echo "$name $!" >> "$dir/pids"
}
fail() { # fail MESSAGE LOG: stop what started, show the log's end
  echo "up.sh: $1; last lines of $2:" >&2; tail -n 25 "$2" >&2 || true
  bash "$here/down.sh" "$dir" >&2 || true
  exit 1
}
wait_for() { # wait_for NAME SECONDS COMMAND...: until COMMAND succeeds, or NAME died, or time is up
  local name="$1" secs="$2"; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    alive "$name" || fail "$name exited" "$dir/logs/$name.log"
    [ "$(date +%s)" -lt "$deadline" ] || fail "$name was not ready within ${secs}s" "$dir/logs/$name.log"
    sleep 0.2
  done
}

start etcd --name default --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "default=http://127.0.0.1:$peer_port" --listen-metrics-urls "" --log-level warn
wait_for etcd 30 curl -sf --max-time 2 "http://127.0.0.1:$etcd_port/health"

# The default admission plugins stay on (Priority, ServiceAccount, MutatingAdmissionWebhook, ...).
# --endpoint-reconciler-type none: the `kubernetes` Service would otherwise need a non-loopback address.
# --enable-aggregator-routing: webhooks and API services named by a Service are dialled at the Service's
# endpoints, never at its ClusterIP. No pod runs here, so a Service-backed webhook (the chart's) fails
# open at once and nothing is ever sent to the service range.
# With the real node (NODE=1) pods reach the apiserver through the `kubernetes` Service, whose endpoint is
# the node's address: the apiserver listens on every address (node/up.sh lets only loopback and the
# node's bridge through) and keeps that endpoint itself.
if [ "${NODE:-}" = 1 ]; then
  listen=(--bind-address 0.0.0.0 --advertise-address "$NODE_IP" --endpoint-reconciler-type lease)
else
  listen=(--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --endpoint-reconciler-type none)
fi
start kube-apiserver --etcd-servers "http://127.0.0.1:$etcd_port" "${listen[@]}" --secure-port "$api_port" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" --authorization-mode RBAC \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --service-cluster-ip-range "$SERVICE_CIDR" --enable-aggregator-routing=true \
  --kubelet-client-certificate "$pki/kubelet-client.crt" --kubelet-client-key "$pki/kubelet-client.key" \
  --kubelet-certificate-authority "$pki/ca.crt" --kubelet-preferred-address-types InternalIP \
  --allow-privileged=true --cert-dir "$dir/apiserver-certs" --profiling=false
apiserver_ready() {
  curl -sf --max-time 2 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "https://127.0.0.1:$api_port/readyz"
}
wait_for kube-apiserver 90 apiserver_ready

start kube-controller-manager --kubeconfig "$dir/kubeconfig" \
  --authentication-kubeconfig "$dir/kubeconfig" --authorization-kubeconfig "$dir/kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$kcm_port" --leader-elect=false \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
  --use-service-account-credentials=false --profiling=false
kcm_ready() { curl -sfk --max-time 2 "https://127.0.0.1:$kcm_port/healthz"; }
wait_for kube-controller-manager 60 kcm_ready
# Pods need the namespace's `default` ServiceAccount (ServiceAccount admission): the controller-manager
# makes it; wait for it so the first test does not race it.
wait_for kube-controller-manager 60 "$bin/kubectl" --kubeconfig "$dir/kubeconfig" get serviceaccount default -n default

if [ "${KWOK:-}" = 1 ]; then
  kwok_port="$(free_port)"
  start kwok --kubeconfig "$dir/kubeconfig" --config "$here/kwok/stages.yaml" \
    --manage-nodes-with-label-selector "!$NODE_LABEL" \
    --server-address "127.0.0.1:$kwok_port" --node-lease-duration-seconds 40 --cidr 10.200.0.0/16
  wait_for kwok 30 curl -sf --max-time 2 "http://127.0.0.1:$kwok_port/healthz"
fi

if [ "${NODE:-}" = 1 ]; then
  # kube-scheduler starts once the apiserver is ready (under an apiserver restart at its start it exits
  # with "Scheduler cache is corrupted").
  sched_port="$(free_port)"
  start kube-scheduler --kubeconfig "$dir/kubeconfig" \
    --authentication-kubeconfig "$dir/kubeconfig" --authorization-kubeconfig "$dir/kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$sched_port" --leader-elect=false --profiling=false
  wait_for kube-scheduler 60 curl -sfk --max-time 2 "https://127.0.0.1:$sched_port/healthz"
  # shellcheck source=node/up.sh
  . "$here/node/up.sh"
fi

cat > "$dir/env" <<ENV
KUBECONFIG=$dir/kubeconfig
APISERVER=https://127.0.0.1:$api_port
ETCD=http://127.0.0.1:$etcd_port
KCM=https://127.0.0.1:$kcm_port
CLUSTER_CA=$pki/ca.crt
CLUSTER_BIN=$bin
ENV
if [ "${NODE:-}" = 1 ]; then
  cat >> "$dir/env" <<ENV
NODE_NAME=$NODE_NAME
NODE_IP=$NODE_IP
NODE_LABEL=$NODE_LABEL
CONTAINERD_ADDRESS=$node_dir/containerd/containerd.sock
ENV
fi
echo "up.sh: control plane up in $dir (kube-apiserver https://127.0.0.1:$api_port)" >&2
cat "$dir/env"
