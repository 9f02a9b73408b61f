"""Loading Optimum exports through hf_causal_onnx and scoring them like the PyTorch model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from invarlock.adapters import Adapter, get_adapter, resolve_adapter
from invarlock.errors import ModelLoadError, NetworkDisabledError

ADAPTER = "hf_causal_onnx"
TOLERANCE = 1e-4


@pytest.fixture
def adapter() -> Adapter:
    return get_adapter(ADAPTER)


def assert_logits_match(adapter: Any, model: Any, reference: Any, token_batch: Any, seq_len: int) -> None:
    inputs = token_batch(seq_len)
    logits = adapter.logits(model, inputs)
    with torch.no_grad():
        expected = reference(**inputs).logits
    assert logits.device.type == "cpu" and logits.dtype == torch.float32
    assert logits.shape == expected.shape == (2, seq_len, reference.config.vocab_size)
    assert torch.allclose(logits, expected, atol=TOLERANCE, rtol=0), (logits - expected).abs().max()


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("seq_len", [7, 33])
def test_logits_match_pytorch(
    adapter: Any, exported: Any, pytorch_models: Any, token_batch: Any, family: str, seq_len: int
) -> None:
    model = adapter.load_model(exported[family].onnx, device="cpu")
    assert type(model).__name__ == "ORTModelForCausalLM"
    assert model.providers[0] == "CPUExecutionProvider"
    assert_logits_match(adapter, model, pytorch_models[family], token_batch, seq_len)


def test_export_on_the_fly_from_local_checkpoint(
    adapter: Any, exported: Any, pytorch_models: Any, token_batch: Any
) -> None:
    checkpoint = exported["llama"].checkpoint
    before = sorted(os.listdir(checkpoint))
    model = adapter.load_model(checkpoint, export=True)
    assert Path(model.path).name == "model.onnx"
    assert sorted(os.listdir(checkpoint)) == before, "exporting wrote into the user's checkpoint"
    for seq_len in (5, 19):
        assert_logits_match(adapter, model, pytorch_models["llama"], token_batch, seq_len)


def test_export_without_past_key_values(
    adapter: Any, gpt2_without_past: Any, pytorch_models: Any, token_batch: Any
) -> None:
    model = adapter.load_model(gpt2_without_past)
    assert_logits_match(adapter, model, pytorch_models["gpt2"], token_batch, 11)


@pytest.mark.parametrize(
    ("use_cache", "file_name"), [(True, "decoder_with_past_model.onnx"), (False, "decoder_model.onnx")]
)
def test_legacy_decoder_layout(
    adapter: Any,
    gpt2_legacy_layout: Any,
    pytorch_models: Any,
    token_batch: Any,
    use_cache: bool,
    file_name: str,
) -> None:
    model = adapter.load_model(gpt2_legacy_layout, use_cache=use_cache)
    assert Path(model.path).name == file_name
    assert_logits_match(adapter, model, pytorch_models["gpt2"], token_batch, 9)


def test_tokenizer_saved_by_the_export_loads(adapter: Any, exported: Any) -> None:
    tokenizer = adapter.load_tokenizer(exported["gpt2"].onnx)
    ids = tokenizer("w1 w2 w3")["input_ids"]
    assert len(ids) == 3 and tokenizer.decode(ids) == "w1 w2 w3"


def test_hf_auto_picks_onnx_adapter_for_an_onnx_directory(exported: Any) -> None:
    directory = exported["gpt2"].onnx
    assert resolve_adapter(directory).adapter == ADAPTER
    auto = get_adapter("hf_auto")
    model = auto.load_model(directory, device="cpu")
    assert type(model).__name__ == "ORTModelForCausalLM"
    assert auto.describe(model)["model_type"] == "gpt2"


def test_a_path_to_the_onnx_file_loads_its_directory(exported: Any) -> None:
    model_file = exported["gpt2"].onnx / "model.onnx"
    assert resolve_adapter(model_file).adapter == ADAPTER
    model = get_adapter("hf_auto").load_model(model_file, device="cpu")
    assert Path(model.path) == model_file
    assert get_adapter(ADAPTER).describe(model)["onnx"]["file"] == "model.onnx"


def test_pytorch_checkpoint_is_not_resolved_to_onnx(exported: Any) -> None:
    assert resolve_adapter(exported["gpt2"].checkpoint).adapter == "hf_causal"


def test_scoring_path_gives_the_pytorch_losses(adapter: Any, exported: Any) -> None:
    from invarlock.certification.evaluation.scoring import Framing, score_windows
    from invarlock.certification.evaluation.windows import Window

    windows = [Window(i * 16, tuple((7 * i + 3 * j) % 128 for j in range(16))) for i in range(5)]
    framing = Framing("causal")
    onnx_scores = score_windows(
        adapter, adapter.load_model(exported["gpt2"].onnx), windows, framing, batch_size=2
    )
    hf = get_adapter("hf_causal")
    torch_scores = score_windows(
        hf, hf.load_model(exported["gpt2"].checkpoint, device="cpu"), windows, framing
    )
    assert [s.window_id for s in onnx_scores] == [w.window_id for w in windows]
    for ours, theirs in zip(onnx_scores, torch_scores, strict=True):
        assert ours.window_id == theirs.window_id
        assert ours.nll == pytest.approx(theirs.nll, abs=1e-3)


# -- errors a user can cause: one sentence, files untouched ----------------------------------------


def test_directory_without_onnx_file(adapter: Any, exported: Any) -> None:
    checkpoint = exported["gpt2"].checkpoint
    before = sorted(os.listdir(checkpoint))
    with pytest.raises(ModelLoadError, match=r"holds no ONNX file.*export=True"):
        adapter.load_model(checkpoint)
    assert sorted(os.listdir(checkpoint)) == before


def test_onnx_file_without_config(adapter: Any, exported: Any, tmp_path: Path) -> None:
    shutil.copy(exported["gpt2"].onnx / "model.onnx", tmp_path / "model.onnx")
    with pytest.raises(ModelLoadError, match=r"has model\.onnx but no config\.json"):
        adapter.load_model(tmp_path)
    assert os.listdir(tmp_path) == ["model.onnx"]


def test_export_needs_a_checkpoint(adapter: Any, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no config\.json, so there is no PyTorch checkpoint to export"):
        adapter.load_model(tmp_path, export=True)


def test_unavailable_provider_lists_the_available_ones(adapter: Any, exported: Any) -> None:
    import onnxruntime

    missing = "NoSuchExecutionProvider"
    with pytest.raises(ModelLoadError, match=f"{missing} is not available") as raised:
        adapter.load_model(exported["gpt2"].onnx, provider=missing)
    for provider in onnxruntime.get_available_providers():
        assert provider in str(raised.value)


def test_device_without_execution_provider(adapter: Any, exported: Any) -> None:
    with pytest.raises(ModelLoadError, match="has no device 'mps'"):
        adapter.load_model(exported["gpt2"].onnx, device="mps")


def test_hub_id_offline_is_a_network_error(adapter: Adapter) -> None:
    with pytest.raises(NetworkDisabledError, match="network access is off"):
        adapter.load_model("invarlock-tests/no-such-onnx-model")


def test_unknown_option_is_a_load_error(adapter: Any, exported: Any) -> None:
    with pytest.raises(ModelLoadError, match="could not load") as raised:
        adapter.load_model(exported["gpt2"].onnx, no_such_option=1)
    assert isinstance(raised.value.__cause__, TypeError)


@pytest.mark.gpu
def test_cuda_provider_matches_pytorch(exported: Any, pytorch_models: Any, token_batch: Any) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("needs onnxruntime-gpu with the CUDA execution provider (this build has none)")
    adapter = get_adapter(ADAPTER)
    model = adapter.load_model(exported["gpt2"].onnx, device="cuda")
    assert model.providers[0] == "CUDAExecutionProvider"
    assert adapter.describe(model)["device"] == "cuda:0"
    assert_logits_match(adapter, model, pytorch_models["gpt2"], token_batch, 13)
