"""Snapshots of PEFT models: adapter-only by default, with a CRC-32 proof that the base is unchanged.

An adapter edit leaves the base untouched, so by default a snapshot holds only the adapter's
tensors (:func:`invarlock_peft.adapters.adapter_prefixes`) through the snapshot engine (invarlock-torch):
bit-exact, in memory and chunked, and the size of the adapter rather than of the model. It also
records a digest of every base tensor (CRC-32 over names, dtypes, shapes and bytes, and
bitsandbytes' quantization state for a quantized base). A restore computes the digest again and
refuses with :class:`~invarlock.errors.PeftBaseChangedError`, before writing anything, when the base
differs: an adapter-only snapshot cannot put a base back. A chunked snapshot keeps the digest in
its manifest (the engine's ``settings`` of the first adapter module).

Loaded with ``snapshot="full"`` (and always for a merged model, which is a plain transformers model),
snapshots hold every tensor; ``include`` selects tensors explicitly, as for any adapter, and such a
snapshot carries no digest.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invarlock.errors import PeftBaseChangedError, SnapshotMismatchError
from invarlock_peft.adapters import adapter_prefixes, base_tensors
from invarlock_peft.loading import load_info
from invarlock_torch import (
    ModelSnapshot,
    crc32,
    read_manifest,
    restore_chunked_snapshot,
    restore_snapshot,
    take_snapshot,
    write_chunked_snapshot,
)

DIGEST_KEY = "base_digest"
"""The setting an adapter-only chunked snapshot records its base digest under."""


@dataclass(frozen=True, eq=False)
class AdapterSnapshot:
    """An adapter-only in-memory snapshot: the engine's snapshot of the adapter, and the base digest."""

    adapter: ModelSnapshot
    base_digest: str

    @property
    def nbytes(self) -> int:
        """Bytes held by the copies (the adapter's tensors only)."""
        return self.adapter.nbytes

    @property
    def names(self) -> list[str]:
        return self.adapter.names

    def __repr__(self) -> str:
        return f"<AdapterSnapshot: {len(self.adapter.layout.slots)} adapter tensors, {self.nbytes} bytes>"


def snapshot_mode(model: Any) -> str:
    info = load_info(model)
    return info.snapshot if info is not None else "adapter"


DIGEST_CHUNK_BYTES = 16 * 2**20
"""Base bytes are checksummed in pieces of this size, on several threads (CRC-32 releases the GIL)."""


def base_digest(model: Any, prefixes: list[str] | None = None) -> str:
    """CRC-32 of every base tensor's name, dtype, shape and bytes, with the byte count digested.

    Each tensor's bytes are checksummed in fixed pieces of :data:`DIGEST_CHUNK_BYTES` on a thread
    pool; the digest is the CRC-32 of every tensor's header followed by its pieces' CRC-32s, so it
    depends on the bytes and the layout only, not on how the work was scheduled.
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    import torch

    tensors = list(base_tensors(model, prefixes))
    tensors += sorted(_quantization_state(model).items())
    pieces: list[tuple[int, memoryview]] = []  # (index of the tensor, bytes)
    headers: list[bytes] = []
    keep: list[Any] = []  # CPU copies of tensors on other devices, alive until checksummed
    total = 0
    with torch.no_grad():
        for index, (name, tensor) in enumerate(tensors):
            header = f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode()
            headers.append(struct.pack("<I", len(header)) + header)
            if tensor.numel() == 0:
                continue
            data = tensor.detach()
            if data.device.type != "cpu":
                data = data.to("cpu")
            data = data.contiguous().reshape(-1).view(torch.uint8)
            keep.append(data)
            view = memoryview(data.numpy())
            total += len(view)
            pieces += [
                (index, view[i : i + DIGEST_CHUNK_BYTES]) for i in range(0, len(view), DIGEST_CHUNK_BYTES)
            ]
        with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
            crcs = list(pool.map(lambda piece: crc32(piece[1]), pieces))
    per_tensor: list[list[int]] = [[] for _ in tensors]
    for (index, _), value in zip(pieces, crcs, strict=True):
        per_tensor[index].append(value)
    crc = 0
    for header, values in zip(headers, per_tensor, strict=True):
        crc = crc32(header + struct.pack(f"<{len(values)}I", *values), crc)
    return f"crc32:{crc:08x}:{total}"


def _quantization_state(model: Any) -> dict[str, Any]:
    """bitsandbytes' state outside parameters and buffers (absmax, SCB...), when the base is quantized."""
    try:
        from invarlock_bnb.layers import is_bnb_model, quantization_state
    except ImportError:
        return {}
    base = model.get_base_model()
    return dict(quantization_state(base)) if is_bnb_model(base) else {}


def _settings(prefixes: list[str], digest: str) -> dict[str, Any]:
    return {prefixes[0]: {DIGEST_KEY: digest}}


def _adapter_prefixes_or_refuse(model: Any) -> list[str]:
    prefixes = adapter_prefixes(model)
    if not prefixes:
        raise SnapshotMismatchError(
            'this PeftModel holds no adapter tensors to snapshot; load it with snapshot="full"'
        )
    return prefixes


def _check_base(model: Any, recorded: str, where: str, prefixes: list[str] | None = None) -> None:
    now = base_digest(model, prefixes)
    if now != recorded:
        raise PeftBaseChangedError(
            f"the base weights differ from those {where} was taken over ({now} now, {recorded} then): "
            "the base was edited since, or this is another base, and an adapter-only snapshot cannot "
            'restore a base; reload the model, or load it with snapshot="full" (model.snapshot: full in a '
            "run configuration) to snapshot the base too"
        )


def _check_same_adapter(model: Any, names: set[str], where: str) -> list[str]:
    """Refuse, as any foreign snapshot is refused, a snapshot of another adapter; returns the
    model's adapter prefixes."""
    from invarlock_peft.adapters import adapter_tensors

    prefixes = adapter_prefixes(model)
    current = {name for name, _ in adapter_tensors(model, prefixes)}
    if names != current:
        missing = sorted(current - names)[:2] or sorted(names - current)[:2]
        raise SnapshotMismatchError(
            f"{where} holds the tensors of another adapter (e.g. {', '.join(missing)} differ); restore it "
            "into the model it was taken from, or take a new snapshot"
        )
    return prefixes


# -- in memory -----------------------------------------------------------------------------------


def snapshot(model: Any, include: Sequence[str] | None, same_device: bool) -> Any:
    if include is not None or snapshot_mode(model) == "full":
        return take_snapshot(model, include=include, same_device=same_device)
    prefixes = _adapter_prefixes_or_refuse(model)
    digest = base_digest(model, prefixes)
    return AdapterSnapshot(take_snapshot(model, include=prefixes, same_device=same_device), digest)


def restore(model: Any, saved: Any) -> None:
    if not isinstance(saved, AdapterSnapshot):
        restore_snapshot(model, saved)
        return
    prefixes = _check_same_adapter(model, set(saved.names), "the snapshot")
    _check_base(model, saved.base_digest, "the snapshot", prefixes)
    restore_snapshot(model, saved.adapter)


# -- chunked -------------------------------------------------------------------------------------


def snapshot_chunked(
    model: Any, directory: Path | None, include: Sequence[str] | None, shard_bytes: int | None
) -> Path:
    if include is not None or snapshot_mode(model) == "full":
        return write_chunked_snapshot(model, directory, include=include, shard_bytes=shard_bytes)
    prefixes = _adapter_prefixes_or_refuse(model)
    settings = _settings(prefixes, base_digest(model, prefixes))
    return write_chunked_snapshot(
        model, directory, include=prefixes, shard_bytes=shard_bytes, settings=settings
    )


def restore_chunked(model: Any, path: Path) -> None:
    manifest = read_manifest(path)
    recorded = [
        value[DIGEST_KEY]
        for value in manifest.layout.settings.values()
        if isinstance(value, dict) and DIGEST_KEY in value
    ]
    if not recorded:
        restore_chunked_snapshot(model, path)
        return
    names = {name for slot in manifest.layout.slots for name in slot.names}
    prefixes = _check_same_adapter(model, names, f"the snapshot at {path}")
    _check_base(model, recorded[0], f"the snapshot at {path}", prefixes)
    settings = {key: value for key, value in manifest.layout.settings.items()}
    restore_chunked_snapshot(model, path, settings=settings)
