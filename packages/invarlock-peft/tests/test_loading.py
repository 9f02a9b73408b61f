"""hf_peft loading: resolution, the base found and loaded by its own adapter, added tokens, merge."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from invarlock.adapters import get_adapter, resolve_adapter
from invarlock.errors import ModelLoadError, PeftBaseNotFoundError
from invarlock_peft.adapters import is_peft_model


def load_plain(path: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path)


def peft_reference(adapter_dir: Path, base_dir: Path) -> torch.nn.Module:
    """The adapter loaded the way peft documents it (transformers + peft alone), for comparison."""
    from peft import PeftModel

    return PeftModel.from_pretrained(load_plain(base_dir), adapter_dir).eval()


def logits_of(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return get_adapter("hf_peft").logits(model, inputs)


def copy_adapter(source: Path, target: Path, **config_changes: object) -> Path:
    shutil.copytree(source, target)
    config_path = target / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config.update(config_changes)
    config_path.write_text(json.dumps(config))
    return target


def test_an_adapter_directory_resolves_to_hf_peft_with_the_reason(llama_lora: Path, llama_base: Path) -> None:
    resolution = resolve_adapter(llama_lora)
    assert resolution.adapter == "hf_peft"
    assert "adapter_config.json" in resolution.reason and "LORA" in resolution.reason
    assert str(llama_base) in resolution.reason
    assert resolve_adapter(llama_base).adapter == "hf_causal"  # a base is left to invarlock-hf


def test_loads_over_the_base_named_by_the_adapter_like_peft(
    llama_lora: Path, llama_base: Path, inputs: dict[str, torch.Tensor]
) -> None:
    model = get_adapter("hf_peft").load_model(llama_lora, device="cpu")
    assert is_peft_model(model)
    assert not model.training
    got = logits_of(model, inputs)
    assert torch.equal(got, logits_of(peft_reference(llama_lora, llama_base), inputs))
    base_logits = get_adapter("hf_causal").logits(load_plain(llama_base), inputs)
    assert not torch.allclose(got, base_logits, atol=1e-4), "the adapter does not change the outputs"


def test_the_base_option_overrides_the_adapter_config(
    llama_lora: Path, llama_base: Path, tmp_path: Path, inputs: dict[str, torch.Tensor]
) -> None:
    moved = copy_adapter(llama_lora, tmp_path / "lora", base_model_name_or_path=str(tmp_path / "gone"))
    model = get_adapter("hf_peft").load_model(moved, device="cpu", base=str(llama_base))
    reference = peft_reference(llama_lora, llama_base)
    assert torch.equal(logits_of(model, inputs), logits_of(reference, inputs))
    peft_block = get_adapter("hf_peft").describe(model)["peft"]
    assert peft_block["base"] == str(llama_base) and peft_block["base_source"] == "base option"


@pytest.mark.parametrize(
    ("base", "words"),
    [
        ("", ["names no base model", "base_model_name_or_path is empty"]),
        ("/nowhere/llama-base", ["'/nowhere/llama-base'", "does not exist on this machine"]),
        ("some-org/not-cached-model", ["not in the Hugging Face cache", "INVARLOCK_ALLOW_NETWORK=1"]),
    ],
)
def test_a_base_that_cannot_be_found_is_one_sentence_naming_the_field_and_the_option(
    llama_lora: Path, tmp_path: Path, base: str, words: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INVARLOCK_ALLOW_NETWORK", raising=False)
    broken = copy_adapter(llama_lora, tmp_path / "lora", base_model_name_or_path=base)
    with pytest.raises(PeftBaseNotFoundError) as raised:
        get_adapter("hf_peft").load_model(broken, device="cpu")
    message = str(raised.value)
    assert raised.value.code == "peft_base_not_found"
    for word in [*words, "--subject-base", "base="]:
        assert word in message
    if base:
        assert "base_model_name_or_path" in message


def test_a_missing_base_given_as_option_names_the_option(llama_lora: Path) -> None:
    with pytest.raises(PeftBaseNotFoundError, match="passed as the base option"):
        get_adapter("hf_peft").load_model(llama_lora, device="cpu", base="/nowhere/base")


def test_a_directory_without_adapter_config_is_refused(llama_base: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"holds no adapter_config\.json"):
        get_adapter("hf_peft").load_model(llama_base, device="cpu")


@pytest.mark.parametrize("options", [{"snapshot": "partial"}, {"merge": "yes"}])
def test_bad_options_are_refused(llama_lora: Path, options: dict[str, object]) -> None:
    with pytest.raises(ModelLoadError):
        get_adapter("hf_peft").load_model(llama_lora, device="cpu", **options)


def test_added_tokens_grow_the_base_vocabulary_to_the_adapters(
    llama_lora_added_tokens: Path,
    llama_base: Path,
    inputs: dict[str, torch.Tensor],
    added_tokens: tuple[str, ...],
) -> None:
    adapter = get_adapter("hf_peft")
    model = adapter.load_model(llama_lora_added_tokens, device="cpu")
    tokenizer = adapter.load_tokenizer(llama_lora_added_tokens)
    base_vocab = load_plain(llama_base).config.vocab_size
    assert len(tokenizer) == base_vocab + len(added_tokens)
    assert model.get_input_embeddings().weight.shape[0] == base_vocab + len(added_tokens)
    new_ids = torch.tensor([tokenizer.convert_tokens_to_ids(list(added_tokens))])
    got = logits_of(model, {"input_ids": new_ids, "attention_mask": torch.ones_like(new_ids)})
    assert got.shape[-1] == base_vocab + len(added_tokens)
    # The new rows come from the adapter file, not from a random resize: peft's own load agrees.
    from peft import PeftModel

    base = load_plain(llama_base)
    base.resize_token_embeddings(len(tokenizer))
    reference = PeftModel.from_pretrained(base, llama_lora_added_tokens).eval()
    assert torch.equal(logits_of(model, inputs), logits_of(reference, inputs))


def test_the_tokenizer_is_the_bases_when_the_adapter_saved_none(llama_lora: Path, llama_base: Path) -> None:
    tokenizer = get_adapter("hf_peft").load_tokenizer(llama_lora)
    assert tokenizer.get_vocab() == get_adapter("hf_causal").load_tokenizer(llama_base).get_vocab()


def test_merge_gives_the_plain_model_with_the_same_outputs(
    llama_lora: Path, inputs: dict[str, torch.Tensor]
) -> None:
    adapter = get_adapter("hf_peft")
    unmerged = adapter.load_model(llama_lora, device="cpu")
    merged = adapter.load_model(llama_lora, device="cpu", merge=True)
    assert not is_peft_model(merged) and type(merged).__name__ == "LlamaForCausalLM"
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    torch.testing.assert_close(logits_of(merged, inputs), logits_of(unmerged, inputs), rtol=1e-5, atol=1e-5)


def test_qlora_loads_the_4bit_base_with_hf_bnb(
    qlora: Path, llama_nf4_base: Path, inputs: dict[str, torch.Tensor]
) -> None:
    adapter = get_adapter("hf_peft")
    model = adapter.load_model(qlora, device="cpu")
    description = adapter.describe(model)
    assert description["peft"]["base_adapter"] == "hf_bnb"
    assert (
        description["quantization"]["method"] == "bitsandbytes" and description["quantization"]["bits"] == 4
    )
    base_logits = get_adapter("hf_bnb").logits(get_adapter("hf_bnb").load_model(llama_nf4_base), inputs)
    assert not torch.allclose(logits_of(model, inputs), base_logits, atol=1e-4)


def test_hf_auto_loads_an_adapter_directory_with_hf_peft(llama_lora: Path) -> None:
    model = get_adapter("hf_auto").load_model(llama_lora, device="cpu")
    assert is_peft_model(model)
