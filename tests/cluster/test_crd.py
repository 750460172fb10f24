"""The FargateProfile CRD against the real apiserver: its schema and CEL rules are accepted (within the
cost budget), and the apiserver itself enforces what they say."""

import copy
import json

import pytest

from conftest import ROLE, apply, kjson, kubectl


def profile(name, selectors=None, tags=None):
    spec = {"podExecutionRoleArn": ROLE, "selectors": selectors or [{"namespace": "default"}]}
    if tags is not None:
        spec["tags"] = tags
    return {"apiVersion": "fargate-webhook.io/v1alpha1", "kind": "FargateProfile", "metadata": {"name": name}, "spec": spec}


def refused(obj):
    """Server-side apply of `obj`; the apiserver's refusal text (fails if it accepted)."""
    r = apply(obj, check=False)
    assert r.code != 0, f"the apiserver accepted {obj}"
    return r.stderr


def test_crd_is_established_with_its_schema(crd):
    got = kjson("get", "crd", crd)
    conditions = {c["type"]: c["status"] for c in got["status"]["conditions"]}
    assert conditions.get("Established") == "True", conditions
    assert conditions.get("NamesAccepted") == "True", conditions
    # NonStructuralSchema would be set if the apiserver had found the schema unusable (pruning off).
    assert "NonStructuralSchema" not in conditions, conditions


def test_valid_profile_is_accepted_and_unknown_fields_are_pruned(crd):
    obj = profile("crd-valid", [{"namespace": "team-*", "labels": {"tier": "back?nd"}}], tags={"team": "a"})
    obj["spec"]["notAField"] = "dropped"
    # Strict field validation (kubectl's default) names the unknown field; without it the schema prunes it.
    strict = kubectl("create", "-f", "-", input=json.dumps(obj), check=False)
    assert strict.code != 0 and 'unknown field "spec.notAField"' in strict.stderr, strict.stderr
    kubectl("create", "--validate=false", "-f", "-", input=json.dumps(obj))
    try:
        stored = kjson("get", "fp", "crd-valid")
        assert stored["spec"]["selectors"] == [{"namespace": "team-*", "labels": {"tier": "back?nd"}}]
        assert "notAField" not in stored["spec"], "the structural schema prunes unknown fields"
    finally:
        kubectl("delete", "fp", "crd-valid", "--ignore-not-found")


def test_six_selectors_are_refused(crd):
    err = refused(profile("crd-six", [{"namespace": f"ns{i}"} for i in range(6)]))
    assert "spec.selectors" in err and "must have at most 5 items" in err, err


def test_six_labels_are_refused(crd):
    labels = {f"k{i}": "v" for i in range(6)}
    err = refused(profile("crd-labels", [{"namespace": "default", "labels": labels}]))
    assert "spec.selectors[0].labels" in err and "must have at most 5 items" in err, err


def test_no_selector_and_empty_namespace_are_refused(crd):
    obj = profile("crd-none")
    obj["spec"]["selectors"] = []
    assert "should have at least 1 items" in refused(obj)
    assert "spec.selectors[0].namespace" in refused(profile("crd-empty-ns", [{"namespace": ""}]))


@pytest.mark.parametrize(
    "name, text",
    [
        ("eks-reserved", "The fargate profile name starts with the reserved prefix: 'eks-'."),
        ("-leading-dash", "a lowercase RFC 1123 subdomain"),
        ("Capital", "a lowercase RFC 1123 subdomain"),
        ("under_score", "a lowercase RFC 1123 subdomain"),
        ("a" * 101, "The Fargate profile name parameter should not be greater than 100 characters."),
    ],
)
def test_bad_names_are_refused(crd, name, text):
    err = refused(profile(name))
    assert text in err, err


def test_bad_role_arn_and_reserved_tag_are_refused(crd):
    obj = profile("crd-role")
    obj["spec"]["podExecutionRoleArn"] = "arn:aws:iam::12:role/x"
    assert "spec.podExecutionRoleArn" in refused(obj)
    assert "reserved prefix 'aws:'" in refused(profile("crd-tag", tags={"aws:owner": "x"}))
    assert "tag keys must be 1 to 128 characters long" in refused(profile("crd-tag2", tags={"k" * 129: "x"}))


def test_spec_is_immutable_except_tags(crd):
    apply(profile("crd-immutable", [{"namespace": "default", "labels": {"a": "b"}}], tags={"team": "a"}))
    try:
        base = profile("crd-immutable", [{"namespace": "default", "labels": {"a": "b"}}], tags={"team": "a"})
        for change in (
            lambda s: s.update(selectors=[{"namespace": "other"}]),
            lambda s: s["selectors"][0]["labels"].update(a="c"),
            lambda s: s.update(podExecutionRoleArn="arn:aws:iam::012345678910:role/Other"),
            lambda s: s.update(subnets=["subnet-0420a37ee456daf3f"]),
        ):
            obj = copy.deepcopy(base)
            change(obj["spec"])
            err = refused(obj)
            assert "spec is immutable; create a new FargateProfile and delete the old one" in err, err
        # Tags may change, and the change is stored.
        obj = copy.deepcopy(base)
        obj["spec"]["tags"] = {"team": "b", "cost-center": "42"}
        apply(obj)
        assert kjson("get", "fp", "crd-immutable")["spec"]["tags"] == {"team": "b", "cost-center": "42"}
        # The status subresource: a spec write does not touch status, a status write does not touch spec.
        kubectl("patch", "fp", "crd-immutable", "--subresource=status", "--type=merge", "-p", '{"status":{"status":"ACTIVE"}}')
        assert kjson("get", "fp", "crd-immutable")["status"]["status"] == "ACTIVE"
        bad = kubectl("patch", "fp", "crd-immutable", "--subresource=status", "--type=merge",
                      "-p", '{"status":{"status":"RUNNING"}}', check=False)
        assert bad.code != 0 and "Unsupported value" in bad.stderr, bad.stderr
    finally:
        kubectl("delete", "fp", "crd-immutable", "--ignore-not-found")


def test_kubectl_get_shows_the_printer_columns(crd):
    apply(profile("crd-columns", [{"namespace": "default"}, {"namespace": "batch-*"}]))
    try:
        kubectl("patch", "fp", "crd-columns", "--subresource=status", "--type=merge",
                "-p", '{"status":{"status":"ACTIVE","clusterName":"fargate"}}')
        out = kubectl("get", "fp", "crd-columns", "-o", "wide").stdout.splitlines()
        assert out[0].split() == ["NAME", "STATUS", "SELECTORS", "CLUSTER", "AGE"], out
        row = out[1].split()
        assert row[:4] == ["crd-columns", "ACTIVE", '[{"namespace":"default"},{"namespace":"batch-*"}]', "fargate"], out
    finally:
        kubectl("delete", "fp", "crd-columns", "--ignore-not-found")
