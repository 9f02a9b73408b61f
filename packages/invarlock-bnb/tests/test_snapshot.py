"""Snapshots of bitsandbytes models: quantization state round-trips bit-exactly, or the restore refuses.

Includes the conformance kit, run on 8-bit and 4-bit models and on an already-quantized checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import bitsandbytes as bnb
import pytest
import torch

from invarlock.adapters import get_adapter
from invarlock.errors import SnapshotMismatchError, UnsupportedOperationError
from invarlock.testing import AdapterConformance, differing_tensors, full_state, mutate_weights
from invarlock_bnb.layers import quantization_state
from invarlock_hf.testing import save_tiny_checkpoint, save_tiny_tokenizer
from invarlock_torch import take_snapshot


def mutate_everything(model: Any) -> None:
    """The kit's edit (every parameter and buffer) plus every quantization-state tensor."""
    mutate_weights(model)
    with torch.no_grad():
        for tensor in quantization_state(model).values():
            if tensor.is_floating_point():
                tensor.add_(0.5)
            else:
                tensor.bitwise_not_()


class BnbConformance(AdapterConformance):
    adapter_name = "hf_bnb"

    @pytest.fixture(scope="class")
    @classmethod
    def tokenizer_model_id(cls, tmp_path_factory: pytest.TempPathFactory) -> str:
        return str(save_tiny_tokenizer(tmp_path_factory.mktemp("tokenizer")))

    def mutate(self, model: Any) -> None:
        # state_dict() carries SCB / absmax / quant maps, so the kit's bit-exact check covers them
        # once the edit changes them too.
        mutate_everything(model)


class TestInt8Conformance(BnbConformance):
    # 8-bit is hf_bnb's default; naming it lets auto choose hf_bnb for a full-precision checkpoint.
    load_kwargs: ClassVar[dict[str, Any]] = {"load_in_8bit": True}

    @pytest.fixture(scope="class")
    @classmethod
    def model_id(cls, llama_path: Path) -> str:
        return str(llama_path)

    @pytest.fixture(scope="class")
    @classmethod
    def other_model_id(cls, gpt2_path: Path) -> str:
        return str(gpt2_path)


class TestNF4DoubleQuantConformance(BnbConformance):
    load_kwargs: ClassVar[dict[str, Any]] = {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": True,
    }

    @pytest.fixture(scope="class")
    @classmethod
    def model_id(cls, gpt2_path: Path) -> str:
        return str(gpt2_path)

    @pytest.fixture(scope="class")
    @classmethod
    def other_model_id(cls, llama_path: Path) -> str:
        return str(llama_path)


class TestQuantizedCheckpointConformance(BnbConformance):
    @pytest.fixture(scope="class")
    @classmethod
    def model_id(cls, llama_int8_path: Path) -> str:
        return str(llama_int8_path)

    @pytest.fixture(scope="class")
    @classmethod
    def other_model_id(cls, gpt2_nf4_path: Path) -> str:
        return str(gpt2_nf4_path)


# -- beyond the kit ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def adapter() -> Any:
    return get_adapter("hf_bnb")


@pytest.fixture(params=[("llama", "int8"), ("gpt2", "nf4"), ("llama", "fp4")], ids=lambda p: "-".join(p))
def model(request: Any, adapter: Any, checkpoints: dict[str, Path], quantizations: dict[str, Any]) -> Any:
    arch, quantization = request.param
    return adapter.load_model(checkpoints[arch], device="cpu", **quantizations[quantization])


def test_snapshot_holds_the_quantization_state(adapter: Any, model: Any) -> None:
    names = set(adapter.snapshot(model).names)
    state = quantization_state(model)
    assert state and set(state) <= names
    int8 = any(isinstance(m, bnb.nn.Linear8bitLt) for m in model.modules())
    expected = ("SCB",) if int8 else ("weight.absmax", "weight.quant_map")
    assert all(any(name.endswith(suffix) for name in state) for suffix in expected)


@pytest.mark.parametrize("chunked", [False, True], ids=["memory", "chunked"])
def test_edit_then_restore_gives_identical_logits(
    adapter: Any, model: Any, inputs: Any, chunked: bool, tmp_path: Path
) -> None:
    logits, before = adapter.logits(model, inputs), full_state(model)
    saved = adapter.snapshot_chunked(model, tmp_path) if chunked else adapter.snapshot(model)
    mutate_everything(model)
    assert not torch.equal(adapter.logits(model, inputs), logits)
    if chunked:
        adapter.restore_chunked(model, saved)
    else:
        adapter.restore(model, saved)
    assert torch.equal(adapter.logits(model, inputs), logits)
    assert not differing_tensors(before, full_state(model))


def test_restore_of_only_the_included_modules(adapter: Any, inputs: Any, llama_path: Path) -> None:
    model = adapter.load_model(llama_path, device="cpu")
    logits = adapter.logits(model, inputs)
    saved = adapter.snapshot(model, include=["model.layers.1.mlp"])
    assert set(saved.names) >= {f"model.layers.1.mlp.{p}.SCB" for p in ("gate_proj", "up_proj", "down_proj")}
    assert not any(name.startswith("model.layers.0") for name in saved.names)
    mutate_everything(model.model.layers[1].mlp)
    adapter.restore(model, saved)
    assert torch.equal(adapter.logits(model, inputs), logits)


def test_including_a_quantized_weight_includes_its_scales(
    adapter: Any, llama_path: Path, inputs: Any
) -> None:
    model = adapter.load_model(llama_path, device="cpu")
    logits = adapter.logits(model, inputs)
    saved = adapter.snapshot(model, include=["model.layers.0.self_attn.q_proj.weight"])
    assert "model.layers.0.self_attn.q_proj.SCB" in saved.names
    mutate_everything(model.model.layers[0].self_attn.q_proj)
    adapter.restore(model, saved)
    assert torch.equal(adapter.logits(model, inputs), logits)


def test_scales_moving_at_first_forward_do_not_break_restore(
    adapter: Any, llama_path: Path, inputs: Any
) -> None:
    model = adapter.load_model(llama_path, device="cpu")
    layer = model.model.layers[0].self_attn.q_proj
    assert layer.weight.SCB is not None and layer.state.SCB is None  # not run yet
    saved = adapter.snapshot(model)
    logits = adapter.logits(model, inputs)  # bitsandbytes moves SCB from the weight to the layer state
    assert layer.weight.SCB is None and layer.state.SCB is not None
    mutate_everything(model)
    adapter.restore(model, saved)
    assert torch.equal(adapter.logits(model, inputs), logits)


def test_float_weight_int8_layers_drop_their_stale_int8_copy(
    adapter: Any, llama_path: Path, inputs: Any
) -> None:
    model = adapter.load_model(llama_path, device="cpu", llm_int8_has_fp16_weight=True)
    logits = adapter.logits(model, inputs)  # caches an int8 copy of every float weight
    saved = adapter.snapshot(model)
    mutate_everything(model)
    adapter.restore(model, saved)
    assert all(m.state.CB is None for m in model.modules() if isinstance(m, bnb.nn.Linear8bitLt))
    assert torch.equal(adapter.logits(model, inputs), logits)


@pytest.mark.parametrize("chunked", [False, True], ids=["memory", "chunked"])
def test_layer_requantized_differently_is_refused_untouched(
    adapter: Any, gpt2_path: Path, quantizations: dict[str, Any], chunked: bool, tmp_path: Path
) -> None:
    model = adapter.load_model(gpt2_path, device="cpu", **quantizations["nf4"])
    saved = adapter.snapshot_chunked(model, tmp_path) if chunked else adapter.snapshot(model)
    mutate_everything(model)
    # Same tensors, shapes and dtypes; only the quant type differs: values alone cannot restore it.
    model.transformer.h[0].mlp.c_fc.weight.quant_state.quant_type = "fp4"
    edited = full_state(model)
    changed = r"h\.0\.mlp\.c_fc: quant_type is 'fp4' in the model, 'nf4' in the snapshot"
    with pytest.raises(SnapshotMismatchError, match=changed):
        if chunked:
            adapter.restore_chunked(model, saved)
        else:
            adapter.restore(model, saved)
    assert not differing_tensors(edited, full_state(model))


def test_snapshot_without_quantization_state_is_refused(adapter: Any, llama_path: Path) -> None:
    model = adapter.load_model(llama_path, device="cpu")
    weights_only = take_snapshot(model)  # the plain engine: parameters and buffers only
    before = full_state(model)
    with pytest.raises(SnapshotMismatchError, match=r"\.SCB is in the model but not in the snapshot"):
        adapter.restore(model, weights_only)
    assert not differing_tensors(before, full_state(model))


def test_replaced_int8_weight_cannot_be_snapshotted(adapter: Any, llama_path: Path, inputs: Any) -> None:
    model = adapter.load_model(llama_path, device="cpu")
    adapter.logits(model, inputs)
    layer = model.model.layers[0].self_attn.q_proj
    layer.weight.data = layer.weight.data.clone()  # the layer keeps computing with its old int8 copy
    with pytest.raises(UnsupportedOperationError, match="replaced rather than edited in place"):
        adapter.snapshot(model)


def test_quantized_embedding_cannot_be_snapshotted(adapter: Any, llama_path: Path, tmp_path: Path) -> None:
    model = adapter.load_model(llama_path, device="cpu")
    model.model.embed_tokens = bnb.nn.Embedding8bit(128, 32)
    with pytest.raises(UnsupportedOperationError, match="Embedding8bit"):
        adapter.snapshot(model)
    with pytest.raises(UnsupportedOperationError, match="Embedding8bit"):
        adapter.snapshot_chunked(model, tmp_path)
    assert not list(tmp_path.iterdir())


def test_4bit_layers_keep_the_portable_layout(
    adapter: Any, gpt2_path: Path, quantizations: dict[str, Any]
) -> None:
    model = adapter.load_model(gpt2_path, device="cpu", **quantizations["nf4"])
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    # bitsandbytes before 0.49 has no CPU repacking (nor the attribute): every layer is portable.
    assert layers and not any(getattr(m, "support_avx512bf16_for_cpu", False) for m in layers)


def test_layer_repacked_for_cpu_after_snapshot_is_refused(
    adapter: Any, quantizations: dict[str, Any], tmp_path: Path
) -> None:
    """What bitsandbytes does at the first forward on AVX512-BF16 CPUs, done by hand on any CPU."""
    convert = getattr(bnb.functional, "_convert_weight_packed_for_cpu", None)
    if convert is None:
        pytest.skip(f"bitsandbytes {bnb.__version__} does not repack 4-bit layers for the CPU (0.49 does)")
    wide = save_tiny_checkpoint("gpt2", tmp_path, n_embd=64)  # repacking needs rows of >= 64 weights
    model = adapter.load_model(wide, device="cpu", **quantizations["fp4"])
    layer = model.transformer.h[1].attn.c_attn
    packed_weight, packed_state = convert(layer.weight.data, layer.weight.quant_state)
    layer.weight.data, layer.weight.quant_state = packed_weight, packed_state
    saved = adapter.snapshot(model)  # a repacked layer is captured as it is
    mutate_everything(model)
    before = full_state(model)  # state_dict() unpacks the layer again, lossily, as bitsandbytes does
    assert not getattr(layer.weight.quant_state, "packing_format_for_cpu", False)
    changed = r"h\.1\.attn\.c_attn: cpu_packed is False in the model, True in the snapshot"
    with pytest.raises(SnapshotMismatchError, match=changed):
        adapter.restore(model, saved)
    assert not differing_tensors(before, full_state(model))
