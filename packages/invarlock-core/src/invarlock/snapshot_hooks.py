"""The four snapshot hookimpls, written once for the two shapes plugins share.

- :class:`InferenceOnlySnapshots`: an adapter declared ``SnapshotSupport.NO`` (ONNX Runtime
  sessions, llama.cpp contexts) refuses every snapshot operation on its own models with
  ``UnsupportedOperationError`` and leaves every other model to other plugins.
- :class:`ModuleSnapshots`: an adapter whose models carry state a generic engine would miss
  (quantization state outside parameters and buffers, compression schemes) answers first (``tryfirst``) for
  its own models from one module of its own that defines ``snapshot``, ``restore``,
  ``snapshot_chunked`` and ``restore_chunked``, imported only when one of its models is asked.

A plugin module builds one and exposes its bound methods under the hook names::

    _snapshots = InferenceOnlySnapshots(is_gguf_model, "gguf models are inference-only: ... {operation} ...")
    invarlock_snapshot = _snapshots.invarlock_snapshot
    invarlock_restore = _snapshots.invarlock_restore
    invarlock_snapshot_chunked = _snapshots.invarlock_snapshot_chunked
    invarlock_restore_chunked = _snapshots.invarlock_restore_chunked
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from invarlock import hookimpl
from invarlock.errors import UnsupportedOperationError

__all__ = ["InferenceOnlySnapshots", "ModuleSnapshots"]

Owns = Callable[[Any], bool]


class InferenceOnlySnapshots:
    """Refuses snapshot and restore for the models ``owns`` recognises.

    ``refusal`` is the one-sentence message with an ``{operation}`` placeholder ("be snapshotted",
    "be restored from a snapshot")."""

    def __init__(self, owns: Owns, refusal: str) -> None:
        self.owns, self.refusal = owns, refusal

    def _refuse(self, model: Any, operation: str) -> None:
        if self.owns(model):
            raise UnsupportedOperationError(self.refusal.format(operation=operation))

    @hookimpl
    def invarlock_snapshot(self, model: Any, include: Sequence[str] | None, same_device: bool) -> Any | None:
        self._refuse(model, "be snapshotted")
        return None

    @hookimpl
    def invarlock_restore(self, model: Any, snapshot: Any) -> bool | None:
        self._refuse(model, "be restored from a snapshot")
        return None

    @hookimpl
    def invarlock_snapshot_chunked(
        self, model: Any, directory: Path | None, include: Sequence[str] | None, shard_bytes: int | None
    ) -> Path | None:
        self._refuse(model, "be snapshotted")
        return None

    @hookimpl
    def invarlock_restore_chunked(self, model: Any, path: Path) -> bool | None:
        self._refuse(model, "be restored from a snapshot")
        return None


class ModuleSnapshots:
    """Answers first for the models ``owns`` recognises, through the functions of ``module``."""

    def __init__(self, owns: Owns, module: str) -> None:
        self.owns, self.module = owns, module

    def _engine(self) -> Any:
        return importlib.import_module(self.module)

    @hookimpl(tryfirst=True)
    def invarlock_snapshot(self, model: Any, include: Sequence[str] | None, same_device: bool) -> Any | None:
        if not self.owns(model):
            return None
        return self._engine().snapshot(model, include, same_device)

    @hookimpl(tryfirst=True)
    def invarlock_restore(self, model: Any, snapshot: Any) -> bool | None:
        if not self.owns(model):
            return None
        self._engine().restore(model, snapshot)
        return True

    @hookimpl(tryfirst=True)
    def invarlock_snapshot_chunked(
        self, model: Any, directory: Path | None, include: Sequence[str] | None, shard_bytes: int | None
    ) -> Path | None:
        if not self.owns(model):
            return None
        path: Path = self._engine().snapshot_chunked(model, directory, include, shard_bytes)
        return path

    @hookimpl(tryfirst=True)
    def invarlock_restore_chunked(self, model: Any, path: Path) -> bool | None:
        if not self.owns(model):
            return None
        self._engine().restore_chunked(model, path)
        return True
