"""In-memory snapshots of real tiny transformers models: bit-exact round trips, tying, include, refusals."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers

from invarlock.errors import SnapshotMismatchError
from invarlock.testing import assert_restored, differing_tensors, full_state, mutate_weights
from invarlock_hf import snapshot as snapshot_hooks
from invarlock_hf.testing import AUTO_CLASS
from invarlock_torch import ModelSnapshot, restore_snapshot, take_snapshot

FAMILIES = ("gpt2", "llama", "bert", "roberta", "t5")
# Bit patterns an arithmetic copy would lose: NaNs with payloads (quiet, signalling, negative), -0.0,
# infinities and a subnormal.
SPECIAL_FLOAT32_BITS = np.array(
    [0x7FC00001, 0x7F800001, 0xFFC12345, 0x80000000, 0x7F800000, 0xFF800000, 0x00000001], dtype=np.uint32
)


def load(path: Path, family: str, **kwargs: Any) -> Any:
    return getattr(transformers, AUTO_CLASS[family]).from_pretrained(path, **kwargs).eval()


def assert_changed(before: dict[str, torch.Tensor], model: torch.nn.Module) -> None:
    assert differing_tensors(before, full_state(model)), "the edit did not change the model"


# -- round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip_is_bit_exact(checkpoint: Callable[..., Path], family: str) -> None:
    model = load(checkpoint(family), family)
    before = full_state(model)
    snapshot = take_snapshot(model)
    mutate_weights(model)
    assert_changed(before, model)
    restore_snapshot(model, snapshot)
    assert_restored(before, model)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_round_trip_keeps_nan_payloads_negative_zero_and_dtype(
    checkpoint: Callable[..., Path], dtype: torch.dtype
) -> None:
    model = load(checkpoint("gpt2"), "gpt2")
    weight = model.transformer.h[0].ln_1.weight
    with torch.no_grad():
        weight.view(torch.int32)[: len(SPECIAL_FLOAT32_BITS)] = torch.from_numpy(
            SPECIAL_FLOAT32_BITS.view(np.int32)
        )
    model.to(dtype)  # keeps the float32 weight's bits only for float32; the others get their own NaNs
    before = full_state(model)
    snapshot = take_snapshot(model)
    assert {t.dtype for t in snapshot.tensors} == {t.dtype for t in before.values()}
    mutate_weights(model)
    restore_snapshot(model, snapshot)
    assert_restored(before, model)
    if dtype == torch.float32:
        restored_bits = (
            model.transformer.h[0].ln_1.weight.detach().view(torch.int32)[: len(SPECIAL_FLOAT32_BITS)]
        )
        assert restored_bits.numpy().view(np.uint32).tolist() == SPECIAL_FLOAT32_BITS.tolist()


def test_non_persistent_buffers_are_captured_and_restored(checkpoint: Callable[..., Path]) -> None:
    model = load(checkpoint("llama"), "llama")
    non_persistent = [
        f"{module_name}.{attr}".lstrip(".")
        for module_name, module in model.named_modules()
        for attr in module._non_persistent_buffers_set
    ]
    assert non_persistent, "the llama fixture should have non-persistent buffers (rotary inv_freq)"
    before = full_state(model)
    snapshot = take_snapshot(model)
    assert set(non_persistent) <= set(snapshot.names)
    with torch.no_grad():
        for name in non_persistent:
            model.get_buffer(name).mul_(3.0)
    restore_snapshot(model, snapshot)
    assert_restored(before, model)


def test_copies_are_on_the_cpu_by_default_and_independent_of_the_model(
    checkpoint: Callable[..., Path],
) -> None:
    model = load(checkpoint("gpt2"), "gpt2")
    snapshot = take_snapshot(model)
    model_pointers = {t.data_ptr() for t in [*model.parameters(), *model.buffers()]}
    assert all(t.device.type == "cpu" for t in snapshot.tensors)
    assert not model_pointers & {t.data_ptr() for t in snapshot.tensors}
    same = take_snapshot(model, same_device=True)
    assert [t.device for t in same.tensors] == [torch.device(slot.device) for slot in same.layout.slots]
    assert not model_pointers & {t.data_ptr() for t in same.tensors}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_default_cpu_copies_and_same_device_copies(checkpoint: Callable[..., Path]) -> None:
    model = load(checkpoint("gpt2"), "gpt2").to("cuda")
    before = full_state(model)
    on_cpu, on_gpu = take_snapshot(model), take_snapshot(model, same_device=True)
    assert {t.device.type for t in on_cpu.tensors} == {"cpu"}
    assert {t.device.type for t in on_gpu.tensors} == {"cuda"}
    for snapshot in (on_cpu, on_gpu):
        mutate_weights(model)
        restore_snapshot(model, snapshot)
        assert_restored(before, model)
        assert all(p.device.type == "cuda" for p in model.parameters())


# -- tying -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "tied"),
    [
        ("gpt2", {"transformer.wte.weight", "lm_head.weight"}),
        ("roberta", {"roberta.embeddings.word_embeddings.weight", "lm_head.decoder.weight"}),
        (
            "t5",
            {"shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"},
        ),
    ],
)
def test_tied_tensors_are_stored_once(checkpoint: Callable[..., Path], family: str, tied: set[str]) -> None:
    model = load(checkpoint(family), family)
    if not all(model.get_parameter(n) is model.get_parameter(min(tied)) for n in tied):
        pytest.fail(f"the {family} fixture should tie {sorted(tied)}")
    snapshot = take_snapshot(model)
    slot = next(s for s in snapshot.layout.slots if tied & set(s.names))
    assert set(slot.names) >= tied
    distinct = {id(t): t for t in [*model.parameters(), *model.buffers()]}.values()
    assert len(snapshot.tensors) == len(distinct)
    assert snapshot.nbytes == sum(t.numel() * t.element_size() for t in distinct)


@pytest.mark.parametrize(
    ("family", "untie", "tied"),
    [
        ("gpt2", "lm_head.weight", ("transformer.wte.weight", "lm_head.weight")),
        ("gpt2", "transformer.wte.weight", ("transformer.wte.weight", "lm_head.weight")),
        ("bert", "cls.predictions.decoder.bias", ("cls.predictions.bias", "cls.predictions.decoder.bias")),
        (
            "t5",
            "lm_head.weight",
            ("shared.weight", "decoder.embed_tokens.weight", "lm_head.weight"),
        ),
    ],
)
def test_restore_reties_what_an_edit_untied(
    checkpoint: Callable[..., Path], family: str, untie: str, tied: tuple[str, ...]
) -> None:
    model = load(checkpoint(family), family)
    before = full_state(model)
    snapshot = take_snapshot(model)
    module_name, _, attr = untie.rpartition(".")
    replacement = torch.nn.Parameter(model.get_parameter(untie).detach() + 1.0)
    setattr(model.get_submodule(module_name), attr, replacement)  # the edit unties by assignment
    assert model.get_parameter(untie) is not model.get_parameter(tied[0] if tied[0] != untie else tied[1])
    restore_snapshot(model, snapshot)
    assert len({id(model.get_parameter(name)) for name in tied}) == 1, "restore did not re-tie"
    assert_restored(before, model)


# -- include ---------------------------------------------------------------------------------------


def test_include_captures_and_restores_only_the_named_modules(checkpoint: Callable[..., Path]) -> None:
    # 11 layers, so a prefix "transformer.h.1" must not take "transformer.h.10" along.
    model = load(checkpoint("gpt2", n_layer=11, n_embd=16), "gpt2")
    before = full_state(model)
    snapshot = take_snapshot(model, include=["transformer.h.1", "transformer.ln_f.bias"])
    assert snapshot.names and all(
        n.startswith("transformer.h.1.") or n == "transformer.ln_f.bias" for n in snapshot.names
    )
    assert not snapshot.layout.complete
    mutate_weights(model)
    edited = full_state(model)
    restore_snapshot(model, snapshot)
    after = full_state(model)
    for name in after:
        expected = before if name in snapshot.names else edited
        assert not differing_tensors({name: expected[name]}, {name: after[name]}), name


def test_include_takes_every_name_of_a_tied_tensor(checkpoint: Callable[..., Path]) -> None:
    model = load(checkpoint("gpt2"), "gpt2")
    snapshot = take_snapshot(model, include=["lm_head"])
    assert set(snapshot.names) == {"lm_head.weight", "transformer.wte.weight"}


def test_include_naming_nothing_is_refused(checkpoint: Callable[..., Path]) -> None:
    model = load(checkpoint("gpt2"), "gpt2")
    with pytest.raises(SnapshotMismatchError, match=re.escape("transformer.h.7")):
        take_snapshot(model, include=["transformer.h.1", "transformer.h.7"])


# -- refusals leave the model untouched ------------------------------------------------------------


def edit_then_refuse(model: torch.nn.Module, snapshot: Any, *, match: str, **kwargs: Any) -> None:
    """Edit the model, check the restore is refused, and that the refusal changed nothing."""
    mutate_weights(model)
    edited = full_state(model)
    with pytest.raises(SnapshotMismatchError, match=re.escape(match)):
        restore_snapshot(model, snapshot, **kwargs)
    assert not differing_tensors(edited, full_state(model)), "a refused restore changed the model"


def test_snapshot_of_another_shape_is_refused(checkpoint: Callable[..., Path]) -> None:
    other = take_snapshot(load(checkpoint("gpt2", n_embd=48), "gpt2"))
    edit_then_refuse(load(checkpoint("gpt2"), "gpt2"), other, match="shape")


def test_snapshot_of_another_model_class_is_refused(checkpoint: Callable[..., Path]) -> None:
    base = transformers.GPT2Model.from_pretrained(checkpoint("gpt2"))
    edit_then_refuse(load(checkpoint("gpt2"), "gpt2"), take_snapshot(base), match="GPT2Model")


def test_a_dtype_change_in_the_last_tensor_is_refused_before_any_write(
    checkpoint: Callable[..., Path],
) -> None:
    model = load(checkpoint("gpt2"), "gpt2")
    snapshot = take_snapshot(model)
    last = snapshot.layout.slots[-1].names[0]
    module_name, _, attr = last.rpartition(".")
    setattr(model.get_submodule(module_name), attr, torch.nn.Parameter(model.get_parameter(last).half()))
    edit_then_refuse(model, snapshot, match=f"{last} is torch.float16")


def test_a_tensor_the_snapshot_lacks_is_refused(checkpoint: Callable[..., Path]) -> None:
    model = load(checkpoint("gpt2"), "gpt2")
    snapshot = take_snapshot(model)
    model.transformer.h[0].register_buffer("added_by_edit", torch.zeros(3))
    edit_then_refuse(model, snapshot, match="added_by_edit is in the model but not in the snapshot")


def test_an_object_that_is_not_a_snapshot_is_refused(checkpoint: Callable[..., Path]) -> None:
    edit_then_refuse(load(checkpoint("gpt2"), "gpt2"), {"weights": 1}, match="dict")


# -- extra tensors ---------------------------------------------------------------------------------


def extra_state() -> dict[str, torch.Tensor]:
    # Stand-ins for state outside parameters and buffers (bitsandbytes keeps absmax on quant_state).
    return {
        "transformer.h.0.mlp.c_fc.weight.quant_state.absmax": torch.randn(9),
        "transformer.h.0.mlp.c_fc.weight.quant_state.code": torch.arange(16, dtype=torch.uint8),
    }


def test_extra_tensors_round_trip_with_the_model(checkpoint: Callable[..., Path]) -> None:
    model = load(checkpoint("gpt2"), "gpt2")
    extra = extra_state()
    before, extra_before = full_state(model), {k: v.clone() for k, v in extra.items()}
    snapshot = take_snapshot(model, extra_tensors=extra)
    mutate_weights(model)
    for tensor in extra.values():
        if tensor.dtype == torch.uint8:
            tensor.bitwise_not_()
        else:
            tensor.add_(1.0)
    assert differing_tensors(extra_before, extra)
    restore_snapshot(model, snapshot, extra_tensors=extra)
    assert_restored(before, model)
    assert not differing_tensors(extra_before, extra)


def test_extra_tensors_get_the_same_checks(checkpoint: Callable[..., Path]) -> None:
    model = load(checkpoint("gpt2"), "gpt2")
    extra = extra_state()
    snapshot = take_snapshot(model, extra_tensors=extra)
    edit_then_refuse(model, snapshot, match="absmax is missing")  # restore without the extra tensors
    wrong = {**extra, "transformer.h.0.mlp.c_fc.weight.quant_state.absmax": torch.randn(10)}
    edit_then_refuse(model, snapshot, match="absmax has shape", extra_tensors=wrong)


def test_extra_tensor_named_like_a_parameter_is_rejected(checkpoint: Callable[..., Path]) -> None:
    model = load(checkpoint("gpt2"), "gpt2")
    with pytest.raises(ValueError, match=re.escape("lm_head.weight")):
        take_snapshot(model, extra_tensors={"lm_head.weight": torch.zeros(1)})


# -- settings --------------------------------------------------------------------------------------

C_FC, C_ATTN = "transformer.h.0.mlp.c_fc", "transformer.h.1.attn.c_attn"
SETTINGS = {  # stand-ins for a quantized layer's non-tensor settings (bitsandbytes' quant type...)
    C_FC: {"bits": 4, "quant_type": "nf4", "shape": (12, 8)},
    C_ATTN: {"bits": 8, "threshold": 6.0},
}


def test_unchanged_settings_let_the_restore_through(checkpoint: Callable[..., Path]) -> None:
    model = load(checkpoint("gpt2"), "gpt2")
    before = full_state(model)
    snapshot = take_snapshot(model, settings=SETTINGS)
    mutate_weights(model)
    as_read_back = {C_FC: {"bits": 4, "quant_type": "nf4", "shape": [12, 8]}, C_ATTN: SETTINGS[C_ATTN]}
    restore_snapshot(model, snapshot, settings=as_read_back)  # JSON values: a tuple equals its list
    assert_restored(before, model)


def test_changed_settings_are_refused_naming_what_changed(checkpoint: Callable[..., Path]) -> None:
    model = load(checkpoint("gpt2"), "gpt2")
    snapshot = take_snapshot(model, settings=SETTINGS)
    requantized = {**SETTINGS, C_FC: {**SETTINGS[C_FC], "quant_type": "fp4"}}
    match = f"{C_FC}: quant_type is 'fp4' in the model, 'nf4' in the snapshot"
    edit_then_refuse(model, snapshot, match=match, settings=requantized)
    match = f"{C_ATTN} has settings in the snapshot but none in the model"
    edit_then_refuse(model, snapshot, match=match, settings={C_FC: SETTINGS[C_FC]})
    match = "lm_head has settings in the model but not in the snapshot"
    edit_then_refuse(model, snapshot, match=match, settings={**SETTINGS, "lm_head": {"bits": 8}})


def test_a_partial_snapshot_records_and_checks_only_its_modules_settings(
    checkpoint: Callable[..., Path],
) -> None:
    model = load(checkpoint("gpt2"), "gpt2")
    before = full_state(model)
    snapshot = take_snapshot(model, include=["transformer.h.0"], settings=SETTINGS)
    assert snapshot.layout.settings == {C_FC: {"bits": 4, "quant_type": "nf4", "shape": [12, 8]}}
    mutate_weights(model)
    restore_snapshot(model, snapshot, settings={**SETTINGS, C_ATTN: {"bits": 4}})  # h.1 is not in it
    restored = {
        name: tensor for name, tensor in full_state(model).items() if name.startswith("transformer.h.0.")
    }
    assert not differing_tensors({name: before[name] for name in restored}, restored)


def test_settings_that_are_not_json_values_are_rejected(checkpoint: Callable[..., Path]) -> None:
    model = load(checkpoint("gpt2"), "gpt2")
    with pytest.raises(ValueError, match="settings must be JSON values"):
        take_snapshot(model, settings={C_FC: {"dtype": torch.float16}})


# -- hooks -----------------------------------------------------------------------------------------


def test_hooks_answer_for_transformers_models_only(checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    plain = torch.nn.Linear(2, 2)
    assert snapshot_hooks.invarlock_snapshot(model=plain, include=None, same_device=False) is None
    assert snapshot_hooks.invarlock_restore(model=plain, snapshot=object()) is None
    assert snapshot_hooks.invarlock_snapshot_chunked(plain, tmp_path, None, None) is None
    assert snapshot_hooks.invarlock_restore_chunked(model=plain, path=tmp_path) is None
    assert list(tmp_path.iterdir()) == []

    model = load(checkpoint("gpt2"), "gpt2")
    before = full_state(model)
    snapshot = snapshot_hooks.invarlock_snapshot(model=model, include=None, same_device=False)
    assert isinstance(snapshot, ModelSnapshot)
    path = snapshot_hooks.invarlock_snapshot_chunked(model, tmp_path, None, None)
    assert path is not None and path.parent == tmp_path
    mutate_weights(model)
    assert snapshot_hooks.invarlock_restore(model=model, snapshot=snapshot) is True
    assert_restored(before, model)
    mutate_weights(model)
    assert snapshot_hooks.invarlock_restore_chunked(model=model, path=path) is True
    assert_restored(before, model)


def test_importing_the_hooks_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import sys, invarlock_hf.snapshot; "
        "heavy = sorted({'torch', 'transformers', 'safetensors'} & set(sys.modules)); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
