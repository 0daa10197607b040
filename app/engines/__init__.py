"""What runyard knows about dbt and SQLMesh: their output and result files, and the
environment they need. Both executors, notifications and the demo use it; it knows nothing
of the web layer or of how a run was executed."""
