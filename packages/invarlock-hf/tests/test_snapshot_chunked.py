"""Chunked snapshots on disk: round trips, the files written, atomic writes, and every refusal."""

from __future__ import annotations

import json
import shutil
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
import transformers
from safetensors import safe_open

from invarlock.errors import SnapshotCorruptError, SnapshotMismatchError, SnapshotWriteError
from invarlock.testing import assert_restored, differing_tensors, full_state, mutate_weights
from invarlock_hf.testing import AUTO_CLASS
from invarlock_torch import (
    read_manifest,
    remove_chunked_snapshot,
    restore_chunked_snapshot,
    write_chunked_snapshot,
)

SMALL_SHARDS = 8 * 1024  # bytes: forces several shards on the tiny models


def load(path: Path, family: str = "gpt2") -> Any:
    return getattr(transformers, AUTO_CLASS[family]).from_pretrained(path).eval()


@pytest.fixture
def gpt2(checkpoint: Callable[..., Path]) -> Any:
    return load(checkpoint("gpt2"))


@pytest.fixture
def snapshot_dir(gpt2: Any, tmp_path: Path) -> Path:
    return write_chunked_snapshot(gpt2, tmp_path / "snapshots", shard_bytes=SMALL_SHARDS)


def shard_files(path: Path) -> list[Path]:
    return sorted(path.glob("shard-*.safetensors"))


def edit_then_refuse(model: Any, path: Path, error: type[Exception], match: str) -> str:
    """Edit the model, check the chunked restore is refused, and that the refusal changed nothing."""
    mutate_weights(model)
    edited = full_state(model)
    with pytest.raises(error, match=match) as caught:
        restore_chunked_snapshot(model, path)
    assert not differing_tensors(edited, full_state(model)), "a refused restore changed the model"
    return str(caught.value)


# -- round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["gpt2", "llama", "bert", "roberta", "t5"])
def test_round_trip_is_bit_exact(checkpoint: Callable[..., Path], family: str, tmp_path: Path) -> None:
    model = load(checkpoint(family), family)
    before = full_state(model)
    path = write_chunked_snapshot(model, tmp_path, shard_bytes=SMALL_SHARDS)
    assert len(shard_files(path)) > 1
    mutate_weights(model)
    assert differing_tensors(before, full_state(model))
    restore_chunked_snapshot(model, path)
    assert_restored(before, model)


def test_round_trip_keeps_special_bits_in_every_dtype(gpt2: Any, tmp_path: Path) -> None:
    # One model holding float32 NaN payloads and -0.0, bfloat16, float16, and dtypes safetensors
    # lacks (stored as raw bytes), as extra tensors.
    with torch.no_grad():
        gpt2.transformer.h[0].ln_1.weight.view(torch.int32)[:4] = torch.tensor(
            [0x7FC00001, 0x7F800001, -0x3EDCBA, -0x80000000], dtype=torch.int32
        )
    extra = {
        "bf16": torch.randn(5).to(torch.bfloat16),
        "f16": torch.tensor([float("nan"), -0.0, 65504.0], dtype=torch.float16),
        "c64": torch.randn(3, dtype=torch.complex64),
        "u16": torch.arange(7, dtype=torch.int32).to(torch.uint16),
        "flag": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5, dtype=torch.float64),
        "empty": torch.zeros(0, 4),
    }
    before, extra_before = full_state(gpt2), {k: v.clone() for k, v in extra.items()}
    path = write_chunked_snapshot(gpt2, tmp_path, shard_bytes=SMALL_SHARDS, extra_tensors=extra)
    mutate_weights(gpt2)
    with torch.no_grad():
        for tensor in extra.values():
            tensor.reshape(-1).view(torch.uint8).bitwise_not_()
    restore_chunked_snapshot(gpt2, path, extra_tensors=extra)
    assert_restored(before, gpt2)
    assert not differing_tensors(extra_before, extra)


def test_include_restores_only_the_named_modules(gpt2: Any, tmp_path: Path) -> None:
    before = full_state(gpt2)
    path = write_chunked_snapshot(gpt2, tmp_path, include=["transformer.h.1"])
    names = {name for slot in read_manifest(path).layout.slots for name in slot.names}
    assert names and all(name.startswith("transformer.h.1.") for name in names)
    mutate_weights(gpt2)
    edited = full_state(gpt2)
    restore_chunked_snapshot(gpt2, path)
    after = full_state(gpt2)
    for name in after:
        expected = before if name in names else edited
        assert not differing_tensors({name: expected[name]}, {name: after[name]}), name


def test_restore_reties_what_an_edit_untied(gpt2: Any, snapshot_dir: Path) -> None:
    before = full_state(gpt2)
    gpt2.lm_head.weight = torch.nn.Parameter(gpt2.lm_head.weight.detach() * 2.0)
    restore_chunked_snapshot(gpt2, snapshot_dir)
    assert gpt2.lm_head.weight is gpt2.transformer.wte.weight
    assert_restored(before, gpt2)


# -- what is on disk -------------------------------------------------------------------------------


def test_files_are_bounded_safetensors_shards_with_a_manifest(gpt2: Any, snapshot_dir: Path) -> None:
    assert snapshot_dir.parent.name == "snapshots"
    assert snapshot_dir.name.startswith("invarlock-snapshot-")
    assert sorted(p.name for p in snapshot_dir.iterdir()) == [
        "manifest.json",
        *(p.name for p in shard_files(snapshot_dir)),
    ]
    manifest = json.loads((snapshot_dir / "manifest.json").read_text())
    assert manifest["model"]["class"] == "GPT2LMHeadModel" and manifest["model"]["model_type"] == "gpt2"
    entries = {entry["names"][0]: entry for entry in manifest["tensors"]}
    assert entries["transformer.wte.weight"]["names"] == ["transformer.wte.weight", "lm_head.weight"]

    state = full_state(gpt2)
    stored = {}
    for shard in shard_files(snapshot_dir):
        with safe_open(str(shard), framework="pt") as file:  # standard safetensors any tool can read
            tensors = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118
        data_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
        assert data_bytes <= SMALL_SHARDS or len(tensors) == 1, f"{shard.name} exceeds the bound"
        stored.update(tensors)
    assert set(stored) == set(entries)
    for name, tensor in stored.items():
        assert list(tensor.shape) == entries[name]["shape"]
        assert str(tensor.dtype) == f"torch.{entries[name]['dtype']}"
        assert not differing_tensors({name: state[name]}, {name: tensor})


def test_settings_travel_in_the_manifest_and_are_checked(gpt2: Any, tmp_path: Path) -> None:
    settings = {"transformer.h.0.mlp.c_fc": {"quant_type": "nf4", "shape": [12, 8]}}
    path = write_chunked_snapshot(gpt2, tmp_path, settings=settings)
    assert read_manifest(path).layout.settings == settings
    before = full_state(gpt2)
    mutate_weights(gpt2)
    restore_chunked_snapshot(gpt2, path, settings=settings)
    assert_restored(before, gpt2)

    mutate_weights(gpt2)
    edited = full_state(gpt2)
    requantized = {"transformer.h.0.mlp.c_fc": {"quant_type": "fp4", "shape": [12, 8]}}
    with pytest.raises(
        SnapshotMismatchError, match="quant_type is 'fp4' in the model, 'nf4' in the snapshot"
    ):
        restore_chunked_snapshot(gpt2, path, settings=requantized)
    assert not differing_tensors(edited, full_state(gpt2)), "a refused restore changed the model"


def test_checksums_are_standard_crc32_of_each_tensor(snapshot_dir: Path) -> None:
    manifest = read_manifest(snapshot_dir)
    by_name = {
        slot.names[0]: crc for slot, crc in zip(manifest.layout.slots, manifest.checksums, strict=True)
    }
    for shard in shard_files(snapshot_dir):
        with safe_open(str(shard), framework="pt") as file:
            for key in file.keys():  # noqa: SIM118
                data = file.get_tensor(key).contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
                assert zlib.crc32(data) == by_name[key], key


def test_default_directory_is_the_system_temp_dir(
    gpt2: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    path = write_chunked_snapshot(gpt2)
    assert path.parent == tmp_path
    remove_chunked_snapshot(path)


@pytest.mark.parametrize(
    ("failure", "raised"),
    [(OSError(28, "No space left on device"), SnapshotWriteError), (KeyboardInterrupt(), KeyboardInterrupt)],
)
def test_a_failed_write_leaves_nothing_behind(
    gpt2: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException, raised: type
) -> None:
    real_save_file = safetensors.torch.save_file
    written = []

    def save_then_fail(tensors: dict[str, torch.Tensor], filename: str, **kwargs: Any) -> None:
        real_save_file(tensors, filename, **kwargs)  # a real shard lands on disk first
        written.append(filename)
        if len(written) == 3:
            raise failure

    monkeypatch.setattr(safetensors.torch, "save_file", save_then_fail)
    with pytest.raises(raised):
        write_chunked_snapshot(gpt2, tmp_path, shard_bytes=SMALL_SHARDS)
    assert len(written) == 3
    assert list(tmp_path.iterdir()) == []


def test_the_snapshot_appears_only_when_complete(
    gpt2: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str]] = []
    real_save_file = safetensors.torch.save_file

    def save_and_look(tensors: dict[str, torch.Tensor], filename: str, **kwargs: Any) -> None:
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        real_save_file(tensors, filename, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", save_and_look)
    path = write_chunked_snapshot(gpt2, tmp_path, shard_bytes=SMALL_SHARDS)
    assert all(
        len(names) == 1 and names[0].startswith(".") and names[0].endswith(".partial") for names in seen
    )
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


# -- refusals --------------------------------------------------------------------------------------


def data_start(shard: Path) -> int:
    return 8 + int.from_bytes(shard.read_bytes()[:8], "little")


def test_corrupted_shard_is_refused_before_writing(gpt2: Any, snapshot_dir: Path) -> None:
    shard = shard_files(snapshot_dir)[0]
    raw = bytearray(shard.read_bytes())
    raw[data_start(shard) + 5] ^= 0x01  # one flipped bit in the data
    shard.write_bytes(bytes(raw))
    message = edit_then_refuse(gpt2, snapshot_dir, SnapshotCorruptError, "fails its checksum")
    assert shard.name in message and "untouched" in message


def test_truncated_last_shard_is_refused_before_writing(gpt2: Any, snapshot_dir: Path) -> None:
    shard = shard_files(snapshot_dir)[-1]
    shard.write_bytes(shard.read_bytes()[:-3])
    message = edit_then_refuse(gpt2, snapshot_dir, SnapshotCorruptError, "truncated")
    assert shard.name in message


def test_missing_shard_is_refused_before_writing(gpt2: Any, snapshot_dir: Path) -> None:
    shard = shard_files(snapshot_dir)[-1]
    shard.unlink()
    message = edit_then_refuse(gpt2, snapshot_dir, SnapshotCorruptError, "is missing")
    assert shard.name in message


def test_damaged_shard_header_is_refused_before_writing(gpt2: Any, snapshot_dir: Path) -> None:
    shard = shard_files(snapshot_dir)[-1]
    raw = shard.read_bytes()
    header = raw[8 : data_start(shard)].replace(b'"F32"', b'"F16"', 1)
    shard.write_bytes(raw[:8] + header + raw[data_start(shard) :])
    edit_then_refuse(gpt2, snapshot_dir, SnapshotCorruptError, "does not hold")


@pytest.mark.parametrize("damage", ["delete", "garble", "foreign format"])
def test_missing_or_damaged_manifest_is_refused(gpt2: Any, snapshot_dir: Path, damage: str) -> None:
    manifest = snapshot_dir / "manifest.json"
    if damage == "delete":
        manifest.unlink()
    elif damage == "garble":
        manifest.write_text(manifest.read_text()[:-40])
    else:
        manifest.write_text(json.dumps({"format": "something-else"}))
    edit_then_refuse(gpt2, snapshot_dir, SnapshotCorruptError, "manifest|not a complete chunked snapshot")


def test_snapshot_of_another_model_is_refused(
    checkpoint: Callable[..., Path], gpt2: Any, tmp_path: Path
) -> None:
    other = write_chunked_snapshot(load(checkpoint("gpt2", n_embd=48)), tmp_path, shard_bytes=SMALL_SHARDS)
    edit_then_refuse(gpt2, other, SnapshotMismatchError, "does not match this model")


def test_manifest_of_another_model_dropped_into_a_snapshot_is_refused(
    checkpoint: Callable[..., Path], gpt2: Any, snapshot_dir: Path, tmp_path: Path
) -> None:
    other = write_chunked_snapshot(load(checkpoint("llama"), "llama"), tmp_path / "other")
    shutil.copy(other / "manifest.json", snapshot_dir / "manifest.json")
    edit_then_refuse(gpt2, snapshot_dir, SnapshotMismatchError, "LlamaForCausalLM")


def test_corruption_in_a_later_shard_leaves_the_model_untouched(gpt2: Any, snapshot_dir: Path) -> None:
    # Size and header intact, bytes altered in the last shard: a multi-shard restore verifies every
    # shard before writing any, so the earlier shards never reach the model.
    shard = shard_files(snapshot_dir)[-1]
    raw = bytearray(shard.read_bytes())
    raw[-1] ^= 0xFF
    shard.write_bytes(bytes(raw))
    edit_then_refuse(gpt2, snapshot_dir, SnapshotCorruptError, shard.name)


def test_not_a_directory_is_refused(gpt2: Any, tmp_path: Path) -> None:
    edit_then_refuse(gpt2, tmp_path / "nowhere", SnapshotCorruptError, "not a chunked snapshot directory")


# -- removing --------------------------------------------------------------------------------------


def test_remove_deletes_a_snapshot_and_ignores_a_missing_one(snapshot_dir: Path) -> None:
    remove_chunked_snapshot(snapshot_dir)
    assert not snapshot_dir.exists()
    remove_chunked_snapshot(snapshot_dir)


def test_remove_refuses_a_directory_that_is_not_a_snapshot(
    checkpoint: Callable[..., Path], tmp_path: Path
) -> None:
    model_dir = shutil.copytree(checkpoint("gpt2"), tmp_path / "model")
    before = sorted(p.name for p in model_dir.iterdir())
    with pytest.raises(SnapshotCorruptError, match="nothing was deleted"):
        remove_chunked_snapshot(model_dir)
    assert sorted(p.name for p in model_dir.iterdir()) == before


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_round_trip(checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    model = load(checkpoint("gpt2")).to("cuda")
    before = full_state(model)
    path = write_chunked_snapshot(model, tmp_path, shard_bytes=SMALL_SHARDS)
    mutate_weights(model)
    restore_chunked_snapshot(model, path)
    assert_restored(before, model)
