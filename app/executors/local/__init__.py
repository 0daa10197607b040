"""The local executor: commands as processes on this machine, for laptops and CI.

``executor`` supervises runs, ``process`` builds their environment and starts them under
``wrapper`` (a stdlib-only script that applies ``sandbox``, Landlock confinement, before
exec), and ``output`` collects what a finished run leaves behind.
"""
