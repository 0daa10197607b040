"""Type aliases shared across packages."""

from __future__ import annotations

from typing import Any

# A JSON object as decoded: a Kubernetes API object as the client returns it, a manifest
# as runyard renders it.
Obj = dict[str, Any]
