"""Snapshot and restore of bitsandbytes models through invarlock-hf's snapshot engine.

The engine captures parameters and buffers; a bitsandbytes layer also computes with state outside
both (int8 scales, 4-bit QuantState tensors), which is passed as the engine's ``extra_tensors``
together with the layout markers of :mod:`invarlock_bnb.layers`. Snapshots are the engine's own
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
    layout_markers,
    pin_4bit_layout,
    quantization_state,
)
from invarlock_hf.snapshot import (
    restore_chunked_snapshot,
    restore_snapshot,
    take_snapshot,
    write_chunked_snapshot,
)


def extra_tensors(model: Any) -> dict[str, Any]:
    """The live quantization state and layout markers the engine captures besides parameters and buffers."""
    # A 4-bit layer repacked for AVX512-BF16 between snapshot and restore could not be restored.
    pin_4bit_layout(model)
    return {**quantization_state(model), **layout_markers(model)}


def whole_layers(model: Any, include: Sequence[str] | str | None) -> list[str] | None:
    """``include`` plus every quantized layer it names a tensor of.

    A quantized weight means nothing without its scales, so naming ``<layer>.weight`` captures the
    layer's quantization state and layout marker too.
    """
    if include is None:
        return None
    prefixes = [include] if isinstance(include, str) else list(include)
    layers = [name for name in bnb_layers(model) if any(p.startswith(f"{name}.") for p in prefixes)]
    return prefixes + layers


def snapshot(model: Any, include: Sequence[str] | None, same_device: bool) -> Any:
    return take_snapshot(
        model,
        include=whole_layers(model, include),
        same_device=same_device,
        extra_tensors=extra_tensors(model),
    )


def restore(model: Any, saved: Any) -> None:
    restore_snapshot(model, saved, extra_tensors=extra_tensors(model))
    clear_int8_caches(model)


def snapshot_chunked(
    model: Any, directory: Path | None, include: Sequence[str] | None, shard_bytes: int | None
) -> Path:
    return write_chunked_snapshot(
        model,
        directory,
        include=whole_layers(model, include),
        shard_bytes=shard_bytes,
        extra_tensors=extra_tensors(model),
    )


def restore_chunked(model: Any, path: Path) -> None:
    restore_chunked_snapshot(model, path, extra_tensors=extra_tensors(model))
    clear_int8_caches(model)
