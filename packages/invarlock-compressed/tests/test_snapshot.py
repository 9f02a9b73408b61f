"""Snapshots of the compressed state itself, through the shared engine, and the conformance kit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from invarlock.adapters import get_adapter
from invarlock.errors import SnapshotMismatchError
from invarlock.testing import AdapterConformance, assert_restored, full_state, mutate_weights
from invarlock_compressed.testing import OTHER_SIZES, save_compressed_checkpoint


@pytest.mark.parametrize("scheme", ["w4a16", "w8a8"])
@pytest.mark.parametrize("chunked", [False, True], ids=["memory", "chunked"])
def test_packed_state_round_trips_bit_exactly(
    checkpoints: dict[str, Path], scheme: str, chunked: bool, tmp_path: Path, inputs: dict[str, torch.Tensor]
) -> None:
    adapter = get_adapter("hf_compressed")
    model = adapter.load_model(checkpoints[scheme], device="cpu")
    with torch.no_grad():
        logits = model(**inputs).logits
    before = full_state(model)
    packed = (
        "model.layers.0.mlp.up_proj.weight_packed"
        if scheme == "w4a16"
        else "model.layers.0.mlp.up_proj.weight"
    )
    assert packed in before and not before[packed].is_floating_point()
    if chunked:
        path = adapter.snapshot_chunked(model, tmp_path)
        mutate_weights(model)
        adapter.restore_chunked(model, path)
    else:
        snapshot = adapter.snapshot(model)
        assert packed in snapshot.names
        mutate_weights(model)
        adapter.restore(model, snapshot)
    assert_restored(before, model)
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, logits)


def test_a_module_quantized_differently_is_refused_untouched(w4a16_path: Path) -> None:
    adapter = get_adapter("hf_compressed")
    model = adapter.load_model(w4a16_path, device="cpu")
    snapshot = adapter.snapshot(model)
    module = model.model.layers[1].mlp.down_proj
    # As if this one module had been re-quantized asymmetrically (modules share one scheme object).
    module.quantization_scheme = module.quantization_scheme.model_copy(deep=True)
    module.quantization_scheme.weights.symmetric = False
    mutate_weights(model)
    edited = full_state(model)
    with pytest.raises(
        SnapshotMismatchError, match=r"model\.layers\.1\.mlp\.down_proj: scheme is"
    ) as refused:
        adapter.restore(model, snapshot)
    assert "model.layers.0" not in str(refused.value)
    assert_restored(edited, model)


def test_including_a_packed_tensor_captures_its_module(w4a16_path: Path) -> None:
    adapter = get_adapter("hf_compressed")
    model = adapter.load_model(w4a16_path, device="cpu")
    snapshot = adapter.snapshot(model, include=["model.layers.0.mlp.up_proj.weight_packed"])
    assert {
        "model.layers.0.mlp.up_proj.weight_packed",
        "model.layers.0.mlp.up_proj.weight_scale",
        "model.layers.0.mlp.up_proj.weight_shape",
    } <= set(snapshot.names)


def _checkpoint(factory: pytest.TempPathFactory, scheme: str, **sizes: Any) -> str:
    return str(save_compressed_checkpoint(factory.mktemp(f"kit-{scheme}"), scheme, **sizes))


class TestW4A16Conformance(AdapterConformance):
    adapter_name = "hf_compressed"

    @pytest.fixture(scope="class")
    @classmethod
    def model_id(cls, tmp_path_factory: pytest.TempPathFactory) -> str:
        return _checkpoint(tmp_path_factory, "w4a16")

    @pytest.fixture(scope="class")
    @classmethod
    def other_model_id(cls, tmp_path_factory: pytest.TempPathFactory) -> str:
        return _checkpoint(tmp_path_factory, "w4a16", **OTHER_SIZES)

    @pytest.fixture(scope="class")
    @classmethod
    def tokenizer_model_id(cls, model_id: str) -> str:
        return model_id  # saved with its tokenizer


class TestW8A8Conformance(AdapterConformance):
    adapter_name = "hf_compressed"

    @pytest.fixture(scope="class")
    @classmethod
    def model_id(cls, tmp_path_factory: pytest.TempPathFactory) -> str:
        return _checkpoint(tmp_path_factory, "w8a8")

    @pytest.fixture(scope="class")
    @classmethod
    def other_model_id(cls, tmp_path_factory: pytest.TempPathFactory) -> str:
        return _checkpoint(tmp_path_factory, "w8a8", **OTHER_SIZES)

    @pytest.fixture(scope="class")
    @classmethod
    def tokenizer_model_id(cls, model_id: str) -> str:
        return model_id
