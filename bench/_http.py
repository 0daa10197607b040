"""A small keep-alive HTTP/1.1 load generator on raw asyncio streams.

Python HTTP clients spend more CPU per request than the server under test does; on two
cores that would measure the client. This one only writes request bytes and reads each
response by its Content-Length, so most of the CPU goes to the server.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RouteStats:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    def add(self, status: int, seconds: float) -> None:
        self.latencies.append(seconds)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    def summary(self, elapsed: float) -> dict[str, Any]:
        return {
            "requests": len(self.latencies),
            "rps": round(len(self.latencies) / elapsed, 1),
            "p50_ms": round(statistics.median(self.latencies) * 1000, 2) if self.latencies else 0,
            "p99_ms": round(self.percentile(0.99) * 1000, 2),
            "statuses": dict(self.statuses),
        }


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        lines = [f"{method} {path} HTTP/1.1", "Host: bench"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body or method in ("POST", "PUT"):
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        chunked = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if chunked:
            data = b""
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                if size == 0:
                    await self.reader.readline()
                    break
                data += await self.reader.readexactly(size)
                await self.reader.readline()
            return status, data
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


Pick = Callable[[int], tuple[str, str, str, bytes]]  # i -> (route label, method, path, body)


OnResponse = Callable[[str, int, bytes], None]


async def run_load(
    host: str,
    port: int,
    headers: dict[str, str],
    pick: Pick,
    *,
    clients: int,
    seconds: float,
    on_response: OnResponse | None = None,
) -> tuple[dict[str, RouteStats], float]:
    """``clients`` connections issue requests back to back for ``seconds``."""
    stats: dict[str, RouteStats] = {}
    deadline = time.perf_counter() + seconds
    counter = 0

    async def client() -> None:
        nonlocal counter
        connection = await Connection.open(host, port)
        try:
            while time.perf_counter() < deadline:
                counter += 1
                label, method, path, body = pick(counter)
                started = time.perf_counter()
                status, data = await connection.request(method, path, headers, body)
                stats.setdefault(label, RouteStats()).add(status, time.perf_counter() - started)
                if on_response is not None:
                    on_response(label, status, data)
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return stats, time.perf_counter() - started


def wait_for_port(host: str, port: int, timeout: float = 30.0) -> None:
    import socket

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as probe:
            if probe.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def describe(rows: Sequence[tuple[str, dict[str, Any]]]) -> str:
    out = []
    for label, summary in rows:
        out.append(
            f"  {label:<28} {summary['rps']:>9} req/s   p50 {summary['p50_ms']:>7} ms"
            f"   p99 {summary['p99_ms']:>7} ms   {summary['statuses']}"
        )
    return "\n".join(out)
