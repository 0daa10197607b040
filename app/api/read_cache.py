"""Rendered bodies of hot reads, kept while the database has not changed.

The event loop's read-only connection sees ``PRAGMA data_version`` change whenever any other
connection commits, and it commits nothing itself: a body computed at one version is still
exact while the version stays. Checking it costs a few microseconds; rendering a list of
50 jobs costs a few hundred. Any write anywhere empties the cache's validity at once, so
under a write load this saves nothing and costs one pragma per read.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

from app.store import Database

# Room for every job list of 100,000 jobs in 2,000 projects (~85 MB of JSON): a list
# evicted and asked again is rendered again (~0.4 ms for 50 jobs), which at that size
# brought the list to a quarter of a bare route's throughput. Only lists asked for are kept.
MAX_BYTES = 128 * 1024 * 1024


class ReadCache:
    def __init__(self, database: Database, max_bytes: int = MAX_BYTES) -> None:
        self._db = database
        self._max = max_bytes
        self._bytes = 0
        self._entries: OrderedDict[Hashable, tuple[int, bytes]] = OrderedDict()

    def get(self, key: Hashable, render: Callable[[], bytes]) -> bytes:
        """The body for ``key``: kept, if still exact, else rendered (an error propagates
        and nothing is kept). Only the loop's read-only connection tells every write; on
        any other thread the body is rendered each time."""
        if not self._db.reads_only_here():
            return render()
        version = self._db.version()
        kept = self._entries.get(key)
        if kept is not None and kept[0] == version:
            self._entries.move_to_end(key)
            return kept[1]
        # Rendered after reading the version: at least as new as it, so never stale.
        body = render()
        if kept is not None:
            self._bytes -= len(kept[1])
        if len(body) <= self._max // 4:
            self._entries[key] = (version, body)
            self._entries.move_to_end(key)
            self._bytes += len(body)
            while self._bytes > self._max:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= len(dropped)
        else:
            self._entries.pop(key, None)
        return body
