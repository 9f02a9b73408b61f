"""The snapshot engine: in-memory and chunked snapshots of PyTorch models, restored bit for bit.

invarlock-hf's snapshot hooks use it for transformers models; invarlock-bnb, -gptq and -awq reuse it
(passing ``extra_tensors`` for state outside parameters and buffers). Importing this package is
cheap: torch is imported when the first engine function is looked up.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from invarlock_hf.snapshot.chunked import (
        DEFAULT_SHARD_BYTES,
        SnapshotManifest,
        read_manifest,
        remove_chunked_snapshot,
        restore_chunked_snapshot,
        write_chunked_snapshot,
    )
    from invarlock_hf.snapshot.memory import ModelSnapshot, restore_snapshot, take_snapshot

_EXPORTS = {
    "ModelSnapshot": "memory",
    "take_snapshot": "memory",
    "restore_snapshot": "memory",
    "DEFAULT_SHARD_BYTES": "chunked",
    "SnapshotManifest": "chunked",
    "read_manifest": "chunked",
    "write_chunked_snapshot": "chunked",
    "restore_chunked_snapshot": "chunked",
    "remove_chunked_snapshot": "chunked",
}

__all__ = [
    "DEFAULT_SHARD_BYTES",
    "ModelSnapshot",
    "SnapshotManifest",
    "read_manifest",
    "remove_chunked_snapshot",
    "restore_chunked_snapshot",
    "restore_snapshot",
    "take_snapshot",
    "write_chunked_snapshot",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
