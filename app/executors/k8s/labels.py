"""The names runyard and the cluster share: the labels and annotations runyard puts on its
CronJobs, Jobs and pods (and selects them by), the ones the Kubernetes controllers set that
runyard reads, and the name of the container that runs the engine.

Renamed here, a label changes for every reader and writer at once; a cluster still holding
objects with the old name needs a migration of its own (reconcile only finds what the
selector matches).
"""

from __future__ import annotations

# --- set by runyard ---------------------------------------------------------------------------

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "runyard"  # MANAGED_BY's value on everything runyard creates
SELECTOR = f"{MANAGED_BY}={MANAGER}"
ORG_LABEL = "runyard.dev/org"
PROJECT_LABEL = "runyard.dev/project-id"
JOB_LABEL = "runyard.dev/job-id"
RUN_LABEL = "runyard.dev/run-id"
# Names and version for people reading `kubectl describe`; annotations, since names may be
# renamed and label values are restricted.
PROJECT_ANNOTATION = "runyard.dev/project"
JOB_ANNOTATION = "runyard.dev/job"
VERSION_ANNOTATION = "runyard.dev/job-version"
# The pod template's container that runs dbt or SQLMesh (k8s_templates/job.yaml).
MAIN_CONTAINER = "main"

# --- set by the Kubernetes controllers ---------------------------------------------------------

# On a Job the CronJob controller created: the slot it was created for.
SCHEDULED_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
# On a Job's pods: the Job's name, and its uid.
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
