"""hf_gptq on checkpoints gptqmodel quantized in this session: loading, describe, snapshots, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from invarlock.adapters import get_adapter, resolve_adapter
from invarlock.errors import ModelLoadError, UnsupportedOperationError
from invarlock.readiness import Status
from invarlock.testing import AdapterConformance, differing_tensors, full_state, mutate_weights
from invarlock_packed.testing import (
    LLAMA_LINEARS,
    batch,
    copy_with_quantization_config,
    legacy_only_readiness,
    relative_error,
)

LOGITS_TOLERANCE = 0.25
"""Largest relative L2 error of 4-bit, group-32 logits against the full-precision model (measured
0.10-0.14 on these tiny random models; an unrelated model of the same shape is at ~1.4)."""


class TestConformanceV1(AdapterConformance):
    adapter_name = "hf_gptq"

    @pytest.fixture(scope="class")
    @classmethod
    def model_id(cls, llama_gptq: Path) -> str:
        return str(llama_gptq)

    @pytest.fixture(scope="class")
    @classmethod
    def other_model_id(cls, opt_gptq: Path) -> str:
        return str(opt_gptq)

    @pytest.fixture(scope="class")
    @classmethod
    def tokenizer_model_id(cls, llama_base: Path) -> str:
        return str(llama_base)  # the full-precision checkpoint the quantized one was made from


class TestConformanceV2(TestConformanceV1):
    @pytest.fixture(scope="class")
    @classmethod
    def model_id(cls, llama_gptq_v2: Path) -> str:
        return str(llama_gptq_v2)


@pytest.mark.parametrize(
    ("quantized", "base", "fmt", "sym", "desc_act"),
    [
        ("llama_gptq", "llama_base", "gptq", True, False),
        ("llama_gptq_v2", "llama_base", "gptq_v2", False, False),
        ("llama_gptq_desc_act", "llama_base", "gptq", True, True),
        ("opt_gptq", "opt_base", "gptq", True, False),
    ],
)
def test_loads_on_the_torch_kernel_close_to_full_precision(
    request: pytest.FixtureRequest, quantized: str, base: str, fmt: str, sym: bool, desc_act: bool
) -> None:
    adapter = get_adapter("hf_gptq")
    model = adapter.load_model(request.getfixturevalue(quantized), device="cpu")
    reference_adapter = get_adapter("hf_causal")
    reference_model = reference_adapter.load_model(request.getfixturevalue(base), device="cpu")
    reference = reference_adapter.logits(reference_model, batch())

    assert relative_error(adapter.logits(model, batch()), reference) < LOGITS_TOLERANCE
    description = adapter.describe(model)
    # Packed weights and biases counted as the full-precision model counts them.
    assert description["n_params"] == reference_adapter.describe(reference_model)["n_params"]
    block = description["quantization"]
    assert block["format"] == fmt
    assert (block["method"], block["bits"], block["group_size"], block["sym"]) == ("gptq", 4, 32, sym)
    assert block["desc_act"] is desc_act
    assert (block["kernel"], block["kernel_backend"]) == ("TorchLinear", "gptq_torch")


def test_describe_lists_the_quantized_modules(llama_gptq: Path) -> None:
    adapter = get_adapter("hf_gptq")
    description = adapter.describe(adapter.load_model(llama_gptq, device="cpu"))
    block = description["quantization"]
    assert set(block["quantized_modules"]) == {
        f"model.layers.{i}.{n}" for i in range(2) for n in LLAMA_LINEARS
    }
    assert block["full_precision_modules"] == ["lm_head"]
    json.dumps(description)  # goes into certificates unchanged


def test_forward_leaves_the_packed_tensors_as_loaded(llama_gptq: Path) -> None:
    """What makes a snapshot taken before any scoring valid afterwards."""
    adapter = get_adapter("hf_gptq")
    model = adapter.load_model(llama_gptq, device="cpu")
    before = full_state(model)
    adapter.logits(model, batch())
    assert differing_tensors(before, full_state(model)) == []


@pytest.mark.parametrize("chunked", [False, True])
def test_restore_after_an_edit_gives_identical_logits(
    llama_gptq: Path, tmp_path: Path, chunked: bool
) -> None:
    adapter = get_adapter("hf_gptq")
    model = adapter.load_model(llama_gptq, device="cpu")
    original = adapter.logits(model, batch())
    snapshot = adapter.snapshot_chunked(model, tmp_path) if chunked else adapter.snapshot(model)
    mutate_weights(model)
    assert not torch.equal(adapter.logits(model, batch()), original)
    if chunked:
        adapter.restore_chunked(model, snapshot)
    else:
        adapter.restore(model, snapshot)
    assert torch.equal(adapter.logits(model, batch()), original)


def test_restore_drops_the_kernels_dequantized_weight_cache(
    llama_gptq: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With its weight cache on, TorchLinear keeps dequantized weights keyed on nothing the restore
    changes; without the reset, logits after restore would come from the edited weights."""
    monkeypatch.setenv("GPTQ_TORCH_CACHE_WEIGHTS", "1")
    adapter = get_adapter("hf_gptq")
    original = adapter.logits(adapter.load_model(llama_gptq, device="cpu"), batch())
    model = adapter.load_model(llama_gptq, device="cpu")
    snapshot = adapter.snapshot(model)
    mutate_weights(model)
    assert not torch.equal(adapter.logits(model, batch()), original)  # now cached: the edited weights
    adapter.restore(model, snapshot)
    assert torch.equal(adapter.logits(model, batch()), original)


@pytest.mark.parametrize(
    "call", [lambda m: m.to("cpu"), lambda m: m.to(torch.float32), lambda m: m.cpu(), lambda m: m.cuda()]
)
def test_moving_the_model_is_refused(llama_gptq: Path, call: Any) -> None:
    model = get_adapter("hf_gptq").load_model(llama_gptq, device="cpu")
    before = full_state(model)
    with pytest.raises(UnsupportedOperationError, match=r'hf_gptq.*load_model\(path, device="cuda"\)'):
        call(model)
    assert differing_tensors(before, full_state(model)) == []


@pytest.mark.parametrize("fixture", ["llama_gptq", "llama_gptq_v2"])
def test_hf_auto_picks_hf_gptq_from_config_json(request: pytest.FixtureRequest, fixture: str) -> None:
    path = request.getfixturevalue(fixture)
    resolution = resolve_adapter(path)
    assert resolution.adapter == "hf_gptq"
    model = get_adapter("hf_auto").load_model(path, device="cpu")
    assert get_adapter("hf_auto").describe(model)["quantization"]["kernel"] == "TorchLinear"
    with pytest.raises(UnsupportedOperationError, match="hf_gptq"):  # loaded by hf_gptq itself
        model.to("cpu")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"bits": 8}, r"says bits=8, but the tensors of model\.layers\.0\.\S+ are packed as 4-bit"),
        ({"bits": 3}, r"says bits=3, but the tensors of model\.layers\.0\.\S+ are packed as 4-bit"),
        (
            {"group_size": 64},
            r"says group_size=64, so model\.layers\.0\.\S+ with \d+ inputs needs \d scale rows",
        ),
        ({"group_size": -1}, r"says group_size=-1, so .* needs 1 scale rows, but it has [2-9]"),
    ],
)
def test_config_contradicting_the_tensors_is_refused_before_loading(
    llama_gptq: Path, tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    broken = copy_with_quantization_config(llama_gptq, tmp_path / "broken", **changes)
    with pytest.raises(ModelLoadError, match=message):
        get_adapter("hf_gptq").load_model(broken, device="cpu")


def test_a_format_without_a_kernel_here_names_the_formats_that_run_here(llama_gptq: Path) -> None:
    with pytest.raises(
        ModelLoadError,
        match=r"GPTQ format gptq has no kernel on mps \(formats that run on mps: "
        r"none\); load it with device='cpu'",
    ):
        get_adapter("hf_gptq").load_model(llama_gptq, device="mps")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where there is no CUDA device")
def test_cuda_without_a_cuda_device_is_refused(llama_gptq: Path) -> None:
    with pytest.raises(ModelLoadError, match="'cuda' was asked for, but torch sees no CUDA device"):
        get_adapter("hf_gptq").load_model(llama_gptq, device="cuda")


def test_an_unknown_device_is_refused(llama_gptq: Path) -> None:
    with pytest.raises(ModelLoadError, match="device 'gpu' is not a device torch knows"):
        get_adapter("hf_gptq").load_model(llama_gptq, device="gpu")


def test_an_unknown_format_is_refused(llama_gptq: Path, tmp_path: Path) -> None:
    marlin = copy_with_quantization_config(
        llama_gptq, tmp_path / "marlin", checkpoint_format="marlin", format="marlin"
    )
    with pytest.raises(ModelLoadError, match=r"does not load GPTQ format 'marlin'; it loads gptq, gptq_v2"):
        get_adapter("hf_gptq").load_model(marlin, device="cpu")


def test_other_checkpoints_name_their_adapter(llama_gptq: Path, llama_base: Path, tmp_path: Path) -> None:
    adapter = get_adapter("hf_gptq")
    with pytest.raises(ModelLoadError, match=r"is not quantized .* load it with hf_causal"):
        adapter.load_model(llama_base, device="cpu")
    awq = copy_with_quantization_config(llama_gptq, tmp_path / "awq", quant_method="awq")
    with pytest.raises(ModelLoadError, match="is awq-quantized, not gptq; load it with hf_awq"):
        adapter.load_model(awq, device="cpu")


@pytest.mark.parametrize("option", [{"device_map": "auto"}, {"quantization_config": {"bits": 4}}])
def test_placement_options_are_the_adapters(llama_gptq: Path, option: dict[str, Any]) -> None:
    with pytest.raises(ModelLoadError, match=f"hf_gptq chooses {next(iter(option))} itself"):
        get_adapter("hf_gptq").load_model(llama_gptq, device="cpu", **option)


def test_only_legacy_auto_gptq_installed_names_gptqmodel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = legacy_only_readiness("hf_gptq", "auto-gptq", "0.7.1", tmp_path, monkeypatch)
    assert result.status is Status.NEEDS_EXTRA
    assert "auto-gptq 0.7.1 is installed but no longer works" in result.reason
    assert "hf_gptq uses gptqmodel instead" in result.reason
    assert result.install is not None and "gptqmodel>=7.3.6" in result.install


@pytest.mark.gpu
def test_loads_on_cuda_with_the_cpu_logits(llama_gptq: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    adapter = get_adapter("hf_gptq")
    on_cpu = adapter.logits(adapter.load_model(llama_gptq, device="cpu"), batch())
    model = adapter.load_model(llama_gptq, device="cuda")
    assert adapter.describe(model)["device"].startswith("cuda")
    snapshot = adapter.snapshot(model)
    logits = adapter.logits(model, batch())
    assert relative_error(logits, on_cpu) < 0.02  # float16 matmuls differ between devices
    mutate_weights(model)
    adapter.restore(model, snapshot)
    assert torch.equal(adapter.logits(model, batch()), logits)
