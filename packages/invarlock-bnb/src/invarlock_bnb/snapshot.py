"""Snapshot and restore of bitsandbytes models through invarlock-torch's snapshot engine.

The engine captures parameters and buffers; a bitsandbytes layer also computes with state outside
both (int8 scales, 4-bit QuantState tensors), which is passed as the engine's ``extra_tensors``,
and with settings that are not tensors (quant type, block size...), passed as its ``settings``: a
restore refuses a layer re-quantized differently since the snapshot. Snapshots are the engine's own
objects and directories, so every check it makes (names, shapes, dtypes, checksums, untouched
model on mismatch) covers the quantization state too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from invarlock_bnb.layers import (
    bnb_layers,
    clear_int8_caches,
    layer_layouts,
    pin_4bit_layout,
    quantization_state,
)
from invarlock_torch import (
    restore_chunked_snapshot,
    restore_snapshot,
    take_snapshot,
    write_chunked_snapshot,
)


def engine_state(model: Any) -> dict[str, Any]:
    """The engine's ``extra_tensors`` (live quantization state) and ``settings`` (each layer's
    non-tensor settings) for a bitsandbytes model."""
    # A 4-bit layer repacked for AVX512-BF16 between snapshot and restore could not be restored.
    pin_4bit_layout(model)
    return {"extra_tensors": quantization_state(model), "settings": layer_layouts(model)}


def whole_layers(model: Any, include: Sequence[str] | str | None) -> list[str] | None:
    """``include`` plus every quantized layer it names a tensor of.

    A quantized weight means nothing without its scales, so naming ``<layer>.weight`` captures the
    layer's quantization state and settings too.
    """
    if include is None:
        return None
    prefixes = [include] if isinstance(include, str) else list(include)
    layers = [name for name in bnb_layers(model) if any(p.startswith(f"{name}.") for p in prefixes)]
    return prefixes + layers


def snapshot(model: Any, include: Sequence[str] | None, same_device: bool) -> Any:
    return take_snapshot(
        model, include=whole_layers(model, include), same_device=same_device, **engine_state(model)
    )


def restore(model: Any, saved: Any) -> None:
    restore_snapshot(model, saved, **engine_state(model))
    clear_int8_caches(model)


def snapshot_chunked(
    model: Any, directory: Path | None, include: Sequence[str] | None, shard_bytes: int | None
) -> Path:
    include = whole_layers(model, include)
    return write_chunked_snapshot(
        model, directory, include=include, shard_bytes=shard_bytes, **engine_state(model)
    )


def restore_chunked(model: Any, path: Path) -> None:
    restore_chunked_snapshot(model, path, **engine_state(model))
    clear_int8_caches(model)
