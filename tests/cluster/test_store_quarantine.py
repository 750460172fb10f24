"""A journalled write the real apiserver refuses for good does not stop the Kubernetes store: a pending
create written before a CRD upgrade tightened the schema is quarantined (kept in the coordination ConfigMap,
counted) and the next API write goes through, instead of every write answering 500 until someone removes the
entry by hand (README, "Several replicas")."""

import json

import pytest

from conftest import CRD, ENV, ROLE, clear_profiles, eks_client, ensure_namespace, kjson, kubectl, metric_sum, start_webhook, wait_until

LOCK_NS = "fw-quarantine"
LOCK = "fargate-webhook-profiles-lock"
CRD_NAME = "fargateprofiles.fargate-webhook.io"
# Where a rule on each selector goes in the CRD's schema.
SELECTOR_RULES = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/selectors/items/x-kubernetes-validations"
TIGHTENED = "tightened: the namespace 'forbidden' is no longer allowed"


def replica():
    return start_webhook("--store", "kubernetes", "--create-delay", "300ms", "--delete-delay", "300ms",
                         env={"KUBECONFIG": ENV["KUBECONFIG"], "POD_NAMESPACE": LOCK_NS})


def status_of(hook, name):
    return eks_client(hook.api_url).describe_fargate_profile(
        clusterName="fargate", fargateProfileName=name)["fargateProfile"]["status"]


@pytest.fixture
def fresh(crd):
    ensure_namespace(LOCK_NS)
    clear_profiles()
    kubectl("delete", "configmap", LOCK, "-n", LOCK_NS, "--ignore-not-found")
    yield
    # The chart's CRD again, and nothing left behind. A server-side apply keeps fields another manager
    # added, so the added rule is removed by name first.
    kubectl("patch", "crd", CRD_NAME, "--type=json", "-p", json.dumps([{"op": "remove", "path": SELECTOR_RULES}]),
            check=False)
    kubectl("apply", "--server-side", "--force-conflicts", "-f", CRD)
    crd_now = kjson("get", "crd", CRD_NAME)
    items = crd_now["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["selectors"]["items"]
    assert "x-kubernetes-validations" not in items, "the tightened rule outlived the test"
    clear_profiles()
    kubectl("delete", "configmap", LOCK, "-n", LOCK_NS, "--ignore-not-found", check=False)


def test_a_pending_create_the_tightened_crd_refuses_is_quarantined_and_writes_go_on(fresh):
    hook = replica()
    try:
        eks = eks_client(hook.api_url)
        eks.create_fargate_profile(clusterName="fargate", fargateProfileName="seed", podExecutionRoleArn=ROLE,
                                   selectors=[{"namespace": "seed"}])
        wait_until("seed ACTIVE", lambda: status_of(hook, "seed") == "ACTIVE", timeout=30)
    finally:
        hook.stop()

    # A commit cut off after its journal was written: a create, made from the stored seed so that its
    # shape is the store's own, valid under the CRD of the time.
    seed = kjson("get", "fp", "seed")
    spec = dict(seed["spec"], selectors=[{"namespace": "forbidden"}])
    spec.pop("tags", None)
    status = dict(seed["status"], status="CREATING",
                  fargateProfileArn=seed["status"]["fargateProfileArn"].replace("/seed/", "/tight/"))
    status.pop("observedGeneration", None)
    pending = {"commit": "cut-off", "ops": [{"op": "create", "name": "tight", "spec": spec, "status": status}]}
    kubectl("patch", "configmap", LOCK, "-n", LOCK_NS, "--type=merge",
            "-p", json.dumps({"data": {"pending": json.dumps(pending)}}))

    # Then a CRD upgrade tightens the schema under it.
    kubectl("patch", "crd", CRD_NAME, "--type=json", "-p", json.dumps([{
        "op": "add", "path": SELECTOR_RULES,
        "value": [{"rule": "self.namespace != 'forbidden'", "message": TIGHTENED}]}]))
    wait_until("the tightened schema in force", lambda: kubectl(
        "create", "--dry-run=server", "-f", "-", check=False, input=json.dumps({
            "apiVersion": "fargate-webhook.io/v1alpha1", "kind": "FargateProfile", "metadata": {"name": "probe"},
            "spec": spec})).code != 0, timeout=30, interval=0.5)

    hook = replica()
    try:
        eks = eks_client(hook.api_url)
        # The next write rolls the journal forward first: the apiserver refuses the create (422), the entry
        # is quarantined, and this create goes through.
        eks.create_fargate_profile(clusterName="fargate", fargateProfileName="after", podExecutionRoleArn=ROLE,
                                   selectors=[{"namespace": "after"}])
        wait_until("after ACTIVE", lambda: status_of(hook, "after") == "ACTIVE", timeout=30)
        data = kjson("get", "configmap", LOCK, "-n", LOCK_NS)["data"]
        assert "pending" not in data or not data["pending"], data
        quarantined = json.loads(data["quarantined"])
        assert [q["op"]["name"] for q in quarantined] == ["tight"], quarantined
        assert TIGHTENED in quarantined[0]["refused"], quarantined[0]["refused"]
        assert kubectl("get", "fp", "tight", check=False).code != 0, "the refused create was not made"
        assert metric_sum(hook.metrics(), "fargate_webhook_store_quarantined_writes_total") == 1
        # And deletes go on too.
        for name in ("seed", "after"):
            eks.delete_fargate_profile(clusterName="fargate", fargateProfileName=name)
            wait_until(f"{name} gone", lambda: kubectl("get", "fp", name, check=False).code != 0, timeout=30)
    finally:
        hook.stop()
