#!/usr/bin/env bash
# End-to-end walkthrough on a throw-away kind cluster:
#   build the image, load it into kind (a control plane and one worker labelled fargate-webhook.io/pool=true),
#   install the Helm chart (selfSigned TLS, API Service on, the fargate-scheduler in pool placement), create
#   one Fargate profile with the AWS CLI through a port-forward and one with `kubectl apply`, check that a
#   matching pod is mutated (schedulerName, label, annotation) and a non-matching pod is not, and end with
#   the matching pod Running on the labelled worker, sized as Fargate sizes it (CapacityProvisioned).
#
# Needs: a running docker daemon, kind, helm, kubectl and the AWS CLI. When one is missing the script says
# which, says that it did NOT run, and exits 0.
#
# Environment:
#   KIND_CLUSTER_NAME  cluster name (default fargate-webhook); an existing cluster of that name is reused
#   KEEP_CLUSTER=1     keep the cluster afterwards (a reused cluster is always kept)
#   IMAGE              image to build and load (default fargate-webhook:e2e)
#   HELM               helm binary (default: .tools/bin/helm if present, else helm on PATH)
#   API_PORT           local port for the API port-forward (default 18080)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo_root"

cluster="${KIND_CLUSTER_NAME:-fargate-webhook}"
image="${IMAGE:-fargate-webhook:e2e}"
namespace="fargate-system"
release="fargate-webhook"
api_port="${API_PORT:-18080}"
endpoint="http://127.0.0.1:${api_port}"
eks_cluster="fargate"
role_arn="arn:aws:iam::012345678910:role/AmazonEKSPodExecutionRole"
profile_label="eks.amazonaws.com/fargate-profile"

log() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------------------
# Prerequisites: say exactly what is missing and stop without pretending to have run.
helm_bin="${HELM:-}"
if [[ -z "$helm_bin" ]]; then
  if [[ -x "$repo_root/.tools/bin/helm" ]]; then helm_bin="$repo_root/.tools/bin/helm"; else helm_bin="helm"; fi
fi
missing=()
if ! command -v docker >/dev/null 2>&1; then
  missing+=("docker (command not found)")
elif ! docker info >/dev/null 2>&1; then
  missing+=("a running docker daemon ('docker info' failed)")
fi
command -v kind >/dev/null 2>&1 || missing+=("kind (command not found)")
command -v "$helm_bin" >/dev/null 2>&1 || missing+=("helm (not found as '$helm_bin'; tests/chart/install-helm.sh installs it)")
command -v kubectl >/dev/null 2>&1 || missing+=("kubectl (command not found)")
command -v aws >/dev/null 2>&1 || missing+=("aws CLI (command not found; pip install awscli)")
if ((${#missing[@]} > 0)); then
  echo "kind e2e test: NOT RUN. Missing:"
  printf '  - %s\n' "${missing[@]}"
  echo "Nothing was tested. Install the above and run tests/e2e/kind.sh again."
  exit 0
fi

# Dummy credentials: the API does not check signatures unless configured to.
export AWS_ACCESS_KEY_ID="AKIAIOSFODNN7EXAMPLE"
export AWS_SECRET_ACCESS_KEY="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
export AWS_DEFAULT_REGION="us-east-1"
export AWS_PAGER=""
export AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN || true

created_cluster=0
port_forward_pid=""
kubectl_ctx=(kubectl --context "kind-${cluster}")

cleanup() {
  local rc=$?
  if [[ -n "$port_forward_pid" ]]; then
    kill "$port_forward_pid" 2>/dev/null || true
    wait "$port_forward_pid" 2>/dev/null || true
  fi
  if ((rc != 0)) && ((created_cluster == 1 || ${KEEP_CLUSTER:-0} == 1)); then
    echo "--- diagnostics (exit code $rc) ---" >&2
    "${kubectl_ctx[@]}" -n "$namespace" get pods -o wide >&2 || true
    "${kubectl_ctx[@]}" -n "$namespace" logs -l "app.kubernetes.io/instance=${release}" --tail=100 --prefix >&2 || true
    "${kubectl_ctx[@]}" get fargateprofiles -o wide >&2 || true
    "${kubectl_ctx[@]}" -n e2e get pods -o wide >&2 || true
  fi
  if ((created_cluster == 1)) && [[ "${KEEP_CLUSTER:-0}" != "1" ]]; then
    log "deleting kind cluster ${cluster}"
    kind delete cluster --name "$cluster" || true
  elif ((created_cluster == 1)); then
    log "KEEP_CLUSTER=1: cluster ${cluster} kept (kind delete cluster --name ${cluster})"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

eks() { aws eks --endpoint-url "$endpoint" "$@"; }

# ---------------------------------------------------------------------------------------------------------
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  log "reusing existing kind cluster ${cluster} (it will be kept)"
else
  log "creating kind cluster ${cluster} (a control plane and one worker labelled for the Fargate pool)"
  created_cluster=1
  kind create cluster --name "$cluster" --wait 180s --config - <<'KIND'
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
  - role: worker
    labels:
      fargate-webhook.io/pool: "true"
KIND
fi
# A reused cluster: label its first worker (or its only node) for the pool.
if [[ -z "$("${kubectl_ctx[@]}" get nodes -l fargate-webhook.io/pool=true -o name)" ]]; then
  pool_node="$("${kubectl_ctx[@]}" get nodes -o name | grep -m1 worker || "${kubectl_ctx[@]}" get nodes -o name | head -n1)"
  "${kubectl_ctx[@]}" label "$pool_node" fargate-webhook.io/pool=true >/dev/null
fi

log "building image ${image}"
docker build -t "$image" "$repo_root"

log "loading ${image} into kind"
kind load docker-image "$image" --name "$cluster"

log "installing the chart"
"$helm_bin" upgrade --install "$release" "$repo_root/charts/fargate-webhook" \
  --kube-context "kind-${cluster}" \
  --namespace "$namespace" --create-namespace \
  --set image.repository="${image%:*}" \
  --set image.tag="${image##*:}" \
  --set image.pullPolicy=Never \
  --set tls.mode=selfSigned \
  --set api.service.enabled=true \
  --set cluster.name="$eks_cluster" \
  --set logLevel=debug \
  --set scheduler.enabled=true \
  --set scheduler.replicaCount=1 \
  --set scheduler.placement=pool \
  --set scheduler.poolSelector=fargate-webhook.io/pool=true \
  --wait --timeout 300s
"${kubectl_ctx[@]}" -n "$namespace" rollout status "deployment/${release}" --timeout=180s
"${kubectl_ctx[@]}" -n "$namespace" rollout status "deployment/${release}-scheduler" --timeout=180s
"${kubectl_ctx[@]}" wait --for condition=Established crd/fargateprofiles.fargate-webhook.io --timeout=60s

log "port-forwarding svc/${release}-api to ${endpoint}"
"${kubectl_ctx[@]}" -n "$namespace" port-forward "svc/${release}-api" "${api_port}:80" >/tmp/fargate-webhook-pf.log 2>&1 &
port_forward_pid=$!
for _ in $(seq 1 30); do
  if eks list-fargate-profiles --cluster-name "$eks_cluster" >/dev/null 2>&1; then break; fi
  sleep 1
done
eks list-fargate-profiles --cluster-name "$eks_cluster" >/dev/null || fail "the API is not reachable through the port-forward"

# ---------------------------------------------------------------------------------------------------------
log "creating profile 'cli-profile' with the AWS CLI"
eks create-fargate-profile \
  --cluster-name "$eks_cluster" \
  --fargate-profile-name cli-profile \
  --pod-execution-role-arn "$role_arn" \
  --selectors 'namespace=e2e,labels={infrastructure=fargate}'
eks wait fargate-profile-active --cluster-name "$eks_cluster" --fargate-profile-name cli-profile
status="$(eks describe-fargate-profile --cluster-name "$eks_cluster" --fargate-profile-name cli-profile \
  --query fargateProfile.status --output text)"
[[ "$status" == "ACTIVE" ]] || fail "cli-profile is $status, want ACTIVE"
"${kubectl_ctx[@]}" get fargateprofile cli-profile >/dev/null || fail "cli-profile has no FargateProfile resource"

log "creating profile 'kubectl-profile' with kubectl apply"
"${kubectl_ctx[@]}" apply -f - <<YAML
apiVersion: fargate-webhook.io/v1alpha1
kind: FargateProfile
metadata:
  name: kubectl-profile
spec:
  podExecutionRoleArn: ${role_arn}
  selectors:
    - namespace: e2e
      labels:
        compute: serverless
YAML
"${kubectl_ctx[@]}" wait fargateprofile/kubectl-profile --for=jsonpath='{.status.status}'=ACTIVE --timeout=120s
eks describe-fargate-profile --cluster-name "$eks_cluster" --fargate-profile-name kubectl-profile >/dev/null \
  || fail "kubectl-profile is not visible through the EKS API"

log "checking that the CRD refuses invalid or changed profiles"
if "${kubectl_ctx[@]}" apply -f - >/dev/null 2>&1 <<YAML
apiVersion: fargate-webhook.io/v1alpha1
kind: FargateProfile
metadata:
  name: eks-reserved
spec:
  podExecutionRoleArn: ${role_arn}
  selectors:
    - namespace: e2e
YAML
then fail "a profile named eks-reserved was accepted"; fi
if "${kubectl_ctx[@]}" patch fargateprofile kubectl-profile --type merge \
  -p '{"spec":{"selectors":[{"namespace":"other"}]}}' >/dev/null 2>&1; then
  fail "the selectors of kubectl-profile could be changed"
fi
"${kubectl_ctx[@]}" patch fargateprofile kubectl-profile --type merge -p '{"spec":{"tags":{"team":"e2e"}}}' >/dev/null \
  || fail "the tags of kubectl-profile could not be changed"

# ---------------------------------------------------------------------------------------------------------
"${kubectl_ctx[@]}" create namespace e2e --dry-run=client -o yaml | "${kubectl_ctx[@]}" apply -f - >/dev/null

# create_pod NAME KEY=VALUE: a pause pod with one label. Mutated pods are placed by the chart's
# fargate-scheduler on the labelled worker; the others by kind's own scheduler.
create_pod() {
  local name="$1" key="${2%%=*}" value="${2#*=}"
  "${kubectl_ctx[@]}" -n e2e delete pod "$name" --ignore-not-found --wait=false >/dev/null
  "${kubectl_ctx[@]}" -n e2e wait --for=delete "pod/$name" --timeout=60s >/dev/null 2>&1 || true
  "${kubectl_ctx[@]}" -n e2e apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  labels:
    ${key}: "${value}"
spec:
  containers:
    - name: pause
      image: registry.k8s.io/pause:3.10
YAML
}
pod_field() { "${kubectl_ctx[@]}" -n e2e get pod "$1" -o "jsonpath=$2"; }

# expect_fargate POD PROFILE: the webhook replicas learn about a new profile through a watch, so allow a
# few seconds for them to catch up, re-creating the pod on each try.
expect_fargate() {
  local pod="$1" profile="$2" scheduler="" label="" annotation=""
  for attempt in $(seq 1 10); do
    create_pod "$pod" "$3"
    scheduler="$(pod_field "$pod" '{.spec.schedulerName}')"
    label="$(pod_field "$pod" '{.metadata.labels.eks\.amazonaws\.com/fargate-profile}')"
    annotation="$(pod_field "$pod" '{.metadata.annotations.eks\.amazonaws\.com/fargate-profile}')"
    if [[ "$scheduler" == "fargate-scheduler" ]]; then break; fi
    echo "  attempt ${attempt}: ${pod} not mutated yet (schedulerName=${scheduler}), retrying"
    sleep 2
  done
  [[ "$scheduler" == "fargate-scheduler" ]] || fail "${pod}: schedulerName=${scheduler}, want fargate-scheduler"
  [[ "$label" == "$profile" ]] || fail "${pod}: label ${profile_label}=${label}, want ${profile}"
  [[ "$annotation" == "$profile" ]] || fail "${pod}: annotation ${profile_label}=${annotation}, want ${profile}"
  echo "  ok: ${pod} -> schedulerName=fargate-scheduler, ${profile_label}=${profile} (label and annotation)"
}

log "matching pods are mutated"
expect_fargate fargate-cli cli-profile infrastructure=fargate
expect_fargate fargate-kubectl kubectl-profile compute=serverless

log "a non-matching pod is left alone"
create_pod plain infrastructure=ec2
scheduler="$(pod_field plain '{.spec.schedulerName}')"
label="$(pod_field plain '{.metadata.labels.eks\.amazonaws\.com/fargate-profile}')"
annotation="$(pod_field plain '{.metadata.annotations.eks\.amazonaws\.com/fargate-profile}')"
[[ "$scheduler" == "default-scheduler" ]] || fail "plain: schedulerName=${scheduler}, want default-scheduler"
[[ -z "$label" ]] || fail "plain: unexpected label ${profile_label}=${label}"
[[ -z "$annotation" ]] || fail "plain: unexpected annotation ${profile_label}=${annotation}"
echo "  ok: plain -> schedulerName=default-scheduler, no ${profile_label} label or annotation"

log "the matching pod runs on the Fargate pool worker"
"${kubectl_ctx[@]}" -n e2e wait --for=condition=Ready pod/fargate-cli --timeout=180s \
  || fail "fargate-cli did not become Ready: $("${kubectl_ctx[@]}" -n e2e describe pod fargate-cli | tail -n 15)"
node="$(pod_field fargate-cli '{.spec.nodeName}')"
pool="$("${kubectl_ctx[@]}" get node "$node" -o 'jsonpath={.metadata.labels.fargate-webhook\.io/pool}')"
[[ "$pool" == "true" ]] || fail "fargate-cli runs on ${node}, which is not labelled fargate-webhook.io/pool=true"
capacity="$(pod_field fargate-cli '{.metadata.annotations.CapacityProvisioned}')"
[[ "$capacity" == "0.25vCPU 0.5GB" ]] || fail "fargate-cli: CapacityProvisioned=${capacity}, want 0.25vCPU 0.5GB"
echo "  ok: fargate-cli Running on the pool worker ${node}, CapacityProvisioned ${capacity}"

log "deleting cli-profile through the API"
eks delete-fargate-profile --cluster-name "$eks_cluster" --fargate-profile-name cli-profile >/dev/null
eks wait fargate-profile-deleted --cluster-name "$eks_cluster" --fargate-profile-name cli-profile
# As on EKS, the pods of the deleted profile are deleted with it.
"${kubectl_ctx[@]}" -n e2e wait --for=delete pod/fargate-cli --timeout=60s \
  || fail "fargate-cli was not deleted with its profile"
echo "  ok: fargate-cli deleted with cli-profile"

log "kind e2e test PASSED"
