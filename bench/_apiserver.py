"""The server side of bench/api.py and bench/load.py: runyard's app under uvicorn, plus a
bare Litestar route returning a fixed msgspec Struct, in the same process and set-up."""

from __future__ import annotations

import argparse

import msgspec
import uvicorn
from litestar import get

from app.main import create_app
from app.settings import RateLimit, Settings


class Fixed(msgspec.Struct):
    id: str
    name: str
    status: str


FIXED = Fixed("job_bench", "bare", "ok")


@get("/bench/bare")
async def bare() -> Fixed:
    return FIXED


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--executor", default="local")
    args = parser.parse_args()
    # A benchmark measures the server, not the per-token budget.
    settings = Settings(
        database=args.db, executor=args.executor, rate_limit=RateLimit(10_000_000, 1)
    )
    app = create_app(settings)
    app.register(bare)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
