"""Loading: dtype names, devices, pass-through of from_pretrained arguments, errors, offline rules."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import huggingface_hub.constants
import pytest
import torch

from invarlock.adapters import get_adapter
from invarlock.errors import ModelLoadError, ModelNotFoundError, NetworkDisabledError
from invarlock.network import ALLOW_NETWORK_ENV
from invarlock_hf.loading import from_pretrained_kwargs, parse_dtype, pick_device
from invarlock_hf.testing import tiny_model


def parameter_dtypes(model: Any) -> set[torch.dtype]:
    return {p.dtype for p in model.parameters()}


def parameter_devices(model: Any) -> set[str]:
    return {p.device.type for p in model.parameters()}


def file_digests(directory: str | Path) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(Path(directory).iterdir())
    }


# -- dtype -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "dtype"),
    [
        ("float16", torch.float16),
        ("fp16", torch.float16),
        ("half", torch.float16),
        ("bfloat16", torch.bfloat16),
        ("bf16", torch.bfloat16),
        ("float32", torch.float32),
        ("fp32", torch.float32),
        ("FP16", torch.float16),
        ("torch.bfloat16", torch.bfloat16),
        (torch.float16, torch.float16),
    ],
)
def test_dtype_names(name: Any, dtype: torch.dtype) -> None:
    assert parse_dtype(name) is dtype


def test_dtype_auto_and_none() -> None:
    assert parse_dtype("auto") == "auto"
    assert parse_dtype(None) is None


def test_unknown_dtype_name_is_refused() -> None:
    with pytest.raises(ModelLoadError, match="float16"):
        parse_dtype("float12")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"dtype": "bf16"}, torch.bfloat16),
        ({"torch_dtype": "fp16"}, torch.float16),
        ({"dtype": "half"}, torch.float16),
    ],
)
def test_dtype_option_loads_in_that_dtype(
    options: dict[str, Any], expected: torch.dtype, checkpoints: Any
) -> None:
    model = get_adapter("hf_causal").load_model(checkpoints.path("llama"), device="cpu", **options)
    assert parameter_dtypes(model) == {expected}


def test_dtype_auto_keeps_the_checkpoint_dtype(tmp_path: Path) -> None:
    tiny_model("llama").to(torch.bfloat16).save_pretrained(tmp_path)
    model = get_adapter("hf_causal").load_model(tmp_path, device="cpu", dtype="auto")
    assert parameter_dtypes(model) == {torch.bfloat16}


def test_dtype_and_torch_dtype_that_disagree_are_refused(checkpoints: Any) -> None:
    with pytest.raises(ModelLoadError, match="disagree"):
        get_adapter("hf_causal").load_model(checkpoints.path("llama"), dtype="fp16", torch_dtype="bf16")


def test_from_pretrained_gets_dtype_under_its_current_name() -> None:
    kwargs = from_pretrained_kwargs({"torch_dtype": "bf16", "revision": "main"})
    assert kwargs == {"dtype": torch.bfloat16, "revision": "main", "trust_remote_code": False}


# -- devices ---------------------------------------------------------------------------------------


def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("auto") == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("auto") == "cpu"
    assert pick_device("cuda:1") == "cuda:1"


def test_device_moves_the_model(checkpoints: Any) -> None:
    # "meta" is a device every machine has: the weights really move there.
    model = get_adapter("hf_causal").load_model(checkpoints.path("llama"), device="meta")
    assert parameter_devices(model) == {"meta"}


def test_with_a_device_map_the_model_is_never_moved(checkpoints: Any) -> None:
    model = get_adapter("hf_causal").load_model(checkpoints.path("llama"), device="meta", device_map="cpu")
    assert parameter_devices(model) == {"cpu"}


def test_a_device_that_does_not_exist_is_a_load_error(checkpoints: Any) -> None:
    with pytest.raises(ModelLoadError, match="could not be moved to nonsense"):
        get_adapter("hf_causal").load_model(checkpoints.path("llama"), device="nonsense")


# -- pass-through and trust_remote_code ------------------------------------------------------------


def test_other_from_pretrained_arguments_pass_through(checkpoints: Any) -> None:
    adapter = get_adapter("hf_causal")
    model = adapter.load_model(
        checkpoints.path("llama"), device="cpu", attn_implementation="eager", num_hidden_layers=1
    )
    assert model.config._attn_implementation == "eager"
    assert len(model.model.layers) == 1
    assert adapter.describe(model)["n_layer"] == 1


def test_remote_code_is_refused_unless_trusted(remote_code_checkpoint: str) -> None:
    adapter = get_adapter("hf_causal")
    with pytest.raises(ModelLoadError, match="trust_remote_code"):
        adapter.load_model(remote_code_checkpoint, device="cpu")
    model = adapter.load_model(remote_code_checkpoint, device="cpu", trust_remote_code=True)
    assert type(model).__name__ == "TinyForCausalLM"


# -- errors ----------------------------------------------------------------------------------------


def test_wrong_head_class_fails_with_transformers_message(checkpoints: Any) -> None:
    path = checkpoints.path("bert")
    before = file_digests(path)
    with pytest.raises(ModelLoadError) as caught:
        get_adapter("hf_seq2seq").load_model(path, device="cpu")
    message = str(caught.value)
    assert "AutoModelForSeq2SeqLM" in message
    assert str(caught.value.__cause__) in message  # transformers' own words, inside ours
    assert caught.value.code == "load_failed"
    assert file_digests(path) == before


def test_a_failing_argument_is_reported_not_dropped(checkpoints: Any) -> None:
    """flash_attention_2 is not installed here: the load fails; it is never retried without it."""
    with pytest.raises(ModelLoadError, match=r"[Ff]lash"):
        get_adapter("hf_causal").load_model(
            checkpoints.path("llama"), device="cpu", attn_implementation="flash_attention_2"
        )


def test_truncated_weights_fail_cleanly(checkpoints: Any, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(checkpoints.path("gpt2"), tmp_path, dirs_exist_ok=True)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match=str(tmp_path)):
        get_adapter("hf_causal").load_model(tmp_path, device="cpu")


# -- offline rules ---------------------------------------------------------------------------------


def test_uncached_hub_id_offline_names_the_switch() -> None:
    with pytest.raises(NetworkDisabledError) as caught:
        get_adapter("hf_causal").load_model("invarlock-tests/not-cached-anywhere", device="cpu")
    assert f"{ALLOW_NETWORK_ENV}=1" in str(caught.value)
    assert caught.value.code == "network_disabled"


@pytest.mark.parametrize("missing", ["./no/such/checkpoint/dir", "/no/such/checkpoint", "~/no/such/dir"])
@pytest.mark.parametrize("call", ["load_model", "load_tokenizer"])
def test_missing_local_path_is_not_found_not_a_network_error(missing: str, call: str) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        getattr(get_adapter("hf_causal"), call)(missing)
    assert caught.value.code == "model_not_found"
    assert str(caught.value) == (
        f"model path {missing} does not exist; pass an existing checkpoint directory or a hub id"
    )


def test_network_allowed_but_hub_offline_names_hf_hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_NETWORK_ENV, "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(NetworkDisabledError, match="HF_HUB_OFFLINE"):
        get_adapter("hf_causal").load_model("invarlock-tests/not-cached-anywhere", device="cpu")


def test_cached_hub_id_loads_offline(checkpoints: Any, hub_cache: Any) -> None:
    cache_dir = hub_cache(checkpoints.path("gpt2"), "invarlock-tests/tiny-gpt2")
    adapter = get_adapter("hf_auto")
    model = adapter.load_model("invarlock-tests/tiny-gpt2", device="cpu", cache_dir=str(cache_dir))
    assert adapter.describe(model)["model_type"] == "gpt2"


# -- tokenizers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("adapter_name", ["hf_causal", "hf_auto"])
def test_tokenizer_loads_from_the_checkpoint(adapter_name: str, gpt2_with_tokenizer: str) -> None:
    tokenizer = get_adapter(adapter_name).load_tokenizer(gpt2_with_tokenizer)
    ids = tokenizer("w1 w2 w3")["input_ids"]
    assert len(ids) == 3
    assert tokenizer.decode(ids) == "w1 w2 w3"


def test_tokenizer_of_uncached_hub_id_offline_names_the_switch() -> None:
    with pytest.raises(NetworkDisabledError, match=f"{ALLOW_NETWORK_ENV}=1"):
        get_adapter("hf_mlm").load_tokenizer("invarlock-tests/not-cached-anywhere")
