"""The exit codes of the ``runyard`` command, server and client commands alike.

0 the run succeeded (or the command did what it says); 1 the run failed, timed out, was
cancelled or lost (or --timeout ran out); 2 usage error (bad arguments or settings); 3 the
server refused the request or could not be reached (or, for ``serve``, another server holds
the database; for ``reconcile``, the cluster did); 130 interrupted while waiting (the run goes on).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_INTERRUPTED = 130
