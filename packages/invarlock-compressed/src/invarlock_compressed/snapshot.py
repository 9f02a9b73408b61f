"""Snapshot and restore of compressed-tensors models through the shared snapshot engine (invarlock-torch).

A compressed module's whole state is parameters (``weight_packed``, ``weight_shape``,
``weight_scale``, ``weight_zero_point``... as the checkpoint stores them), so the engine captures
it as it captures any tensor, bit for bit, in memory and chunked. What is not a tensor (each
module's scheme: format, bits, group size, symmetry, activation quantization; and its status) is
passed as the engine's ``settings``: a restore into a module quantized or decompressed
differently since the snapshot is refused, naming the module, with the model untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from invarlock_compressed.modules import quantized_modules, scheme_settings
from invarlock_torch import (
    restore_chunked_snapshot,
    restore_snapshot,
    take_snapshot,
    write_chunked_snapshot,
)


def module_settings(model: Any) -> dict[str, Any]:
    """Each quantized module's scheme and status, by module name (the engine's ``settings``)."""
    return {name: scheme_settings(module) for name, module in quantized_modules(model).items()}


def whole_modules(model: Any, include: Sequence[str] | None) -> list[str] | None:
    """``include`` plus every quantized module it names a tensor of: a packed weight means nothing
    without its scales and shape."""
    if include is None:
        return None
    prefixes = [include] if isinstance(include, str) else list(include)
    modules = [name for name in quantized_modules(model) if any(p.startswith(f"{name}.") for p in prefixes)]
    return prefixes + modules


def snapshot(model: Any, include: Sequence[str] | None, same_device: bool) -> Any:
    return take_snapshot(
        model, include=whole_modules(model, include), same_device=same_device, settings=module_settings(model)
    )


def restore(model: Any, saved: Any) -> None:
    restore_snapshot(model, saved, settings=module_settings(model))


def snapshot_chunked(
    model: Any, directory: Path | None, include: Sequence[str] | None, shard_bytes: int | None
) -> Path:
    return write_chunked_snapshot(
        model,
        directory,
        include=whole_modules(model, include),
        shard_bytes=shard_bytes,
        settings=module_settings(model),
    )


def restore_chunked(model: Any, path: Path) -> None:
    restore_chunked_snapshot(model, path, settings=module_settings(model))
