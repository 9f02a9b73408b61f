"""Scoring through llama.cpp: the F32 GGUF's logits match PyTorch's; bad inputs are refused, never crash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from invarlock.adapters import get_adapter
from invarlock.errors import DatasetError, ModelLoadError, TokenizerMismatchError, UnsupportedOperationError

ADAPTER = "gguf"
# With an F32 KV cache, llama.cpp's CPU kernels differ from PyTorch's only in summation order:
# measured at most 2.4e-5 on this model (logits up to ~15). With llama.cpp's default F16 KV cache
# (what llama.cpp runs, and what certify scores) keys and values are rounded to F16: measured at
# most 5.2e-3.
F32_KV_TOLERANCE = 1e-4
F16_KV_TOLERANCE = 2e-2
# F16 weights as well: measured at most ~1e-2.
F16_WEIGHTS_TOLERANCE = 5e-2


def batch(seq_len: int, *, rows: int = 2, seed: int = 0) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, 2048, (rows, seq_len), generator=generator)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


@pytest.fixture(scope="module")
def f32_model(gguf_files: dict[str, Path]) -> Any:
    """The F32 GGUF with an F32 KV cache: nothing rounded anywhere."""
    import llama_cpp

    return get_adapter(ADAPTER).load_model(
        gguf_files["F32"], device="cpu", type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32
    )


def max_difference(model: Any, reference: Any, inputs: dict[str, Any]) -> float:
    logits = get_adapter(ADAPTER).logits(model, inputs)
    with torch.no_grad():
        expected = reference(**inputs).logits
    assert logits.dtype == torch.float32 and logits.device.type == "cpu"
    assert logits.shape == expected.shape == (*inputs["input_ids"].shape, 2048)
    return float((logits - expected).abs().max())


@pytest.mark.parametrize("seq_len", [1, 9, 128, 256])
def test_f32_logits_match_pytorch(f32_model: Any, pytorch_demo: Any, seq_len: int) -> None:
    difference = max_difference(f32_model, pytorch_demo, batch(seq_len))
    assert difference <= F32_KV_TOLERANCE, difference


def test_default_kv_cache_matches_pytorch_within_f16_rounding(
    gguf_files: dict[str, Path], pytorch_demo: Any
) -> None:
    model = get_adapter(ADAPTER).load_model(gguf_files["F32"])
    assert get_adapter(ADAPTER).describe(model)["gguf"]["kv_cache"] == {"type_k": "F16", "type_v": "F16"}
    difference = max_difference(model, pytorch_demo, batch(256, seed=3))
    assert F32_KV_TOLERANCE < difference <= F16_KV_TOLERANCE, difference


def test_f16_weights_match_pytorch_within_rounding(gguf_files: dict[str, Path], pytorch_demo: Any) -> None:
    difference = max_difference(
        get_adapter(ADAPTER).load_model(gguf_files["F16"]), pytorch_demo, batch(64, seed=1)
    )
    assert difference <= F16_WEIGHTS_TOLERANCE, difference


def test_rows_are_independent(f32_model: Any) -> None:
    """Each row starts from an empty context: a row scores the same alone and after another row."""
    adapter = get_adapter(ADAPTER)
    inputs = batch(32, rows=3, seed=2)
    together = adapter.logits(f32_model, inputs)
    alone = adapter.logits(f32_model, {k: v[2:] for k, v in inputs.items()})
    assert torch.equal(together[2], alone[0])


def test_ids_outside_the_vocabulary_are_refused(f32_model: Any) -> None:
    inputs = batch(8)
    inputs["input_ids"][0, 3] = 2048
    with pytest.raises(TokenizerMismatchError, match=r"token ids must lie in 0\.\.2047"):
        get_adapter(ADAPTER).logits(f32_model, inputs)


def test_padding_is_refused(f32_model: Any) -> None:
    inputs = batch(8)
    inputs["attention_mask"][1, 6:] = 0
    with pytest.raises(UnsupportedOperationError, match="attention_mask with padding"):
        get_adapter(ADAPTER).logits(f32_model, inputs)


def test_rows_longer_than_the_context_are_refused(gguf_files: dict[str, Path]) -> None:
    adapter = get_adapter(ADAPTER)
    model = adapter.load_model(gguf_files["Q8_0"])
    # The file's context length (256); certify's window check reads it from model.config.
    assert model.n_ctx == 256 and model.config.max_position_embeddings == 256
    with pytest.raises(DatasetError, match=r"does not fit model-q8_0\.gguf's context of 256"):
        adapter.logits(model, batch(257))


def test_n_ctx_is_what_llama_cpp_made(gguf_files: dict[str, Path]) -> None:
    """llama.cpp rounds a requested context up (to a multiple of 256); the model reports the real one."""
    model = get_adapter(ADAPTER).load_model(gguf_files["Q8_0"], n_ctx=64)
    assert model.n_ctx == model.llama.n_ctx() >= 64
    assert get_adapter(ADAPTER).describe(model)["gguf"]["n_ctx"] == model.n_ctx


def test_threads_option_reaches_llama_cpp(gguf_files: dict[str, Path]) -> None:
    adapter = get_adapter(ADAPTER)
    model = adapter.load_model(gguf_files["Q8_0"], n_threads=1, n_threads_batch=1)
    described = adapter.describe(model)["gguf"]
    assert (described["n_threads"], described["n_threads_batch"]) == (1, 1)


def test_unknown_option_is_refused(gguf_files: dict[str, Path]) -> None:
    with pytest.raises(ModelLoadError, match=r"load option\(s\) n_ctxx, which llama_cpp.Llama does not take"):
        get_adapter(ADAPTER).load_model(gguf_files["Q8_0"], n_ctxx=64)


def test_dtype_is_refused(gguf_files: dict[str, Path]) -> None:
    with pytest.raises(ModelLoadError, match="tensor types are fixed"):
        get_adapter(ADAPTER).load_model(gguf_files["Q8_0"], dtype="float16")


def test_device_without_backend(gguf_files: dict[str, Path]) -> None:
    with pytest.raises(ModelLoadError, match="has no device 'tpu'"):
        get_adapter(ADAPTER).load_model(gguf_files["Q8_0"], device="tpu")


def test_gpu_device_without_gpu_build(gguf_files: dict[str, Path]) -> None:
    import llama_cpp

    if llama_cpp.llama_supports_gpu_offload():
        pytest.skip("this llama-cpp-python build offloads to a GPU; the refusal is for CPU-only builds")
    with pytest.raises(ModelLoadError, match="no GPU offload"):
        get_adapter(ADAPTER).load_model(gguf_files["Q8_0"], device="cuda")


@pytest.mark.gpu
def test_gpu_offload_matches_the_cpu(gguf_files: dict[str, Path], f32_model: Any) -> None:
    import llama_cpp

    if not llama_cpp.llama_supports_gpu_offload():
        pytest.skip("needs llama-cpp-python built with GPU offload (CMAKE_ARGS=-DGGML_CUDA=on)")
    adapter = get_adapter(ADAPTER)
    model = adapter.load_model(
        gguf_files["F32"], device="cuda", type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32
    )
    assert adapter.describe(model)["device"] == "cuda:0"
    inputs = batch(64)
    difference = (adapter.logits(model, inputs) - adapter.logits(f32_model, inputs)).abs().max().item()
    assert difference <= F32_KV_TOLERANCE, difference
