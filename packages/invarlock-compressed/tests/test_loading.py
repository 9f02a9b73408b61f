"""Loading keeps compressed-tensors weights compressed, and computes what compressed-tensors computes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers

from invarlock.adapters import get_adapter
from invarlock.errors import ModelLoadError, UnsupportedOperationError
from invarlock.testing import full_state, mutate_weights

PACKED = {"w4a16": ("weight_packed", torch.int32), "w8a8": ("weight", torch.int8)}
"""Per scheme: the tensor holding a linear layer's compressed weight, and its dtype."""


@pytest.mark.parametrize("scheme", ["w4a16", "w8a8"])
def test_loads_compressed_and_stays_compressed(
    checkpoints: dict[str, Path], scheme: str, inputs: dict[str, torch.Tensor]
) -> None:
    model = get_adapter("hf_auto").load_model(checkpoints[scheme], device="cpu")
    up_proj = model.model.layers[0].mlp.up_proj
    name, dtype = PACKED[scheme]
    assert up_proj._parameters[name].dtype == dtype
    before = full_state(model)
    with torch.no_grad():
        model(**inputs)
    after = full_state(model)
    # compressed-tensors alone would decompress every layer in place at this first pass.
    assert before.keys() == after.keys()
    assert all(torch.equal(before[key], after[key]) for key in before)
    assert up_proj._parameters[name].dtype == dtype


@pytest.mark.parametrize("scheme", ["w4a16", "w8a8"])
def test_logits_are_those_of_compressed_tensors_decompressed(
    checkpoints: dict[str, Path], scheme: str, inputs: dict[str, torch.Tensor]
) -> None:
    kept = get_adapter("hf_compressed").load_model(checkpoints[scheme], device="cpu")
    plain = transformers.AutoModelForCausalLM.from_pretrained(checkpoints[scheme])  # decompresses at 1st pass
    with torch.no_grad():
        ours, theirs = kept(**inputs).logits, plain(**inputs).logits
    assert plain.model.layers[0].mlp.up_proj.weight.is_floating_point()  # it did decompress
    assert torch.equal(ours, theirs)


def test_close_to_the_float_baseline(
    base_path: Path, w4a16_path: Path, w8a8_path: Path, inputs: dict[str, torch.Tensor]
) -> None:
    base = get_adapter("hf_causal").load_model(base_path, device="cpu")
    with torch.no_grad():
        reference = base(**inputs).logits
        for path, bound in ((w4a16_path, 0.3), (w8a8_path, 0.05)):
            logits = get_adapter("hf_compressed").load_model(path, device="cpu")(**inputs).logits
            relative = float((logits - reference).norm() / reference.norm())
            assert 0 < relative < bound, (path.name, relative)


def test_keep_compressed_false_decompresses_at_load_and_says_so(
    w4a16_path: Path, inputs: dict[str, torch.Tensor]
) -> None:
    adapter = get_adapter("hf_compressed")
    model = adapter.load_model(w4a16_path, device="cpu", keep_compressed=False)
    up_proj = model.model.layers[0].mlp.up_proj
    assert "weight_packed" not in up_proj._parameters and up_proj.weight.is_floating_point()
    block = adapter.describe(model)["quantization"]
    assert block["compressed_in_memory"] is False
    assert block["decompressed"] == "asked for at load (keep_compressed=False)"
    kept = adapter.load_model(w4a16_path, device="cpu")
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, kept(**inputs).logits)


def test_placement_is_the_adapters(w4a16_path: Path) -> None:
    model = get_adapter("hf_compressed").load_model(w4a16_path, device="cpu")
    for move in (lambda: model.to(torch.float16), lambda: model.cpu(), lambda: model.cuda()):
        with pytest.raises(UnsupportedOperationError, match="hf_compressed"):
            move()
    assert model.model.layers[0].mlp.up_proj.weight_scale.dtype == torch.float32


def test_refuses_a_checkpoint_of_another_kind(base_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a compressed-tensors checkpoint"):
        get_adapter("hf_compressed").load_model(base_path, device="cpu")


def test_refuses_another_methods_options(w4a16_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="use the hf_bnb adapter"):
        get_adapter("hf_compressed").load_model(w4a16_path, device="cpu", load_in_8bit=True)


def test_keep_compressed_must_be_a_bool(w4a16_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="keep_compressed must be true or false"):
        get_adapter("hf_compressed").load_model(w4a16_path, device="cpu", keep_compressed="no")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; none is available here")
@pytest.mark.parametrize("scheme", ["w4a16", "w8a8"])
def test_kept_compressed_on_cuda(
    checkpoints: dict[str, Path], scheme: str, inputs: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    adapter = get_adapter("hf_compressed")
    model = adapter.load_model(checkpoints[scheme], device="cuda")
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    assert adapter.describe(model)["quantization"]["compressed_in_memory"] is True
    on_cuda = {key: value.to("cuda") for key, value in inputs.items()}
    with torch.no_grad():
        logits = model(**on_cuda).logits
    before = full_state(model)
    snapshot = adapter.snapshot(model, same_device=True)
    path = adapter.snapshot_chunked(model, tmp_path)
    for restore in (lambda: adapter.restore(model, snapshot), lambda: adapter.restore_chunked(model, path)):
        mutate_weights(model)
        restore()
        after = full_state(model)
        assert all(torch.equal(before[key], after[key]) for key in before)
    with torch.no_grad():
        assert torch.equal(model(**on_cuda).logits, logits)
