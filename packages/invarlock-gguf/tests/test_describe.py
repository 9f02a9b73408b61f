"""describe from GGUF metadata alone: the contract, agreement with the baseline, the quantization block."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from invarlock.adapters import get_adapter
from invarlock.description import STRUCTURAL_KEYS, validate_description
from invarlock.errors import ModelLoadError
from invarlock_gguf.describe import gguf_structure, quantization_block, tied_tensors
from invarlock_gguf.metadata import read_metadata

ADAPTER = "gguf"


@pytest.fixture(scope="module")
def baseline_description(demo_model: Path) -> dict[str, Any]:
    hf = get_adapter("hf_causal")
    return dict(hf.describe(hf.load_model(demo_model, device="cpu")))


@pytest.mark.parametrize("weight_type", ["F32", "F16", "Q8_0", "Q4_0"])
def test_metadata_structure_agrees_with_the_baseline(
    gguf_files: dict[str, Path], baseline_description: dict[str, Any], weight_type: str
) -> None:
    metadata = read_metadata(gguf_files[weight_type])
    structure = gguf_structure(metadata)
    assert {k: structure[k] for k in STRUCTURAL_KEYS} == {k: baseline_description[k] for k in STRUCTURAL_KEYS}
    assert sum(metadata.tensor_elements.values()) == baseline_description["n_params"]
    assert (
        tied_tensors(metadata)
        == baseline_description["tying"]
        == {"lm_head.weight": "model.embed_tokens.weight"}
    )


@pytest.mark.parametrize(
    ("weight_type", "dtype", "quantization"),
    [
        ("F32", "float32", None),
        ("F16", "float16", None),
        (
            "Q8_0",
            "q8_0",
            {"method": "gguf", "file_type": "MOSTLY_Q8_0", "tensor_types": {"Q8_0": 29, "F32": 9}},
        ),
        (
            "Q4_0",
            "q4_0",
            {"method": "gguf", "file_type": "MOSTLY_Q4_0", "tensor_types": {"Q4_0": 29, "F32": 9}},
        ),
    ],
)
def test_loaded_description(
    gguf_files: dict[str, Path], weight_type: str, dtype: str, quantization: Any
) -> None:
    adapter = get_adapter(ADAPTER)
    description = adapter.describe(adapter.load_model(gguf_files[weight_type], device="cpu"))
    validate_description(description, adapter=ADAPTER)
    assert description["dtype"] == dtype
    assert description["quantization"] == quantization
    assert description["model_class"] == "GGUFModel"
    assert description["device"] == "cpu" and description["device_map"] is None
    block = description["gguf"]
    path = gguf_files[weight_type]
    assert block["file"] == path.name and block["size_bytes"] == path.stat().st_size
    assert block["architecture"] == "llama" and block["context_length"] == 256 and block["n_ctx"] == 256
    assert block["tokenizer"] == {"model": "gpt2", "pre": "gpt-2", "tokens": 2048, "merges": 1791}
    assert block["file_type"] == {"F32": "ALL_F32", "F16": "MOSTLY_F16"}.get(
        weight_type, f"MOSTLY_{weight_type}"
    )
    assert sum(block["tensor_types"].values()) == 38
    assert isinstance(block["n_threads"], int) and block["llama_cpp_python"]


def test_untied_output_is_not_reported_tied(other_checkpoint: Path, tmp_path: Path) -> None:
    """A checkpoint with its own lm_head writes output.weight, and describes as untied (as its baseline)."""
    import torch
    from gguf_export import write_gguf
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(other_checkpoint, tie_word_embeddings=False)
    with torch.no_grad():
        model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone() + 0.01)
    model.config.tie_word_embeddings = False
    model.save_pretrained(tmp_path / "untied")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / "untied" / name).write_bytes((other_checkpoint / name).read_bytes())
    metadata = read_metadata(write_gguf(tmp_path / "untied", tmp_path / "untied.gguf", "F32"))
    assert "output.weight" in metadata.tensor_names
    assert tied_tensors(metadata) == {}


def _header_only_gguf(path: Path, arch: str, values: dict[str, Any]) -> Path:
    """A GGUF holding metadata and one small tensor, for architectures there is no checkpoint of here."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), arch)
    for key, value in values.items():
        if isinstance(value, list):
            writer.add_array(f"{arch}.{key}", value)
        else:
            writer.add_uint32(f"{arch}.{key}", value)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_mixture_of_experts_from_metadata(tmp_path: Path) -> None:
    values = {
        "block_count": 3,
        "embedding_length": 64,
        "feed_forward_length": 256,
        "attention.head_count": 8,
        "attention.head_count_kv": 2,
        "expert_count": 16,
        "expert_used_count": 2,
        "expert_feed_forward_length": 32,
        "leading_dense_block_count": 1,
        "vocab_size": 8,
    }
    structure = gguf_structure(read_metadata(_header_only_gguf(tmp_path / "moe.gguf", "deepseek2", values)))
    assert structure["model_type"] == "deepseek2"
    assert structure["moe"] == {"num_experts": 16, "experts_per_token": 2, "expert_mlp_dim": 32}
    assert structure["mlp_dims"] == [256, 32, 32]
    expert_layer = {**structure["moe"], "shared_expert_mlp_dim": None}
    assert structure["moe_per_layer"] == [None, expert_layer, expert_layer]
    assert structure["layer_types"] == ["full_attention"] * 3
    assert structure["heads_per_layer"] == [8, 8, 8] and structure["kv_heads_per_layer"] == [2, 2, 2]


def test_per_layer_head_counts(tmp_path: Path) -> None:
    values = {
        "block_count": 3,
        "embedding_length": 64,
        "feed_forward_length": [128, 192, 256],
        "attention.head_count": [4, 6, 8],
        "attention.head_count_kv": [1, 2, 2],
    }
    structure = gguf_structure(read_metadata(_header_only_gguf(tmp_path / "elm.gguf", "openelm", values)))
    assert structure["heads_per_layer"] == [4, 6, 8]
    assert structure["kv_heads_per_layer"] == [1, 2, 2]
    assert structure["mlp_dims"] == [128, 192, 256]
    assert structure["moe"] is None and structure["vocab_size"] == 0


def test_quantization_block_counts_every_tensor_type(tmp_path: Path) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "mixed.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_file_type(int(gguf.LlamaFileType.MOSTLY_Q4_0))
    data = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    for i in range(3):
        writer.add_tensor(
            f"q4.{i}",
            gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q4_0),
            raw_dtype=gguf.GGMLQuantizationType.Q4_0,
        )
    writer.add_tensor(
        "q8",
        gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0),
        raw_dtype=gguf.GGMLQuantizationType.Q8_0,
    )
    writer.add_tensor("norm", np.ones(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert quantization_block(read_metadata(path)) == {
        "method": "gguf",
        "file_type": "MOSTLY_Q4_0",
        "tensor_types": {"Q4_0": 3, "F32": 1, "Q8_0": 1},
    }


def test_missing_structure_keys_are_refused(tmp_path: Path) -> None:
    metadata = read_metadata(_header_only_gguf(tmp_path / "bare.gguf", "llama", {"block_count": 2}))
    with pytest.raises(ModelLoadError, match=r"lacks llama\.block_count, llama\.embedding_length"):
        gguf_structure(metadata)


def test_sliding_window_layers_from_metadata(tmp_path: Path) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "swa.gguf"
    writer = gguf.GGUFWriter(str(path), "gemma3")
    for key, value in {
        "block_count": 3,
        "embedding_length": 64,
        "attention.head_count": 4,
        "attention.sliding_window": 512,
    }.items():
        writer.add_uint32(f"gemma3.{key}", value)
    writer.add_array("gemma3.attention.sliding_window_pattern", [True, True, False])
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    structure = gguf_structure(read_metadata(path))
    assert structure["layer_types"] == ["sliding_attention", "sliding_attention", "full_attention"]
    assert "unresolved" not in structure


def test_config_only_describe_reads_the_file_alone(gguf_files: dict[str, Path]) -> None:
    import json
    import subprocess
    import sys

    path = gguf_files["Q8_0"]
    result = subprocess.run(
        [sys.executable, "-m", "invarlock.cli", "describe", str(path), "--config-only", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    description = json.loads(result.stdout)["description"]
    validate_description(description, adapter=ADAPTER)
    assert description["quantization"]["tensor_types"] == {"Q8_0": 29, "F32": 9}
    memory = description["memory"]
    assert memory["parameters"] == description["n_params"] == 1049728
    assert 0 < memory["packed"]["bytes"] < path.stat().st_size < memory["bytes_per_dtype"]["float32"]
