"""hf_awq on checkpoints gptqmodel quantized in this session: loading, describe, snapshots, errors."""

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
0.14-0.16 on these tiny random models; an unrelated model of the same shape is at ~1.4)."""


class TestConformance(AdapterConformance):
    adapter_name = "hf_awq"

    @pytest.fixture(scope="class")
    @classmethod
    def model_id(cls, llama_awq: Path) -> str:
        return str(llama_awq)

    @pytest.fixture(scope="class")
    @classmethod
    def other_model_id(cls, opt_awq: Path) -> str:
        return str(opt_awq)

    @pytest.fixture(scope="class")
    @classmethod
    def tokenizer_model_id(cls, llama_base: Path) -> str:
        return str(llama_base)  # the full-precision checkpoint the quantized one was made from


class TestConformanceFloat32(TestConformance):
    load_kwargs = {"dtype": "float32"}  # noqa: RUF012 - the kit's own ClassVar


@pytest.mark.parametrize(("quantized", "base"), [("llama_awq", "llama_base"), ("opt_awq", "opt_base")])
def test_loads_gemm_on_the_torch_kernel_close_to_full_precision(
    request: pytest.FixtureRequest, quantized: str, base: str
) -> None:
    adapter = get_adapter("hf_awq")
    model = adapter.load_model(request.getfixturevalue(quantized), device="cpu")
    reference_adapter = get_adapter("hf_causal")
    reference_model = reference_adapter.load_model(request.getfixturevalue(base), device="cpu")
    reference = reference_adapter.logits(reference_model, batch())

    assert relative_error(adapter.logits(model, batch()), reference) < LOGITS_TOLERANCE
    description = adapter.describe(model)
    # Packed weights and biases counted as the full-precision model counts them.
    assert description["n_params"] == reference_adapter.describe(reference_model)["n_params"]
    assert description["dtype"] == "float16"  # the default: the dtype AWQ scales are stored in
    block = description["quantization"]
    assert (block["method"], block["bits"], block["group_size"], block["zero_point"]) == ("awq", 4, 32, True)
    assert (block["format"], block["kernel"], block["kernel_backend"]) == (
        "gemm",
        "AwqTorchLinear",
        "awq_torch",
    )


def test_describe_lists_the_quantized_modules(llama_awq: Path) -> None:
    adapter = get_adapter("hf_awq")
    description = adapter.describe(adapter.load_model(llama_awq, device="cpu"))
    block = description["quantization"]
    assert set(block["quantized_modules"]) == {
        f"model.layers.{i}.{n}" for i in range(2) for n in LLAMA_LINEARS
    }
    assert block["full_precision_modules"] == ["lm_head"]
    json.dumps(description)  # goes into certificates unchanged


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_forward_leaves_the_packed_tensors_as_loaded(llama_awq: Path, dtype: str) -> None:
    """What makes a snapshot taken before any scoring valid afterwards."""
    adapter = get_adapter("hf_awq")
    model = adapter.load_model(llama_awq, device="cpu", dtype=dtype)
    before = full_state(model)
    adapter.logits(model, batch())
    assert differing_tensors(before, full_state(model)) == []


@pytest.mark.parametrize("chunked", [False, True])
def test_restore_after_an_edit_gives_identical_logits(llama_awq: Path, tmp_path: Path, chunked: bool) -> None:
    adapter = get_adapter("hf_awq")
    model = adapter.load_model(llama_awq, device="cpu")
    original = adapter.logits(model, batch())
    snapshot = adapter.snapshot_chunked(model, tmp_path) if chunked else adapter.snapshot(model)
    mutate_weights(model)
    assert not torch.equal(adapter.logits(model, batch()), original)
    if chunked:
        adapter.restore_chunked(model, snapshot)
    else:
        adapter.restore(model, snapshot)
    assert torch.equal(adapter.logits(model, batch()), original)


@pytest.mark.parametrize(("dtype", "shown"), [("bfloat16", "torch.bfloat16"), ("auto", "auto")])
def test_bfloat16_is_refused_with_the_reason(llama_awq: Path, dtype: str, shown: str) -> None:
    # "auto" is the checkpoint's dtype, which gptqmodel may have saved as bfloat16.
    message = rf"hf_awq loads in float16 or float32, not {shown} \(AWQ scales"
    with pytest.raises(ModelLoadError, match=message):
        get_adapter("hf_awq").load_model(llama_awq, device="cpu", dtype=dtype)


@pytest.mark.parametrize("call", [lambda m: m.to("cpu"), lambda m: m.cpu(), lambda m: m.cuda()])
def test_moving_the_model_is_refused(llama_awq: Path, call: Any) -> None:
    model = get_adapter("hf_awq").load_model(llama_awq, device="cpu")
    before = full_state(model)
    with pytest.raises(UnsupportedOperationError, match=r'hf_awq.*load_model\(path, device="cuda"\)'):
        call(model)
    assert differing_tensors(before, full_state(model)) == []


def test_hf_auto_picks_hf_awq_from_config_json(llama_awq: Path) -> None:
    assert resolve_adapter(llama_awq).adapter == "hf_awq"
    model = get_adapter("hf_auto").load_model(llama_awq, device="cpu")
    assert get_adapter("hf_auto").describe(model)["quantization"]["kernel"] == "AwqTorchLinear"
    with pytest.raises(UnsupportedOperationError, match="hf_awq"):  # loaded by hf_awq itself
        model.to("cpu")


def test_gemv_on_cpu_names_the_formats_that_run_here(llama_awq: Path, tmp_path: Path) -> None:
    # gptqmodel cannot write GEMV on CPU (its GEMV packer is CUDA-only); the format is refused from
    # config.json before any tensor is read, so a GEMM checkpoint relabelled GEMV shows the error.
    gemv = copy_with_quantization_config(
        llama_awq, tmp_path / "gemv", version="GEMV", format="gemv", checkpoint_format="gemv"
    )
    with pytest.raises(
        ModelLoadError,
        match=r"AWQ format gemv has no kernel on cpu \(formats that run on cpu: "
        r"gemm\); load it with device='cuda'",
    ):
        get_adapter("hf_awq").load_model(gemv, device="cpu")


def test_an_unknown_format_is_refused(llama_awq: Path, tmp_path: Path) -> None:
    fast = copy_with_quantization_config(
        llama_awq, tmp_path / "fast", version="gemv_fast", format=None, checkpoint_format=None
    )
    with pytest.raises(ModelLoadError, match=r"does not load AWQ format 'gemv_fast'; it loads gemm, gemv"):
        get_adapter("hf_awq").load_model(fast, device="cpu")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"bits": 8}, r"says bits=8, but the tensors of model\.layers\.0\.\S+ are packed as 4-bit"),
        (
            {"group_size": 128},
            r"says group_size=128, so model\.layers\.0\.\S+ with \d+ inputs needs [12] scale rows, "
            r"but it has [48]",
        ),
    ],
)
def test_config_contradicting_the_tensors_is_refused_before_loading(
    llama_awq: Path, tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    broken = copy_with_quantization_config(llama_awq, tmp_path / "broken", **changes)
    with pytest.raises(ModelLoadError, match=message):
        get_adapter("hf_awq").load_model(broken, device="cpu")


def test_gptq_checkpoints_are_sent_to_hf_gptq(llama_awq: Path, tmp_path: Path) -> None:
    gptq = copy_with_quantization_config(llama_awq, tmp_path / "gptq", quant_method="gptq")
    with pytest.raises(ModelLoadError, match="is gptq-quantized, not awq; load it with hf_gptq"):
        get_adapter("hf_awq").load_model(gptq, device="cpu")


def test_only_legacy_autoawq_installed_names_gptqmodel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = legacy_only_readiness("hf_awq", "autoawq", "0.2.9", tmp_path, monkeypatch)
    assert result.status is Status.NEEDS_EXTRA
    assert "autoawq 0.2.9 is installed but no longer works" in result.reason
    assert "hf_awq uses gptqmodel instead" in result.reason
    assert result.install is not None and "gptqmodel>=7.3.6" in result.install


@pytest.mark.gpu
def test_loads_gemm_on_cuda_with_the_cpu_logits(llama_awq: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    adapter = get_adapter("hf_awq")
    on_cpu = adapter.logits(adapter.load_model(llama_awq, device="cpu"), batch())
    model = adapter.load_model(llama_awq, device="cuda")
    assert adapter.describe(model)["device"].startswith("cuda")
    snapshot = adapter.snapshot(model)
    logits = adapter.logits(model, batch())
    assert relative_error(logits, on_cpu) < 0.02  # float16 matmuls differ between devices
    mutate_weights(model)
    adapter.restore(model, snapshot)
    assert torch.equal(adapter.logits(model, batch()), logits)


@pytest.mark.gpu
def test_gemv_quantized_on_cuda_loads_there_and_restores(llama_base: Path, tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from invarlock_packed.testing import quantize_checkpoint

    gemv = quantize_checkpoint(llama_base, tmp_path / "gemv", "awq_gemv", group_size=64, device="cuda")
    adapter = get_adapter("hf_awq")
    model = adapter.load_model(gemv, device="cuda")
    block = adapter.describe(model)["quantization"]
    assert (block["format"], block["kernel_backend"]) == ("gemv", "awq_gemv")
    snapshot = adapter.snapshot(model)
    logits = adapter.logits(model, batch())
    mutate_weights(model)
    adapter.restore(model, snapshot)
    assert torch.equal(adapter.logits(model, batch()), logits)


def test_installing_invarlock_awq_does_not_install_hf_gptq() -> None:
    # What AWQ shares with GPTQ comes from invarlock-packed, a library with no plugin: nothing that
    # invarlock-awq requires registers hf_gptq.
    from importlib.metadata import distribution

    from packaging.requirements import Requirement

    seen: set[str] = set()
    pending = ["invarlock-awq"]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in distribution(name).requires or []:
            requirement = Requirement(line)
            if requirement.name.startswith("invarlock-") and not requirement.marker:
                pending.append(requirement.name)
    assert "invarlock-gptq" not in seen
    assert "invarlock-packed" in seen
