"""Snapshot and restore of a tinylinear model: in memory, and chunked on disk with checksums.

Every restore checks names, shapes and dtypes (and, on disk, checksums) before the first byte is
written, so a refused restore leaves the model untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from invarlock.errors import SnapshotCorruptError, SnapshotMismatchError
from invarlock_tinylinear.model import TinyLinearLM

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "invarlock-tinylinear-snapshot/1"
DEFAULT_SHARD_BYTES = 64 * 1024 * 1024

Layout = dict[str, tuple[tuple[int, ...], str]]
"""Tensor name -> (shape, dtype): what must agree before a restore writes anything."""


@dataclass(frozen=True)
class TinyLinearSnapshot:
    tensors: dict[str, torch.Tensor]
    complete: bool
    """True when every tensor was captured (no ``include`` filter)."""


def _tensors(model: TinyLinearLM, include: Sequence[str] | None) -> Iterator[tuple[str, torch.Tensor]]:
    """Parameters then buffers, each shared tensor once (the tied LM head is the embedding)."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if include is None or any(name.startswith(prefix) for prefix in include):
            yield name, tensor


def take_snapshot(
    model: TinyLinearLM, include: Sequence[str] | None, same_device: bool
) -> TinyLinearSnapshot:
    copies = {
        name: tensor.detach().clone() if same_device else tensor.detach().to("cpu", copy=True)
        for name, tensor in _tensors(model, include)
    }
    return TinyLinearSnapshot(copies, complete=include is None)


def _layout(tensors: dict[str, torch.Tensor]) -> Layout:
    return {name: (tuple(t.shape), str(t.dtype)) for name, t in tensors.items()}


def _check_matches(
    model: TinyLinearLM, layout: dict[str, tuple[tuple[int, ...], str]], complete: bool
) -> None:
    """Raise :class:`SnapshotMismatchError` unless ``layout`` fits the model exactly."""
    target = _layout(dict(_tensors(model, None)))
    unknown = sorted(set(layout) - set(target))
    absent = sorted(set(target) - set(layout)) if complete else []
    different = sorted(n for n in set(layout) & set(target) if layout[n] != target[n])
    if unknown or absent or different:
        detail = (different or unknown or absent)[0]
        raise SnapshotMismatchError(
            f"the snapshot is not of this model ({len(different)} tensors differ in shape or dtype, "
            f"{len(unknown)} unknown, {len(absent)} missing; first: {detail}); take a snapshot of this "
            "model and restore that"
        )


def _write(model: TinyLinearLM, tensors: dict[str, torch.Tensor]) -> None:
    live = dict(_tensors(model, None))
    with torch.no_grad():
        for name, saved in tensors.items():
            live[name].copy_(saved)


def restore_snapshot(model: TinyLinearLM, snapshot: object) -> None:
    if not isinstance(snapshot, TinyLinearSnapshot):
        raise SnapshotMismatchError(
            f"a {type(snapshot).__name__} is not a tinylinear snapshot; restore a snapshot taken "
            "with the tinylinear adapter"
        )
    _check_matches(model, _layout(snapshot.tensors), snapshot.complete)
    _write(model, snapshot.tensors)


# -- chunked ----------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_chunked(
    model: TinyLinearLM, directory: Path | None, include: Sequence[str] | None, shard_bytes: int | None
) -> Path:
    parent = Path(directory) if directory is not None else Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    limit = shard_bytes or DEFAULT_SHARD_BYTES
    staging = Path(tempfile.mkdtemp(prefix=".tinylinear-snapshot-", dir=parent))
    try:
        shards: list[dict[str, torch.Tensor]] = [{}]
        size = 0
        for name, tensor in _tensors(model, include):
            nbytes = tensor.numel() * tensor.element_size()
            if shards[-1] and size + nbytes > limit:
                shards.append({})
                size = 0
            shards[-1][name] = tensor.detach().to("cpu", copy=True).contiguous()
            size += nbytes
        manifest: dict[str, object] = {"format": MANIFEST_FORMAT, "complete": include is None}
        files: dict[str, str] = {}
        layout: dict[str, object] = {}
        for index, shard in enumerate(shards):
            file_name = f"shard-{index:05d}.safetensors"
            save_file(shard, str(staging / file_name))
            files[file_name] = _sha256(staging / file_name)
            layout.update(
                {
                    n: {"shard": file_name, "shape": list(t.shape), "dtype": str(t.dtype)}
                    for n, t in shard.items()
                }
            )
        manifest["shards"] = files
        manifest["tensors"] = layout
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
        final = parent / f"tinylinear-snapshot-{uuid.uuid4().hex[:12]}"
        os.rename(staging, final)  # the snapshot appears under its name only when complete
        return final
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _corrupt(path: Path, problem: str) -> SnapshotCorruptError:
    return SnapshotCorruptError(
        f"the snapshot at {path} is unusable ({problem}); take a new snapshot, the model was not changed"
    )


def restore_chunked(model: TinyLinearLM, path: Path) -> None:
    try:
        manifest = json.loads((path / MANIFEST_NAME).read_text())
        files: dict[str, str] = manifest["shards"]
        layout: dict[str, dict[str, object]] = manifest["tensors"]
        complete = bool(manifest["complete"])
        if manifest.get("format") != MANIFEST_FORMAT:
            raise _corrupt(path, f"unknown format {manifest.get('format')!r}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _corrupt(path, f"{MANIFEST_NAME} is missing or unreadable: {exc}") from exc
    for file_name, digest in files.items():
        shard = path / file_name
        if not shard.is_file():
            raise _corrupt(path, f"{file_name} is missing")
        if _sha256(shard) != digest:
            raise _corrupt(path, f"{file_name} fails its checksum")
    _check_matches(
        model,
        {n: (tuple(entry["shape"]), str(entry["dtype"])) for n, entry in layout.items()},  # type: ignore[arg-type]
        complete,
    )
    tensors: dict[str, torch.Tensor] = {}
    for file_name in files:
        tensors.update(load_file(str(path / file_name)))
    if set(tensors) != set(layout):
        raise _corrupt(path, "the shards do not hold the tensors the manifest lists")
    _write(model, tensors)
