"""The Kubernetes executor: CronJobs for scheduled jobs, Jobs for one-off runs.

``gateway`` is the only module that imports the ``kubernetes`` client; ``executor`` holds the
logic, ``render`` builds manifests from the skeletons, ``sync`` keeps CronJobs in step with
the database, ``live`` answers the live jobs API, ``status`` reads a Job's state, and
``tracking/`` records runs from one watch (dispatch, the finishing pipeline, log assembly).
"""
