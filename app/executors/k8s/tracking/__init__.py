"""Recording runs from the cluster: ``watch`` follows Jobs, ``dispatch`` turns their events
into run state, ``pipeline`` and ``finish`` read the logs of finished runs and record them."""
