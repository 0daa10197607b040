"""What a Job's state means for its run (app/executors/k8s/status.py), and how the stored log
is put together and capped (app/executors/k8s/tracking/finish.py): pure functions, no cluster."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.executors.k8s.live import read_logs
from app.executors.k8s.status import (
    attempts_of,
    lost_outcome,
    outcome_of,
    parse_time,
    view_of,
)
from app.executors.k8s.tracking.finish import HeadTail, LogStream, assemble_log
from app.executors.k8s.tracking.watch import json_lines
from app.types import Obj

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2026, 4, 28, 3, 0, tzinfo=UTC)
LABELS = {
    "app.kubernetes.io/managed-by": "runyard",
    "runyard.dev/org": "acme",
    "runyard.dev/project-id": "proj_1",
    "runyard.dev/job-id": "job_1",
}


def job(status: Obj | None = None, **meta: Any) -> Obj:
    metadata: Obj = {"name": "analytics-nightly-1", "namespace": "org-acme", "uid": "u-1"}
    metadata["labels"] = {**LABELS, "runyard.dev/run-id": "run_1"}
    metadata.update(meta)
    return {"metadata": metadata, "spec": {"activeDeadlineSeconds": 600}, "status": status or {}}


def cond(kind: str, reason: str = "", message: str = "", at: str = "2026-04-28T02:10:00Z") -> Obj:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": at,
    }


def pod(name: str, created: str, exit_code: int | None, reason: str = "Error", **extra: Any) -> Obj:
    state: Obj = {"running": {}}
    if exit_code is not None:
        state = {"terminated": {"exitCode": exit_code, "reason": reason, **extra}}
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "main"}]},
        "status": {"containerStatuses": [{"name": "main", "state": state}]},
    }


# --- view_of --------------------------------------------------------------------------------


def test_a_job_without_runyards_label_is_not_ours() -> None:
    obj = job()
    del obj["metadata"]["labels"]["app.kubernetes.io/managed-by"]
    assert view_of(obj) is None


@pytest.mark.parametrize(
    ("status", "phase"),
    [
        ({}, "waiting"),
        ({"startTime": "2026-04-28T02:00:00Z", "active": 1}, "running"),
        ({"startTime": "2026-04-28T02:00:00Z", "active": 1, "ready": 1}, "running"),
        ({"startTime": "2026-04-28T02:00:00Z", "failed": 1}, "running"),  # retry pending
        ({"conditions": [cond("SuccessCriteriaMet")]}, "succeeded"),
        ({"conditions": [cond("Complete")]}, "succeeded"),
        ({"conditions": [cond("FailureTarget", "BackoffLimitExceeded")]}, "failed"),
        ({"conditions": [cond("Failed", "DeadlineExceeded")]}, "failed"),
        ({"conditions": [{**cond("Failed"), "status": "False"}]}, "waiting"),
    ],
)
def test_phases(status: Obj, phase: str) -> None:
    view = view_of(job(status))
    assert view is not None and view.phase == phase
    assert view.terminal == (phase in ("succeeded", "failed"))


def test_end_time_is_completion_time_or_the_failure_condition() -> None:
    done = view_of(
        job({"completionTime": "2026-04-28T02:05:00Z", "conditions": [cond("Complete")]})
    )
    assert done is not None and done.end_time == datetime(2026, 4, 28, 2, 5, tzinfo=UTC)
    failed = view_of(
        job(
            {
                "conditions": [
                    cond("FailureTarget", "X", at="2026-04-28T02:07:00Z"),
                    cond("Failed", "X"),
                ]
            }
        )
    )
    assert failed is not None and failed.end_time == datetime(2026, 4, 28, 2, 10, tzinfo=UTC)
    assert failed.reason == "X"


def test_a_scheduled_job_is_recognised_with_its_time_in_utc() -> None:
    obj = job(
        annotations={
            "batch.kubernetes.io/cronjob-scheduled-timestamp": "2026-04-28T04:00:00+02:00"
        },
        ownerReferences=[{"kind": "CronJob", "name": "analytics-nightly", "uid": "c"}],
    )
    del obj["metadata"]["labels"]["runyard.dev/run-id"]
    view = view_of(obj)
    assert view is not None and view.scheduled and view.cronjob == "analytics-nightly"
    assert view.scheduled_for == datetime(2026, 4, 28, 2, tzinfo=UTC)
    assert view.job_id == "job_1" and view.run_id is None


def test_without_the_annotation_the_time_comes_from_the_cronjob_controllers_name() -> None:
    minutes = int(datetime(2026, 4, 28, 2, tzinfo=UTC).timestamp() // 60)
    obj = job(
        name=f"analytics-nightly-{minutes}",
        ownerReferences=[{"kind": "CronJob", "name": "analytics-nightly", "uid": "c"}],
    )
    del obj["metadata"]["labels"]["runyard.dev/run-id"]
    view = view_of(obj)
    assert view is not None and view.scheduled_for == datetime(2026, 4, 28, 2, tzinfo=UTC)


def test_a_one_off_job_is_not_scheduled() -> None:
    view = view_of(job())
    assert view is not None and not view.scheduled and view.run_id == "run_1"


@pytest.mark.parametrize("text", ["", "not a time", None])
def test_bad_times_are_none(text: str | None) -> None:
    assert parse_time(text) is None


# --- attempts and outcomes ------------------------------------------------------------------


def test_attempts_are_oldest_first_with_init_containers_first() -> None:
    attempts = attempts_of(
        [pod("b", "2026-04-28T02:02:00Z", 3), pod("a", "2026-04-28T02:01:00Z", 3)]
    )
    assert [a.pod for a in attempts] == ["a", "b"]
    assert attempts[0].containers == ["init", "main"]
    assert attempts[0].ended[0].exit_code == 3


def test_success() -> None:
    view = view_of(
        job({"conditions": [cond("Complete")], "completionTime": "2026-04-28T02:05:00Z"})
    )
    assert view is not None
    outcome = outcome_of(view, attempts_of([pod("a", "t", 0, "Completed")]), "ok\n", "dbt", now=NOW)
    assert (outcome.status, outcome.exit_code, outcome.error) == ("success", 0, None)


def test_a_failed_dbt_model_is_named_from_the_last_attempts_log() -> None:
    view = view_of(job({"conditions": [cond("Failed", "PodFailurePolicy", "matched")]}))
    assert view is not None
    log = (FIXTURES / "dbt_run_broken.txt").read_text()
    outcome = outcome_of(view, attempts_of([pod("a", "t", 1)]), log, "dbt", now=NOW)
    assert outcome.status == "failed" and outcome.exit_code == 1
    assert outcome.error is not None and outcome.error.startswith("model broken_orders failed:")
    assert [r.name for r in outcome.results] == ["broken_orders"]


def test_a_failed_sqlmesh_run_names_its_model() -> None:
    view = view_of(job({"conditions": [cond("Failed", "PodFailurePolicy")]}))
    assert view is not None
    log = (FIXTURES / "sqlmesh_run_model_fail.txt").read_text()
    outcome = outcome_of(view, attempts_of([pod("a", "t", 1)]), log, "sqlmesh", now=NOW)
    assert outcome.status == "failed" and outcome.results
    assert outcome.error is not None and "model" in outcome.error


def test_the_termination_message_stands_in_for_a_lost_log() -> None:
    view = view_of(job({"conditions": [cond("Failed", "PodFailurePolicy")]}))
    assert view is not None
    log = (FIXTURES / "dbt_run_broken.txt").read_text()
    attempts = attempts_of([pod("a", "t", 1, message=log)])
    outcome = outcome_of(view, attempts, "", "dbt", now=NOW)
    assert outcome.error is not None and "model broken_orders failed" in outcome.error


def test_retries_and_container_reasons_are_told() -> None:
    view = view_of(job({"conditions": [cond("Failed", "BackoffLimitExceeded")]}))
    assert view is not None
    attempts = attempts_of([pod("a", "1", 137, "OOMKilled"), pod("b", "2", 137, "OOMKilled")])
    outcome = outcome_of(view, attempts, "Running\n", "dbt", now=NOW)
    assert outcome.exit_code == 137
    assert outcome.error == (
        "OOMKilled: dbt exited with code 137 (killed by SIGKILL): Running (after 2 attempts)"
    )


def test_deadline_exceeded_is_timed_out() -> None:
    view = view_of(job({"conditions": [cond("Failed", "DeadlineExceeded", "too long")]}))
    assert view is not None
    outcome = outcome_of(view, [], "", "dbt", now=NOW)
    assert outcome.status == "timed_out"
    assert outcome.error == "The run took longer than its timeout of 600 seconds and was stopped."
    assert outcome.end_time == datetime(2026, 4, 28, 2, 10, tzinfo=UTC)


def test_a_failure_without_pods_uses_the_jobs_condition() -> None:
    view = view_of(job({"conditions": [cond("Failed", "BackoffLimitExceeded", "limit hit")]}))
    assert view is not None
    outcome = outcome_of(view, [], "", "dbt", now=NOW)
    assert (outcome.status, outcome.exit_code) == ("failed", None)
    assert outcome.error == "limit hit (BackoffLimitExceeded)"


def test_lost_says_why() -> None:
    deleted = view_of(job(deletionTimestamp="2026-04-28T02:30:00Z"))
    outcome = lost_outcome(deleted, "org-acme", "x", now=NOW)
    assert outcome.status == "lost" and "was deleted before it finished" in (outcome.error or "")
    assert outcome.end_time == datetime(2026, 4, 28, 2, 30, tzinfo=UTC)
    missing = lost_outcome(None, "org-acme", "x", now=NOW)
    assert "no longer exists" in (missing.error or "") and missing.end_time == NOW


# --- logs -----------------------------------------------------------------------------------


def test_one_stream_is_kept_as_it_is() -> None:
    assert assemble_log([LogStream("p", "main", "a\nb")], 1, 1000) == "a\nb"
    assert assemble_log([], 0, 1000) == ""


def test_several_streams_get_a_header_each() -> None:
    streams = [LogStream("p1", "main", "one"), LogStream("p2", "main", "two\n")]
    assert assemble_log(streams, 2, 1000) == (
        "==> attempt 1 of 2: p1/main <==\none\n==> attempt 2 of 2: p2/main <==\ntwo\n"
    )


MARKER = re.compile(r"^\[runyard: (\d+) bytes of log were dropped here.*\]\n", re.MULTILINE)


def test_a_log_over_the_cap_keeps_head_and_tail_around_a_marker() -> None:
    text = "".join(f"line {i:04d}\n" for i in range(1000))
    capped = assemble_log([LogStream("p", "main", text)], 1, 2000)
    assert len(capped.encode()) <= 2000
    match = MARKER.search(capped)
    assert match is not None
    head, tail = capped[: match.start()], capped[match.end() :]
    assert text.startswith(head) and text.endswith(tail) and head and tail
    assert len(head) + int(match[1]) + len(tail) == len(text)  # whole lines only


@given(st.text(max_size=2000), st.lists(st.integers(0, 8000), max_size=20), st.integers(16, 600))
def test_head_tail_keeps_the_ends_and_counts_the_rest(
    text: str, cuts: list[int], limit: int
) -> None:
    data = text.encode()
    kept = HeadTail(limit)
    edges = [0, *sorted(c for c in cuts if c < len(data)), len(data)]
    for start, end in itertools.pairwise(edges):
        kept.feed(data[start:end])
    result = kept.text()
    match = MARKER.search(result)
    if len(data) <= 2 * (limit // 2):
        assert result == text and match is None
        return
    assert match is not None
    head, tail = result[: match.start()], result[match.end() :]
    # What is kept is the start and the end (a character cut in two may show as U+FFFD).
    assert text.startswith(head.rstrip("\ufffd\n")) and text.endswith(tail.lstrip("\ufffd"))
    # Each end may cut a character: the head's cut prefix decodes to one U+FFFD (at most +2
    # bytes), but each orphaned continuation byte at the tail's start becomes its own U+FFFD
    # (3 bytes for 1, so up to +6), and the head ends with a newline before the marker.
    assert len(head.encode()) + len(tail.encode()) <= 2 * (limit // 2) + 2 + 6 + 1


def test_json_lines_reassembles_events_split_across_chunks() -> None:
    stream = [b'{"type":"ADDED","object":{"a":', b"1}}\n", b'{"type":"DE', b'LETED"}\n\n', b"{}"]
    assert list(json_lines(stream)) == [
        {"type": "ADDED", "object": {"a": 1}},
        {"type": "DELETED"},
        {},
    ]


class _Pods:
    """A JobSource of one pod whose launcher init container printed nothing."""

    def list_jobs(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return []

    def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        spec = {"initContainers": [{"name": "launcher"}], "containers": [{"name": "main"}]}
        return [
            {"metadata": {"name": "p1", "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": spec}
        ]

    def pod_log(self, namespace: str, pod: str, container: str, tail: int | None) -> str | None:
        return "" if container == "launcher" else "dbt says hello\n"


def test_an_empty_init_container_log_adds_no_header() -> None:
    """The launcher's init container prints nothing: the run's log stays the main
    container's own text, without ``==> pod/container <==`` headers."""
    assert read_logs(_Pods(), "org-acme", "job-1", None) == "dbt says hello\n"
