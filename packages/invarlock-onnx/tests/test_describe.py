"""describe on ONNX models: the core contract, agreement with the PyTorch model, the onnx block."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from invarlock.adapters import get_adapter
from invarlock.certification.evaluation.invariants import structure_check
from invarlock.description import OPTIONAL_KEYS, STRUCTURAL_KEYS, validate_description

ADAPTER = "hf_causal_onnx"


@pytest.fixture(scope="module")
def descriptions(exported: Any) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """family → (ONNX description through hf_causal_onnx, PyTorch description through hf_causal)."""
    onnx, hf = get_adapter(ADAPTER), get_adapter("hf_causal")
    return {
        family: (
            onnx.describe(onnx.load_model(e.onnx, device="cpu")),
            hf.describe(hf.load_model(e.checkpoint, device="cpu")),
        )
        for family, e in exported.items()
    }


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_structure_agrees_with_the_pytorch_model(descriptions: Any, family: str) -> None:
    ours, pytorch = descriptions[family]
    validate_description(ours, adapter=ADAPTER)
    described = [key for key in STRUCTURAL_KEYS if key in ours]  # per-layer types: PyTorch only
    assert set(STRUCTURAL_KEYS) - set(described) <= set(OPTIONAL_KEYS)
    assert {key: ours[key] for key in described} == {key: pytorch[key] for key in described}
    check = structure_check(pytorch, ours)  # what certify concludes for this ONNX export
    assert check.passed, check.detail
    assert ours["architecture_known"] is True
    assert ours["role"] == "causal" and ours["model_type"] == family


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_sizes_and_tying_agree_with_the_pytorch_model(descriptions: Any, family: str) -> None:
    ours, pytorch = descriptions[family]
    assert ours["n_params"] == pytorch["n_params"]
    assert ours["dtype"] == pytorch["dtype"] == "float32"
    assert ours["tying"] == pytorch["tying"]


def test_known_shapes(descriptions: Any) -> None:
    gpt2, _ = descriptions["gpt2"]
    assert (gpt2["n_layer"], gpt2["heads_per_layer"], gpt2["mlp_dims"]) == (2, [4, 4], [40, 40])
    assert gpt2["tying"] == {"lm_head.weight": "transformer.wte.weight"}
    llama, _ = descriptions["llama"]
    assert llama["kv_heads_per_layer"] == [2, 2] and llama["tying"] == {}


def test_onnx_block(descriptions: Any, exported: Any) -> None:
    description, _ = descriptions["gpt2"]
    assert description["model_class"] == "ORTModelForCausalLM"
    assert description["device"] == "cpu" and description["device_map"] is None
    assert description["quantization"] is None
    block = description["onnx"]
    model_file = exported["gpt2"].onnx / "model.onnx"
    assert block["file"] == "model.onnx"
    assert block["files"] == {"model.onnx": model_file.stat().st_size}
    assert isinstance(block["opset"], int) and block["opset"] >= 14
    assert block["providers"] == ["CPUExecutionProvider"]
    assert block["past_key_values"] is True
    assert block["dtype"] == "float32"


def test_export_without_past_says_so(gpt2_without_past: Any) -> None:
    adapter = get_adapter(ADAPTER)
    assert adapter.describe(adapter.load_model(gpt2_without_past))["onnx"]["past_key_values"] is False


def test_external_data_files_are_listed(exported: Any, tmp_path: Path) -> None:
    import onnx

    proto = onnx.load(str(exported["llama"].onnx / "model.onnx"))
    onnx.save(
        proto,
        str(tmp_path / "model.onnx"),
        save_as_external_data=True,
        location="model.onnx_data",
        size_threshold=0,
    )
    shutil.copy(exported["llama"].onnx / "config.json", tmp_path / "config.json")
    adapter = get_adapter(ADAPTER)
    description = adapter.describe(adapter.load_model(tmp_path))
    files = description["onnx"]["files"]
    assert set(files) == {"model.onnx", "model.onnx_data"}
    assert files["model.onnx_data"] == (tmp_path / "model.onnx_data").stat().st_size
    assert description["n_params"] == adapter.describe(adapter.load_model(exported["llama"].onnx))["n_params"]


def test_dynamically_quantized_export(exported: Any, tmp_path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        exported["gpt2"].onnx / "model.onnx", tmp_path / "model.onnx", weight_type=QuantType.QInt8
    )
    shutil.copy(exported["gpt2"].onnx / "config.json", tmp_path / "config.json")
    adapter = get_adapter(ADAPTER)
    description = adapter.describe(adapter.load_model(tmp_path))
    validate_description(description, adapter=ADAPTER)
    assert description["quantization"]["method"] == "onnx"
    assert "MatMulInteger" in description["quantization"]["operators"]
    assert description["dtype"] == "int8"
