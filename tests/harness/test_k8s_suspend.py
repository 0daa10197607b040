"""Job suspension in the emulator (``spec.suspend``), through the real client: a suspended
Job gets no pod and does not run until it is patched to false; patching resumes it."""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes.client import BatchV1Api

from tests.harness.k8s import FakeCluster, HarnessError, JobBehaviour, job_finished
from tests.harness.test_k8s_harness import NS, job_body

RESUME = {"spec": {"suspend": False}}


def test_a_suspended_job_has_no_pod_until_it_is_resumed() -> None:
    with (
        FakeCluster(auto_complete=JobBehaviour(delay=0.02, logs="auto\n")) as fake,
        fake.api_client() as client,
    ):
        batch = BatchV1Api(client)
        batch.create_namespaced_job(NS, job_body("held", backoffLimit=0, suspend=True))
        time.sleep(0.2)
        assert fake.job_pods(NS, "held") == []
        assert job_finished(fake.get("jobs", NS, "held") or {}) is None
        with pytest.raises(HarnessError, match="suspended"):
            fake.start_job(NS, "held")  # the controller makes no pod for it
        with pytest.raises(HarnessError, match="suspended"):
            fake.finish_job(NS, "held")
        batch.patch_namespaced_job("held", NS, RESUME)  # a strategic merge patch, as runyard's
        fake.wait_for(lambda: job_finished(fake.get("jobs", NS, "held") or {}))
        assert job_finished(fake.get("jobs", NS, "held") or {}) == "Complete"
        assert len(fake.job_pods(NS, "held")) == 1


def test_run_job_waits_for_the_resume() -> None:
    with FakeCluster() as fake, fake.api_client() as client:
        batch = BatchV1Api(client)
        batch.create_namespaced_job(NS, job_body("later", backoffLimit=0, suspend=True))
        ran = threading.Event()

        def play_kubelet() -> None:
            fake.run_job(NS, "later", logs="ok\n")
            ran.set()

        thread = threading.Thread(target=play_kubelet)
        thread.start()
        time.sleep(0.3)
        assert not ran.is_set() and fake.job_pods(NS, "later") == []
        batch.patch_namespaced_job("later", NS, RESUME)
        thread.join(10)
        assert ran.is_set()
        assert job_finished(fake.get("jobs", NS, "later") or {}) == "Complete"
