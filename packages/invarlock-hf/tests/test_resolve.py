"""hf_auto's resolver: the adapter and the reason, from directories, configs, options and names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import transformers

from invarlock.adapters import get_adapter, resolve_adapter
from invarlock.errors import DependencyMissingError
from invarlock.network import ALLOW_NETWORK_ENV
from invarlock.readiness import installed_version
from invarlock_hf.resolve import resolve
from invarlock_hf.testing import CAUSAL_FAMILIES, MASKED_LM_FAMILIES, SEQ2SEQ_FAMILIES, tiny_config

ROLE_ADAPTER = {
    **dict.fromkeys(CAUSAL_FAMILIES, "hf_causal"),
    **dict.fromkeys(MASKED_LM_FAMILIES, "hf_mlm"),
    **dict.fromkeys(SEQ2SEQ_FAMILIES, "hf_seq2seq"),
}


def copy_with_config(source: str, target: Path, **changes: Any) -> Path:
    shutil.copytree(source, target, dirs_exist_ok=True)
    config_path = target / "config.json"
    config = json.loads(config_path.read_text())
    config.update(changes)
    config_path.write_text(json.dumps(config))
    return target


@pytest.mark.parametrize("family", list(ROLE_ADAPTER))
def test_every_family_resolves_to_its_role(family: str, checkpoints: Any) -> None:
    resolution = resolve_adapter(checkpoints.path(family))  # through the hook, as the CLI does
    assert resolution.adapter == ROLE_ADAPTER[family]
    assert "architectures" in resolution.reason


def test_onnx_directory(checkpoints: Any, tmp_path: Path) -> None:
    shutil.copytree(checkpoints.path("gpt2"), tmp_path, dirs_exist_ok=True)
    (tmp_path / "model.onnx").write_bytes(b"")  # the resolver goes by the files a directory holds
    resolution = resolve(str(tmp_path))
    assert resolution.adapter == "hf_causal_onnx"
    assert "model.onnx" in resolution.reason


@pytest.mark.parametrize(
    ("quantization_config", "adapter", "words"),
    [
        (
            {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"},
            "hf_bnb",
            "4-bit",
        ),
        ({"quant_method": "bitsandbytes", "load_in_8bit": True}, "hf_bnb", "8-bit"),
        ({"load_in_8bit": True}, "hf_bnb", "bitsandbytes 8-bit"),  # saved before quant_method existed
        ({"quant_method": "gptq", "bits": 4, "group_size": 128}, "hf_gptq", "gptq 4-bit"),
        ({"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemm"}, "hf_awq", "awq 4-bit"),
    ],
)
def test_quantization_config_chooses_the_quantized_adapter(
    quantization_config: dict[str, Any], adapter: str, words: str, checkpoints: Any, tmp_path: Path
) -> None:
    path = copy_with_config(checkpoints.path("llama"), tmp_path, quantization_config=quantization_config)
    resolution = resolve(str(path))
    assert resolution.adapter == adapter
    assert words in resolution.reason


def test_a_method_without_its_own_adapter_loads_by_role(checkpoints: Any, tmp_path: Path) -> None:
    path = copy_with_config(checkpoints.path("llama"), tmp_path, quantization_config={"quant_method": "fp8"})
    resolution = resolve(str(path))
    assert resolution.adapter == "hf_causal"
    assert "fp8" in resolution.reason


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"load_in_8bit": True}, "bitsandbytes 8-bit"),
        ({"load_in_4bit": True}, "bitsandbytes 4-bit"),
        ({"bnb_4bit_quant_type": "nf4"}, "bitsandbytes 4-bit"),
        ({"quantization_config": transformers.BitsAndBytesConfig(load_in_8bit=True)}, "bitsandbytes 8-bit"),
    ],
)
def test_bitsandbytes_load_options_choose_hf_bnb(
    options: dict[str, Any], words: str, checkpoints: Any
) -> None:
    resolution = resolve(checkpoints.path("llama"), options)
    assert resolution.adapter == "hf_bnb"
    assert words in resolution.reason and "load options" in resolution.reason
    # The same answer through core's resolve_adapter, the one decider: core passes the options on.
    assert resolve_adapter(checkpoints.path("llama"), options) == resolution


def test_hf_auto_loads_through_the_resolved_adapter_without_a_load_hook_of_its_own(
    checkpoints: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import invarlock.adapters
    import invarlock.manager
    import invarlock_hf.plugin

    assert (
        invarlock_hf.plugin.invarlock_load_model(
            adapter="hf_auto", model_id=checkpoints.path("bert"), device="cpu", options={}
        )
        is None
    )
    checked: list[str] = []
    manager = invarlock.manager.get_plugin_manager()
    original = manager.require_ready
    monkeypatch.setattr(manager, "require_ready", lambda name: checked.append(name) or original(name))
    model = get_adapter("hf_auto").load_model(checkpoints.path("bert"), device="cpu")
    assert type(model).__name__ == "BertForMaskedLM"
    assert checked == ["hf_mlm"], "readiness is checked once, for the adapter that loads"
    assert invarlock.adapters.loaded_by(model) == "hf_mlm"


def test_base_model_without_a_head_resolves_by_model_type(tmp_path: Path) -> None:
    transformers.BertModel(tiny_config("bert")).save_pretrained(tmp_path)
    resolution = resolve(str(tmp_path))
    assert resolution.adapter == "hf_mlm"
    assert "'bert'" in resolution.reason


def test_encoder_used_as_decoder_is_causal(tmp_path: Path) -> None:
    transformers.BertLMHeadModel(tiny_config("bert", is_decoder=True)).save_pretrained(tmp_path)
    assert resolve(str(tmp_path)).adapter == "hf_causal"


def test_is_encoder_decoder_decides_without_architectures(checkpoints: Any, tmp_path: Path) -> None:
    path = copy_with_config(
        checkpoints.path("t5"), tmp_path, architectures=None, model_type="some_new_seq2seq"
    )
    resolution = resolve(str(path))
    assert resolution.adapter == "hf_seq2seq"
    assert "is_encoder_decoder" in resolution.reason


def test_directory_without_config_defaults_to_hf_causal(tmp_path: Path) -> None:
    resolution = resolve(str(tmp_path))
    assert resolution.adapter == "hf_causal"
    assert "no config.json" in resolution.reason


@pytest.mark.parametrize(
    ("model_id", "adapter"),
    [
        ("google-t5/t5-small", "hf_seq2seq"),
        ("facebook/bart-large-cnn", "hf_seq2seq"),
        ("Helsinki-NLP/opus-mt-en-de", "hf_seq2seq"),
        ("FacebookAI/roberta-base", "hf_mlm"),
        ("google-bert/bert-base-uncased", "hf_mlm"),
        ("TheBloke/Llama-2-7B-GPTQ", "hf_gptq"),
        ("TheBloke/Mistral-7B-v0.1-AWQ", "hf_awq"),
        ("unsloth/llama-3-8b-bnb-4bit", "hf_bnb"),
        ("optimum/gpt2-onnx", "hf_causal_onnx"),
        ("meta-llama/Llama-2-7b-hf", "hf_causal"),
    ],
)
def test_uncached_hub_id_offline_goes_by_name(model_id: str, adapter: str) -> None:
    resolution = resolve(model_id)
    assert resolution.adapter == adapter
    assert ALLOW_NETWORK_ENV in resolution.reason
    assert "name" in resolution.reason


def test_cached_hub_id_uses_its_cached_config(checkpoints: Any, hub_cache: Any) -> None:
    # The name says nothing (it would default to hf_causal); the cached config says masked LM.
    cache_dir = hub_cache(checkpoints.path("roberta"), "invarlock-tests/some-model")
    resolution = resolve("invarlock-tests/some-model", {"cache_dir": str(cache_dir)})
    assert resolution.adapter == "hf_mlm"
    assert "cached snapshot" in resolution.reason


def test_hf_auto_loads_with_the_resolved_adapter(checkpoints: Any) -> None:
    model = get_adapter("hf_auto").load_model(checkpoints.path("pegasus"), device="cpu")
    assert type(model).__name__ == "PegasusForConditionalGeneration"


def test_hf_auto_names_the_pip_command_of_a_missing_distribution(checkpoints: Any, tmp_path: Path) -> None:
    candidates = {
        "invarlock-gptq": {"quantization_config": {"quant_method": "gptq", "bits": 4}},
        "invarlock-awq": {"quantization_config": {"quant_method": "awq", "bits": 4}},
    }
    missing = [name for name in candidates if installed_version(name) is None]
    if not missing:
        pytest.skip("invarlock-gptq and invarlock-awq are both installed here; the nox session has neither")
    path = copy_with_config(checkpoints.path("llama"), tmp_path, **candidates[missing[0]])
    with pytest.raises(DependencyMissingError, match=f"pip install {missing[0]}"):
        get_adapter("hf_auto").load_model(path, device="cpu")


@pytest.mark.parametrize("value", ["gptq", 8, ["bits", 4]])
def test_a_quantization_config_option_that_is_not_a_config_is_one_error(value: Any, checkpoints: Any) -> None:
    from invarlock.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        resolve_adapter(checkpoints.path("llama"), {"quantization_config": value})
    assert caught.value.code == "config_invalid"
    assert str(caught.value) == (
        "the load option quantization_config must be a quantization config (BitsAndBytesConfig, "
        f"GPTQConfig...) or a mapping of its settings, got {value!r}"
    )
