"""Chunked snapshots of plain PyTorch modules: round trips, the files written, and refusals."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from invarlock.errors import SnapshotCorruptError, SnapshotMismatchError
from invarlock.testing import differing_tensors, mutate_weights
from invarlock_torch import (
    read_manifest,
    remove_chunked_snapshot,
    restore_chunked_snapshot,
    write_chunked_snapshot,
)

SMALL_SHARDS = 2048  # bytes: several shards on Any


def shard_files(path: Path) -> list[Path]:
    return sorted(path.glob("shard-*.safetensors"))


@pytest.fixture
def edit_then_refuse(full_state: Any) -> Any:
    """``edit_then_refuse(model, path, error, match)``: edit the model, check the chunked restore is
    refused with ``error``, that the refusal changed nothing, and return its message."""

    def check(model: Any, path: Path, error: type[Exception], match: str) -> str:
        mutate_weights(model)
        edited = full_state(model)
        with pytest.raises(error, match=match) as caught:
            restore_chunked_snapshot(model, path)
        assert not differing_tensors(edited, full_state(model)), "a refused restore changed the model"
        return str(caught.value)

    return check


@pytest.fixture
def snapshot_dir(model: Any, tmp_path: Path) -> Path:
    return write_chunked_snapshot(model, tmp_path / "snapshots", shard_bytes=SMALL_SHARDS)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_round_trip_is_bit_exact(
    make_model: Any, tmp_path: Path, dtype: torch.dtype, full_state: Any, assert_restored: Any
) -> None:
    model = make_model().to(dtype)
    before = full_state(model)
    path = write_chunked_snapshot(model, tmp_path, shard_bytes=SMALL_SHARDS)
    assert len(shard_files(path)) > 1
    mutate_weights(model)
    restore_chunked_snapshot(model, path)
    assert_restored(before, model)
    assert model.head.weight is model.embed.weight


def test_shards_are_safetensors_with_standard_crc32_per_tensor(snapshot_dir: Path) -> None:
    manifest = read_manifest(snapshot_dir)
    by_name = {
        slot.names[0]: crc for slot, crc in zip(manifest.layout.slots, manifest.checksums, strict=True)
    }
    seen = 0
    for shard in shard_files(snapshot_dir):
        with safe_open(str(shard), "pt") as file:
            for key in file.keys():  # noqa: SIM118
                data = file.get_tensor(key).contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
                assert zlib.crc32(data) == by_name[key], key
                seen += 1
    assert seen == len(manifest.layout.slots)


def test_corrupted_later_shard_is_refused_before_writing(
    model: Any, snapshot_dir: Path, edit_then_refuse: Any
) -> None:
    shard = shard_files(snapshot_dir)[-1]
    raw = bytearray(shard.read_bytes())
    raw[-1] ^= 0xFF
    shard.write_bytes(bytes(raw))
    message = edit_then_refuse(model, snapshot_dir, SnapshotCorruptError, "fails its checksum")
    assert shard.name in message


def test_snapshot_of_another_model_is_refused(make_model: Any, tmp_path: Path, edit_then_refuse: Any) -> None:
    other = write_chunked_snapshot(make_model(seed=1, layers=3), tmp_path)
    edit_then_refuse(make_model(), other, SnapshotMismatchError, "does not match this model")


def test_remove_deletes_a_snapshot_only(snapshot_dir: Path, tmp_path: Path) -> None:
    stranger = tmp_path / "not-a-snapshot"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("keep me")
    with pytest.raises(SnapshotCorruptError, match="nothing was deleted"):
        remove_chunked_snapshot(stranger)
    assert (stranger / "notes.txt").exists()
    remove_chunked_snapshot(snapshot_dir)
    assert not snapshot_dir.exists()
