"""concurrency_policy Queue on Kubernetes (the emulator): runs runyard starts itself wait in
the queue with no Kubernetes Job, and their Job is created, in order, when the one before
ends; a Queue job's CronJob allows every fire and makes its Jobs suspended, for runyard's
queue to resume (test_k8s_queue_cron.py)."""

# ruff: noqa: F811 - the fixtures imported from the support module are test parameters here
from __future__ import annotations

import time

from tests.integration.test_k8s_env import Kube, emulator, make_emulator  # noqa: F401
from tests.integration.test_k8s_tracker_support import (  # noqa: F401 - fixtures
    Tracked,
    tracked,
    tracked_app,
)


def test_queued_runs_get_their_job_in_order_when_the_previous_one_ends(tracked: Tracked) -> None:
    tracked.app.container.queue.start()  # the fixture starts the executor only
    project = tracked.project()
    job = tracked.job(project["id"], schedule="0 2 * * *", concurrency_policy="Queue")
    bodies = [tracked.trigger(project["id"], job["id"]) for _ in range(3)]
    assert [b["status"] for b in bodies] == ["pending", "queued", "queued"]
    assert [b.get("queue_position") for b in bodies] == [None, 1, 2]
    names = [b["job_name"] for b in bodies]
    assert len(set(names)) == 3
    # Only the first run has a Kubernetes Job; the others wait in runyard's queue.
    assert tracked.kube.job(names[0]) is not None
    assert tracked.kube.job(names[1]) is None and tracked.kube.job(names[2]) is None

    for index, name in enumerate(names):
        tracked.fake.finish_job(tracked.ns, name, logs=f"run {index}\n")
        tracked.wait_status(bodies[index]["job_run_id"], "success")
        if index + 1 < len(names):
            deadline = time.monotonic() + 10
            while tracked.kube.job(names[index + 1]) is None:
                assert time.monotonic() < deadline, f"the Job of run {index + 1} was not created"
                time.sleep(0.05)
            for later in names[index + 2 :]:
                assert tracked.kube.job(later) is None  # still waiting its turn

    # Deployed, the job's CronJob makes a suspended Job at every fire, which runyard's queue
    # resumes in turn (test_k8s_queue_cron.py): Kubernetes has no Queue.
    deployed = tracked.app.client.post(
        f"/api/v1/projects/{project['id']}/deploy", headers=tracked.app.admin
    )
    assert deployed.status_code == 200, deployed.text
    [cronjob] = tracked.fake.list("cronjobs", tracked.ns)
    assert cronjob["spec"]["concurrencyPolicy"] == "Allow"
    assert cronjob["spec"]["jobTemplate"]["spec"]["suspend"] is True


def test_a_queued_run_cancelled_on_kubernetes_never_gets_a_job(tracked: Tracked) -> None:
    tracked.app.container.queue.start()
    project = tracked.project()
    job = tracked.job(project["id"], schedule=None, concurrency_policy="Queue")
    first, second = (tracked.trigger(project["id"], job["id"]) for _ in range(2))
    response = tracked.app.client.post(
        f"/api/v1/runs/{second['job_run_id']}/cancel", headers=tracked.app.admin
    )
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    tracked.fake.finish_job(tracked.ns, first["job_name"])
    tracked.wait_status(first["job_run_id"], "success")
    time.sleep(0.5)
    assert tracked.kube.job(second["job_name"]) is None
    assert tracked.run(second["job_run_id"])["status"] == "cancelled"
