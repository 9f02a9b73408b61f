"""``invarlock describe MODEL --config-only``: from config.json alone, offline, on the meta device."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import transformers

from invarlock.cli import main
from invarlock_hf.describe import describe_model
from invarlock_hf.testing import PUBLISHED_CONFIGS, build_published, tiny_config

SCHEMA = json.loads((Path(__file__).resolve().parents[3] / "docs/schemas/describe.v1.json").read_text())
# One of each kind the issue names; every one is a full-size published config.
KINDS = [
    "DeepSeek-V3",
    "Qwen3-30B-A3B",
    "Qwen3-Next-80B-A3B",
    "Llama-4-Maverick-17B-128E (text)",
    "Jamba-v0.1",
    "Mamba-2.8B",
    "Gemma-2-9B",
    "Gemma-3-4B-it",
    "Qwen2.5-VL-7B-Instruct",
    "ModernBERT-base",
]


def write_config(name: str, directory: Path, **overrides: Any) -> Path:
    model_type, fields = PUBLISHED_CONFIGS[name]
    config = transformers.AutoConfig.for_model(model_type, **{**fields, **overrides})
    config.save_pretrained(directory)
    return directory


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["describe", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("name", KINDS)
def test_config_only_json_matches_the_meta_model(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = write_config(name, tmp_path / "checkpoint")
    code, out, _ = run(capsys, str(directory), "--config-only", "--json")
    assert code == 0
    document = json.loads(out)
    jsonschema.validate(document, SCHEMA)
    assert document["config_only"] is True and document["adapter"] is None
    described = document["description"]
    expected = describe_model(build_published(name))
    for key in (
        "n_layer",
        "heads_per_layer",
        "kv_heads_per_layer",
        "mlp_dims",
        "layer_types",
        "moe_per_layer",
        "hidden_size",
        "vocab_size",
        "n_params",
        "towers",
    ):
        assert described.get(key) == expected.get(key), key
    memory = described["memory"]
    assert memory["parameters"] == described["n_params"]
    assert memory["bytes_per_dtype"] == {
        "float32": 4 * described["n_params"],
        "float16": 2 * described["n_params"],
        "bfloat16": 2 * described["n_params"],
    }
    assert memory["packed"] is None
    assert described["config_source"] == str(directory / "config.json")


def test_text_output_fits_80_columns_with_layer_ranges(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, str(write_config("DeepSeek-V3", tmp_path)), "--config-only")
    assert code == 0
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    text = " ".join(" ".join(line.split()) for line in lines)
    assert "mlp layers 0-2 dense 18432, 3-60 MoE 256×2048 top-8 +shared 2048" in text
    assert "attention layers 0-60 full 128/128 heads" in text
    assert "671.03B" in text


def test_text_groups_a_repeating_pattern_by_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(write_config("Jamba-v0.1", tmp_path)), "--config-only")
    text = " ".join(" ".join(line.split()) for line in out.splitlines())
    assert code == 0
    assert "full 32/8 heads in layers 4, 12, 20, 28" in text
    assert "mamba in layers 0-3, 5-11, 13-19, 21-27, 29-31" in text


def test_config_dtype_is_the_described_dtype(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = write_config("Mamba-2.8B", tmp_path, dtype="bfloat16")
    code, out, _ = run(capsys, str(directory), "--config-only", "--json")
    assert code == 0
    assert json.loads(out)["description"]["dtype"] == "bfloat16"


def tiny_quantized(directory: Path, quantization_config: dict[str, Any]) -> Path:
    # 2 layers, hidden 32, 4 heads of 8, 2 KV heads, MLP 64, vocabulary 128, float16.
    config = tiny_config("llama", intermediate_size=64, dtype="float16", tie_word_embeddings=False)
    config.quantization_config = quantization_config
    config.save_pretrained(directory)
    return directory


# Per layer (in x out): q 32x32, k 32x16, v 32x16, o 32x32, gate 32x64, up 32x64, down 64x32.
_LINEARS = [(32, 32), (32, 16), (32, 16), (32, 32), (32, 64), (32, 64), (64, 32)] * 2
# Left in float16: embeddings 128x32, lm_head 32x128, 2 norms of 32 per layer, the final norm.
_UNQUANTIZED = 2 * (128 * 32 + 32 * 128 + 2 * 2 * 32 + 32)


def test_gptq_packed_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiny_quantized(
        tmp_path, {"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": False, "sym": True}
    )
    code, out, _ = run(capsys, str(tmp_path), "--config-only", "--json")
    assert code == 0
    packed = json.loads(out)["description"]["memory"]["packed"]
    # qweight in*out/2 bytes, qzeros and scales (fp16) per group of 32 inputs, g_idx int32 per input.
    expected = sum(i * o // 2 + (i // 32) * o // 2 + (i // 32) * o * 2 + 4 * i for i, o in _LINEARS)
    assert packed == {
        "method": "gptq",
        "bits": 4,
        "bytes": expected + _UNQUANTIZED,
        "quantized_linears": 14,
        "unquantized_dtype": "float16",
    }


def test_awq_packed_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiny_quantized(
        tmp_path, {"quant_method": "awq", "bits": 4, "group_size": 32, "zero_point": True, "version": "gemm"}
    )
    code, out, _ = run(capsys, str(tmp_path), "--config-only", "--json")
    packed = json.loads(out)["description"]["memory"]["packed"]
    expected = sum(i * o // 2 + (i // 32) * o // 2 + (i // 32) * o * 2 for i, o in _LINEARS)  # no g_idx
    assert code == 0 and packed["bytes"] == expected + _UNQUANTIZED


def test_bnb_4bit_packed_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiny_quantized(
        tmp_path,
        {
            "quant_method": "bitsandbytes",
            "load_in_4bit": True,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_use_double_quant": False,
        },
    )
    code, out, _ = run(capsys, str(tmp_path), "--config-only", "--json")
    packed = json.loads(out)["description"]["memory"]["packed"]
    # Two 4-bit values a byte and one float32 absmax per 64 values; lm_head stays in float16.
    expected = sum(i * o // 2 + 4 * (i * o // 64) for i, o in _LINEARS)
    assert code == 0 and packed["bytes"] == expected + _UNQUANTIZED and packed["quantized_linears"] == 14


def test_packed_size_of_fused_experts_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_type, fields = PUBLISHED_CONFIGS["Mixtral-8x7B"]
    config = transformers.AutoConfig.for_model(model_type, **fields, dtype="bfloat16")
    config.quantization_config = {"quant_method": "gptq", "bits": 4, "group_size": 128}
    config.save_pretrained(tmp_path)
    code, out, _ = run(capsys, str(tmp_path), "--config-only", "--json")
    packed = json.loads(out)["description"]["memory"]["packed"]
    assert code == 0
    if any(
        p.dim() == 3 for p in build_published("Mixtral-8x7B").parameters()
    ):  # transformers 5 fuses experts
        assert packed["bytes"] is None and "fused 3-D tensors" in packed["refused"]
    else:  # transformers 4.x: one Linear per expert
        assert packed["bytes"] > 0


def test_hub_id_not_cached_is_refused_offline(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("INVARLOCK_ALLOW_NETWORK", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    code, _, err = run(capsys, "some-org/not-cached", "--config-only")
    assert code == 2
    assert "[model_not_found]" in err and "INVARLOCK_ALLOW_NETWORK=1" in err


def test_directory_without_config_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, str(tmp_path), "--config-only")
    assert code == 2 and "has no config.json" in err and "[load_failed]" in err


def test_the_70b_arithmetic_in_scaling_md_is_what_describe_prints(tmp_path: Path) -> None:
    from invarlock.cli.describe import describe_config, describe_text

    directory = write_config("Llama-3.1-70B", tmp_path / "Llama-3.1-70B")
    description = describe_config(str(directory), {})  # what `describe --config-only` prints, built once
    page = (Path(__file__).resolve().parents[3] / "docs" / "scaling.md").read_text()
    printed = "\n".join(describe_text(description, "headline")[1:])
    assert printed in page, printed
    memory = description["memory"]
    assert f"`memory.parameters` {memory['parameters']}" in page
    assert f"`memory.bytes_per_dtype.bfloat16`\n{memory['bytes_per_dtype']['bfloat16']}" in page
