"""The snapshot hookimpls for transformers models, through invarlock-torch's engine; invarlock_hf.plugin
imports them to register them.

Each returns None for a model that is not a ``transformers.PreTrainedModel``, so other plugins answer
for theirs. Nothing heavy is imported until a hook runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from invarlock import hookimpl
from invarlock_hf.models import is_transformers_model


@hookimpl
def invarlock_snapshot(model: Any, include: Sequence[str] | None, same_device: bool) -> Any | None:
    if not is_transformers_model(model):
        return None
    from invarlock_torch import take_snapshot

    return take_snapshot(model, include=include, same_device=same_device)


@hookimpl
def invarlock_restore(model: Any, snapshot: Any) -> bool | None:
    if not is_transformers_model(model):
        return None
    from invarlock_torch import restore_snapshot

    restore_snapshot(model, snapshot)
    return True


@hookimpl
def invarlock_snapshot_chunked(
    model: Any, directory: Path | None, include: Sequence[str] | None, shard_bytes: int | None
) -> Path | None:
    if not is_transformers_model(model):
        return None
    from invarlock_torch import write_chunked_snapshot

    return write_chunked_snapshot(model, directory, include=include, shard_bytes=shard_bytes)


@hookimpl
def invarlock_restore_chunked(model: Any, path: Path) -> bool | None:
    if not is_transformers_model(model):
        return None
    from invarlock_torch import restore_chunked_snapshot

    restore_chunked_snapshot(model, path)
    return True
