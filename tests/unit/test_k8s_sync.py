"""Comparing rendered and live objects, quantities, PUT bodies, and live Job statuses."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from app.executors.k8s.live import job_status
from app.executors.k8s.sync import parse_quantity, replacement, same, up_to_date

Obj = dict[str, Any]


def cronjob() -> Obj:
    return {
        "metadata": {"name": "a-b", "labels": {"app.kubernetes.io/managed-by": "runyard"}},
        "spec": {
            "schedule": "0 2 * * *",
            "suspend": False,
            "jobTemplate": {
                "metadata": {"labels": {"x": "y"}},
                "spec": {
                    "backoffLimit": 0,
                    "template": {
                        "metadata": {"labels": {"x": "y"}},
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [
                                {
                                    "name": "main",
                                    "image": "img:1",
                                    "env": [{"name": "A", "value": "1"}],
                                    "resources": {"requests": {"cpu": "0.5", "memory": "1Gi"}},
                                    "securityContext": {"allowPrivilegeEscalation": False},
                                }
                            ],
                            "volumes": [{"name": "s", "secret": {"secretName": "s"}}],
                        },
                    },
                },
            },
        },
    }


def with_server_defaults(obj: Obj) -> Obj:
    live = copy.deepcopy(obj)
    live["metadata"] |= {"uid": "u", "resourceVersion": "7", "generation": 3}
    live["metadata"]["labels"]["team"] = "data"  # someone else's label
    job = live["spec"]["jobTemplate"]
    job["metadata"]["creationTimestamp"] = None
    job["spec"] |= {"completionMode": "NonIndexed", "parallelism": 1, "completions": 1}
    job["spec"] |= {"suspend": False, "podReplacementPolicy": "Failed"}
    pod = job["spec"]["template"]
    pod["metadata"]["creationTimestamp"] = None
    pod["spec"] |= {"dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler"}
    pod["spec"]["terminationGracePeriodSeconds"] = 30
    main = pod["spec"]["containers"][0]
    main |= {"imagePullPolicy": "IfNotPresent", "terminationMessagePolicy": "File"}
    main["terminationMessagePath"] = "/dev/termination-log"
    main["resources"]["requests"]["cpu"] = "500m"  # canonical form
    pod["spec"]["volumes"][0]["secret"]["defaultMode"] = 420
    live["status"] = {"lastScheduleTime": "2026-04-28T02:00:00Z"}
    return live


def test_server_defaults_and_status_are_not_differences() -> None:
    assert up_to_date(cronjob(), with_server_defaults(cronjob()))


def edit_main(live: Obj, **changes: Any) -> Obj:
    live["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0] |= changes
    return live


@pytest.mark.parametrize(
    "edit",
    [
        lambda o: o["spec"].__setitem__("schedule", "* * * * *"),
        lambda o: o["spec"].__setitem__("suspend", True),
        lambda o: o["metadata"]["labels"].__setitem__("app.kubernetes.io/managed-by", "me"),
        lambda o: edit_main(o, env=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]),
        lambda o: edit_main(o, env=[]),
        lambda o: edit_main(
            o, securityContext={"allowPrivilegeEscalation": False, "privileged": True}
        ),
        lambda o: edit_main(o, imagePullPolicy="Never"),
        lambda o: edit_main(o, resources={"requests": {"cpu": "600m", "memory": "1Gi"}}),
        lambda o: o["spec"]["jobTemplate"]["spec"].__setitem__("suspend", True),
        lambda o: o["spec"]["jobTemplate"]["spec"]["template"]["spec"].__setitem__(
            "hostNetwork", True
        ),
        lambda o: o["spec"]["jobTemplate"]["spec"].__setitem__("backoffLimit", False),
    ],
)
def test_hand_edits_are_differences(edit: Any) -> None:
    live = with_server_defaults(cronjob())
    edit(live)
    assert not up_to_date(cronjob(), live)


def test_a_suspended_job_template_is_desired_state() -> None:
    """runyard renders jobTemplate.spec.suspend: true (scheduled Jobs wait for runyard): the
    live true is equal; false, or the field missing, is drift that the reconcile reverts."""
    desired = cronjob()
    desired["spec"]["jobTemplate"]["spec"]["suspend"] = True
    live = with_server_defaults(cronjob())
    live["spec"]["jobTemplate"]["spec"]["suspend"] = True
    assert up_to_date(desired, live)
    live["spec"]["jobTemplate"]["spec"]["suspend"] = False
    assert not up_to_date(desired, live)
    del live["spec"]["jobTemplate"]["spec"]["suspend"]
    assert not up_to_date(desired, live)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("0.5", Decimal("0.5")),
        ("2", Decimal(2)),
        ("1Gi", Decimal(1024**3)),
        ("1024Mi", Decimal(1024**3)),
        ("1e3", Decimal(1000)),
        ("1k", Decimal(1000)),
        (2, Decimal(2)),
        ("lots", None),
        ("1Xi", None),
    ],
)
def test_quantities(text: Any, value: Decimal | None) -> None:
    assert parse_quantity(text) == value


def test_quantities_compare_by_value_only_under_requests_and_limits() -> None:
    assert same({"limits": {"memory": "1Gi"}}, {"limits": {"memory": "1024Mi"}})
    assert not same({"image": "1Gi"}, {"image": "1024Mi"})


def test_a_put_body_keeps_the_resource_version_and_others_labels() -> None:
    live = with_server_defaults(cronjob())
    live["metadata"]["annotations"] = {"note": "kept"}
    body = replacement(cronjob(), live)
    assert body["metadata"]["resourceVersion"] == "7"
    assert body["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "runyard", "team": "data"}
    assert body["metadata"]["annotations"] == {"note": "kept"}
    assert body["spec"] == cronjob()["spec"] and "status" not in body


def condition(kind: str, status: str = "True") -> Obj:
    return {"type": kind, "status": status}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({}, "pending"),
        ({"active": 1}, "pending"),
        ({"active": 1, "ready": 1, "startTime": "t"}, "running"),
        ({"startTime": "t", "succeeded": 1}, "running"),
        ({"conditions": [condition("SuccessCriteriaMet")]}, "succeeded"),
        ({"conditions": [condition("SuccessCriteriaMet"), condition("Complete")]}, "succeeded"),
        ({"conditions": [condition("FailureTarget")], "active": 1, "ready": 1}, "failed"),
        ({"conditions": [condition("Failed")]}, "failed"),
        ({"conditions": [condition("Suspended")]}, "pending"),
        ({"conditions": [condition("Failed", "False")], "ready": 1}, "running"),
    ],
)
def test_live_status(status: Obj, expected: str) -> None:
    assert job_status({"status": status}) == expected
