"""Resolution: a .gguf file, or a directory holding exactly one, is gguf's; several are an error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from invarlock.adapters import get_adapter, resolve_adapter
from invarlock.errors import AmbiguousCheckpointError, ModelLoadError, ModelNotFoundError

ADAPTER = "gguf"


def test_a_gguf_file(gguf_files: dict[str, Path]) -> None:
    path = gguf_files["Q8_0"]
    resolution = resolve_adapter(path)
    assert resolution.adapter == ADAPTER
    assert resolution.reason == f"{path} is a GGUF file"


def test_a_directory_holding_one(gguf_files: dict[str, Path]) -> None:
    directory = gguf_files["Q8_0"].parent
    resolution = resolve_adapter(directory)
    assert resolution.adapter == ADAPTER
    assert resolution.reason == f"{directory} holds one GGUF file (model-q8_0.gguf)"


def test_several_are_an_error_listing_them(gguf_files: dict[str, Path], tmp_path: Path) -> None:
    for weight_type in ("Q8_0", "Q4_0"):
        shutil.copy(gguf_files[weight_type], tmp_path)
    with pytest.raises(AmbiguousCheckpointError, match="holds 2 GGUF files") as raised:
        resolve_adapter(tmp_path)
    assert "model-q4_0.gguf, model-q8_0.gguf" in str(raised.value)
    assert "pass the path of the one to load" in str(raised.value)
    assert raised.value.code == "checkpoint_ambiguous"
    with pytest.raises(AmbiguousCheckpointError):
        get_adapter(ADAPTER).load_model(tmp_path)


def test_split_checkpoints_are_refused(gguf_files: dict[str, Path], tmp_path: Path) -> None:
    for shard in (1, 2):
        shutil.copy(gguf_files["Q8_0"], tmp_path / f"model-{shard:05d}-of-00002.gguf")
    with pytest.raises(ModelLoadError, match=r"one of 2 shards of a split GGUF.*llama-gguf-split --merge"):
        resolve_adapter(tmp_path)
    with pytest.raises(ModelLoadError, match="split GGUF"):
        resolve_adapter(tmp_path / "model-00001-of-00002.gguf")


def test_hugging_face_checkpoint_is_left_to_the_hf_plugin(demo_model: Path) -> None:
    assert resolve_adapter(demo_model).adapter == "hf_causal"


def test_directory_without_gguf_is_a_load_error(demo_model: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"holds no \.gguf file; convert the checkpoint"):
        get_adapter(ADAPTER).load_model(demo_model)


def test_a_file_that_is_not_gguf(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a gguf file at all")
    with pytest.raises(ModelLoadError, match="is not a GGUF file"):
        get_adapter(ADAPTER).load_model(fake)
    other = tmp_path / "weights.bin"
    other.write_bytes(b"GGUF")
    with pytest.raises(ModelLoadError, match=r"is not a \.gguf file"):
        get_adapter(ADAPTER).load_model(other)


def test_a_missing_path_or_hub_id(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="loads local files only"):
        get_adapter(ADAPTER).load_model("someone/model-GGUF")


def test_truncated_file_is_refused_before_llama_cpp(gguf_files: dict[str, Path], tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(gguf_files["Q8_0"].read_bytes()[:2000])
    with pytest.raises(ModelLoadError, match="cannot parse"):
        get_adapter(ADAPTER).load_model(truncated)


def test_hf_auto_loads_a_gguf_through_the_gguf_adapter(gguf_files: dict[str, Path]) -> None:
    model = get_adapter("hf_auto").load_model(gguf_files["Q8_0"], device="cpu")
    assert type(model).__name__ == "GGUFModel"
    assert get_adapter("hf_auto").describe(model)["quantization"]["file_type"] == "MOSTLY_Q8_0"


def test_describe_command(gguf_files: dict[str, Path]) -> None:
    import json
    import subprocess
    import sys

    directory = gguf_files["Q4_0"].parent
    result = subprocess.run(
        [sys.executable, "-m", "invarlock.cli", "describe", str(directory), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    printed = json.loads(result.stdout)
    assert printed["adapter"]["name"] == ADAPTER
    assert printed["adapter"]["reason"] == f"{directory} holds one GGUF file (model-q4_0.gguf)"
    assert printed["description"]["quantization"]["tensor_types"] == {"Q4_0": 29, "F32": 9}
