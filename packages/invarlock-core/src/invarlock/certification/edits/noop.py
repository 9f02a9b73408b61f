"""The ``noop`` edit: changes nothing (a run with it measures evaluation noise, which must be zero)."""

from __future__ import annotations

from typing import Any


def apply_noop(model: Any) -> dict[str, Any]:
    return {"modules": 0}
