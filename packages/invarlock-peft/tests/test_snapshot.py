"""Snapshots of hf_peft models: adapter-only by default (bit-exact, adapter-sized, base proven
unchanged), full on request, and the engine's refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from invarlock.adapters import get_adapter
from invarlock.errors import PeftBaseChangedError, SnapshotCorruptError, SnapshotMismatchError
from invarlock.testing import assert_restored, full_state
from invarlock_peft.adapters import adapter_tensors, base_tensors


def adapter_param_bytes(model: Any) -> int:
    """Bytes of the adapter's parameters, counted from peft's own naming (independent of the plugin)."""
    return sum(
        p.numel() * p.element_size()
        for name, p in model.named_parameters()
        if ".lora_" in name or ".modules_to_save." in name
    )


def edit_adapter(model: Any) -> None:
    with torch.no_grad():
        for _, tensor in adapter_tensors(model):
            tensor.add_(0.25)


def edit_base(model: Any) -> None:
    with torch.no_grad():
        _, tensor = next((n, t) for n, t in base_tensors(model) if t.is_floating_point() and "layers.1" in n)
        tensor.view(-1)[0] += 1.0


@pytest.fixture(params=["llama_lora", "llama_lora_added_tokens", "qlora"])
def adapter_dir(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(request.param)


def test_the_default_snapshot_holds_the_adapter_only_and_round_trips(
    adapter_dir: Path, inputs: dict[str, torch.Tensor]
) -> None:
    adapter = get_adapter("hf_peft")
    model = adapter.load_model(adapter_dir, device="cpu")
    before, logits = full_state(model), adapter.logits(model, inputs)
    snapshot = adapter.snapshot(model)
    expected = adapter_param_bytes(model)
    assert abs(snapshot.nbytes - expected) <= 0.01 * expected
    edit_adapter(model)
    assert not torch.equal(adapter.logits(model, inputs), logits)
    adapter.restore(model, snapshot)
    assert_restored(before, model)
    assert torch.equal(adapter.logits(model, inputs), logits)


def test_the_chunked_snapshot_is_adapter_sized_and_round_trips(adapter_dir: Path, tmp_path: Path) -> None:
    adapter = get_adapter("hf_peft")
    model = adapter.load_model(adapter_dir, device="cpu")
    before = full_state(model)
    path = adapter.snapshot_chunked(model, tmp_path)
    from invarlock_torch import read_manifest

    manifest = read_manifest(path)
    expected = adapter_param_bytes(model)
    assert abs(manifest.layout.nbytes - expected) <= 0.01 * expected
    shard_payload = sum(shard.bytes for shard in manifest.shards)
    assert shard_payload >= expected  # the shards hold the tensors plus their safetensors headers
    edit_adapter(model)
    adapter.restore_chunked(model, path)
    assert_restored(before, model)


def test_a_changed_base_is_refused_with_its_own_code_and_the_model_untouched(
    llama_lora: Path, tmp_path: Path
) -> None:
    adapter = get_adapter("hf_peft")
    model = adapter.load_model(llama_lora, device="cpu")
    snapshot, path = adapter.snapshot(model), adapter.snapshot_chunked(model, tmp_path)
    edit_adapter(model)
    edit_base(model)
    edited = full_state(model)
    for restore in (lambda: adapter.restore(model, snapshot), lambda: adapter.restore_chunked(model, path)):
        with pytest.raises(PeftBaseChangedError) as raised:
            restore()
        assert raised.value.code == "peft_base_changed"
        assert 'snapshot="full"' in str(raised.value)
        assert_restored(edited, model)  # nothing was written


def test_the_base_digest_covers_the_4bit_quantization_state(qlora: Path) -> None:
    from invarlock_bnb.layers import quantization_state

    adapter = get_adapter("hf_peft")
    model = adapter.load_model(qlora, device="cpu")
    snapshot = adapter.snapshot(model)
    absmax = next(
        t for name, t in quantization_state(model.get_base_model()).items() if name.endswith("absmax")
    )
    with torch.no_grad():
        absmax.mul_(2)
    with pytest.raises(PeftBaseChangedError):
        adapter.restore(model, snapshot)


def test_snapshot_full_captures_base_and_adapter(llama_lora: Path, tmp_path: Path) -> None:
    adapter = get_adapter("hf_peft")
    model = adapter.load_model(llama_lora, device="cpu", snapshot="full")
    before = full_state(model)
    snapshot = adapter.snapshot(model)
    assert snapshot.nbytes == sum(t.numel() * t.element_size() for t in before.values())
    path = adapter.snapshot_chunked(model, tmp_path)
    edit_adapter(model)
    edit_base(model)
    adapter.restore(model, snapshot)
    assert_restored(before, model)
    edit_base(model)
    adapter.restore_chunked(model, path)
    assert_restored(before, model)


def test_another_adapters_snapshot_is_refused(llama_lora: Path, gpt2_lora: Path, tmp_path: Path) -> None:
    adapter = get_adapter("hf_peft")
    model, other = adapter.load_model(llama_lora, device="cpu"), adapter.load_model(gpt2_lora, device="cpu")
    before = full_state(model)
    with pytest.raises(SnapshotMismatchError) as raised:
        adapter.restore(model, adapter.snapshot(other))
    assert not isinstance(raised.value, PeftBaseChangedError)
    with pytest.raises(SnapshotMismatchError):
        adapter.restore_chunked(model, adapter.snapshot_chunked(other, tmp_path))
    assert_restored(before, model)


def test_a_truncated_chunked_snapshot_is_refused(llama_lora: Path, tmp_path: Path) -> None:
    adapter = get_adapter("hf_peft")
    model = adapter.load_model(llama_lora, device="cpu")
    path = adapter.snapshot_chunked(model, tmp_path)
    shard = next(path.glob("shard-*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:-8])
    edit_adapter(model)
    edited = full_state(model)
    with pytest.raises(SnapshotCorruptError):
        adapter.restore_chunked(model, path)
    assert_restored(edited, model)


def test_include_selects_tensors_explicitly(llama_lora: Path) -> None:
    adapter = get_adapter("hf_peft")
    model = adapter.load_model(llama_lora, device="cpu")
    name = "base_model.model.model.layers.0.self_attn.q_proj"
    snapshot = adapter.snapshot(model, include=[name])
    assert all(n.startswith(name + ".") for n in snapshot.names)
    assert any(".base_layer." in n for n in snapshot.names) and any(".lora_A." in n for n in snapshot.names)
    before = full_state(model)
    with torch.no_grad():
        model.get_submodule(name).base_layer.weight.add_(1)
    adapter.restore(model, snapshot)
    assert_restored(before, model)
