"""The fake cluster in its own process, for benchmarks that must not share the GIL with it.

As a command (prints the URL on the first line of standard output, serves until stdin closes
or SIGTERM/SIGINT)::

    PYTHONPATH=. python -m tests.harness.k8s_server --kubeconfig /tmp/kc --auto-complete-delay 0.05

From Python::

    with FakeClusterProcess(auto_complete_delay=0.05) as cluster:
        batch = kubernetes.client.BatchV1Api(cluster.api_client())
        ...
        stats = cluster.request_stats()  # {"total": n, "writes": n, "resource_version": rv}

Only HTTP crosses the process boundary: the state-access and controller helpers of
``FakeCluster`` (get, run_job, fire_cronjob, ...) need the in-process ``FakeCluster``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

import kubernetes.client

from tests.harness.k8s import FakeCluster, client_configuration, write_kubeconfig
from tests.harness.k8s_state import JobBehaviour

REPO_ROOT = Path(__file__).resolve().parents[2]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness.k8s_server", description="Serve a fake Kubernetes API."
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--kubeconfig", type=Path, help="write a kubeconfig pointing at the server")
    parser.add_argument(
        "--auto-complete-delay", type=float, help="run every new Job after this many seconds"
    )
    parser.add_argument("--duration", type=float, default=0.0, help="how long auto-run Jobs run")
    parser.add_argument("--exit-code", type=int, default=0, help="exit code of auto-run Jobs")
    parser.add_argument("--logs", default="", help="log text of auto-run Jobs")
    parser.add_argument("--server-defaults", action="store_true")
    parser.add_argument("--no-auto-namespaces", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    behaviour = None
    if args.auto_complete_delay is not None:
        behaviour = JobBehaviour(
            delay=args.auto_complete_delay,
            duration=args.duration,
            exit_code=args.exit_code,
            logs=args.logs,
        )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with FakeCluster(
        auto_complete=behaviour,
        port=args.port,
        server_defaults=args.server_defaults,
        auto_namespaces=not args.no_auto_namespaces,
    ) as cluster:
        if args.kubeconfig:
            cluster.write_kubeconfig(args.kubeconfig)
        print(cluster.url, flush=True)

        def watch_stdin() -> None:
            sys.stdin.read()
            stop.set()

        threading.Thread(target=watch_stdin, daemon=True).start()
        stop.wait()


class FakeClusterProcess:
    """Run ``python -m tests.harness.k8s_server`` as a child process (a context manager)."""

    def __init__(
        self,
        *,
        auto_complete_delay: float | None = None,
        duration: float = 0.0,
        exit_code: int = 0,
        logs: str = "",
        server_defaults: bool = False,
        port: int = 0,
    ) -> None:
        self._argv = [
            "--port",
            str(port),
            "--duration",
            str(duration),
            "--exit-code",
            str(exit_code),
        ]
        if auto_complete_delay is not None:
            self._argv += ["--auto-complete-delay", str(auto_complete_delay)]
        if logs:
            self._argv += ["--logs", logs]
        if server_defaults:
            self._argv.append("--server-defaults")
        self._process: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.harness.k8s_server", *self._argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO_ROOT,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"the fake cluster process did not start: {line!r}")
        self.url = line

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def client_configuration(self) -> kubernetes.client.Configuration:
        return client_configuration(self.url)

    def api_client(self) -> kubernetes.client.ApiClient:
        return kubernetes.client.ApiClient(self.client_configuration())

    def write_kubeconfig(self, path: Path, *, namespace: str = "default") -> Path:
        return write_kubeconfig(self.url, path, namespace=namespace)

    def request_stats(self, *, records: bool = False) -> dict[str, Any]:
        """``{"total", "writes", "resource_version"}`` (plus ``records`` when asked)."""
        query = "?records=1" if records else ""
        with urllib.request.urlopen(f"{self.url}/_harness/requests{query}", timeout=10) as response:
            result: dict[str, Any] = json.load(response)
        return result

    def reset_requests(self) -> None:
        request = urllib.request.Request(f"{self.url}/_harness/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10):
            pass


if __name__ == "__main__":
    main()
