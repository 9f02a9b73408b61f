"""invarlock-torch: the snapshot engine for PyTorch models, in memory and chunked on disk, exact to the bit.

A library, not an adapter (it registers no plugin): adapter distributions call it from their
snapshot hookimpls. invarlock-hf uses it for transformers models; invarlock-bnb, the GPTQ/AWQ
adapters and third-party PyTorch adapters reuse it, passing ``extra_tensors`` for state outside
parameters and buffers and ``settings`` for what a restore must find unchanged.

The public API is ``__all__`` (documented in docs/snapshot-engine.md); every other name is
private to this distribution. Importing this package is cheap: torch is imported when the first
engine name is looked up.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from invarlock_torch.chunked import (
        DEFAULT_SHARD_BYTES,
        SnapshotManifest,
        crc32,
        read_manifest,
        remove_chunked_snapshot,
        restore_chunked_snapshot,
        write_chunked_snapshot,
    )
    from invarlock_torch.layout import Settings, SnapshotLayout, TensorSlot, tensor_identity
    from invarlock_torch.memory import ModelSnapshot, restore_snapshot, take_snapshot

_EXPORTS = {
    "ModelSnapshot": "memory",
    "take_snapshot": "memory",
    "restore_snapshot": "memory",
    "DEFAULT_SHARD_BYTES": "chunked",
    "SnapshotManifest": "chunked",
    "crc32": "chunked",
    "read_manifest": "chunked",
    "write_chunked_snapshot": "chunked",
    "restore_chunked_snapshot": "chunked",
    "remove_chunked_snapshot": "chunked",
    "Settings": "layout",
    "SnapshotLayout": "layout",
    "TensorSlot": "layout",
    "tensor_identity": "layout",
}

__all__ = [
    "DEFAULT_SHARD_BYTES",
    "ModelSnapshot",
    "Settings",
    "SnapshotLayout",
    "SnapshotManifest",
    "TensorSlot",
    "crc32",
    "read_manifest",
    "remove_chunked_snapshot",
    "restore_chunked_snapshot",
    "restore_snapshot",
    "take_snapshot",
    "tensor_identity",
    "write_chunked_snapshot",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
