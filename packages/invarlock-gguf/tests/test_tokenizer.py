"""The GGUF vocabulary vs. the baseline tokenizer: identical → shared ids; different → tokenizer_mismatch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from invarlock.adapters import get_adapter
from invarlock.certification.tokenizers import PROBE_TEXT
from invarlock.certification.tokenizers import compare as compare_tokenizers
from invarlock.certification.tokenizers import fingerprint as tokenizer_fingerprint
from invarlock.errors import TokenizerMismatchError

ADAPTER = "gguf"


@pytest.fixture(scope="module")
def baseline_tokenizer(demo_model: Path) -> Any:
    return get_adapter("hf_causal").load_tokenizer(demo_model)


def test_vocabulary_is_the_baseline_vocabulary(gguf_files: dict[str, Path], baseline_tokenizer: Any) -> None:
    vocabulary = get_adapter(ADAPTER).load_tokenizer(gguf_files["Q8_0"])
    assert type(vocabulary).__name__ == "GGUFVocabulary"
    assert vocabulary.get_vocab() == baseline_tokenizer.get_vocab()
    assert (vocabulary.bos_token_id, vocabulary.eos_token_id) == (0, 0)


def test_llama_cpp_splits_text_as_the_baseline_does(
    gguf_files: dict[str, Path], baseline_tokenizer: Any, demo_model: Path
) -> None:
    vocabulary = get_adapter(ADAPTER).load_tokenizer(gguf_files["Q8_0"])
    texts = [PROBE_TEXT, "The quick brown fox jumps over the lazy dog.\n\n  Twice,  with   spaces!"]
    for text in texts:
        assert (
            vocabulary(text, add_special_tokens=False)["input_ids"]
            == baseline_tokenizer(text, add_special_tokens=False)["input_ids"]
        )
    batch = vocabulary(texts, add_special_tokens=False)["input_ids"]
    assert batch == [baseline_tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def test_identical_fingerprints_pass_the_check(gguf_files: dict[str, Path], baseline_tokenizer: Any) -> None:
    vocabulary = get_adapter(ADAPTER).load_tokenizer(gguf_files["Q4_0"])
    baseline, subject = tokenizer_fingerprint(baseline_tokenizer), tokenizer_fingerprint(vocabulary)
    assert {k: v for k, v in subject.items() if k != "class"} == {
        k: v for k, v in baseline.items() if k != "class"
    }
    compare_tokenizers(baseline, subject)


def test_a_different_vocabulary_is_a_mismatch(
    demo_model: Path, baseline_tokenizer: Any, tmp_path: Path
) -> None:
    from gguf_export import write_gguf

    tokens = [
        t
        for t, _ in sorted(
            json.loads((demo_model / "tokenizer.json").read_text())["model"]["vocab"].items(),
            key=lambda item: item[1],
        )
    ]
    tokens[100], tokens[101] = tokens[101], tokens[100]
    path = write_gguf(demo_model, tmp_path / "swapped.gguf", "Q8_0", tokens=tokens)
    vocabulary = get_adapter(ADAPTER).load_tokenizer(path)
    with pytest.raises(TokenizerMismatchError, match="vocabularies differ") as raised:
        compare_tokenizers(tokenizer_fingerprint(baseline_tokenizer), tokenizer_fingerprint(vocabulary))
    assert raised.value.code == "tokenizer_mismatch"
    # Baseline first: id 100 is the token now at 101 in the baseline, and tokens[100] in the GGUF.
    assert f"2 ids differ, first id 100: {tokens[101]!r} vs {tokens[100]!r}" in str(raised.value)


def test_converter_padding_rows_are_not_tokens(gguf_files: dict[str, Path]) -> None:
    """convert_hf_to_gguf.py writes "[PAD<id>]" (type UNUSED) for embedding rows without a token."""
    from invarlock_gguf.tokenizer import GGUFVocabulary

    vocabulary = get_adapter(ADAPTER).load_tokenizer(gguf_files["Q8_0"])
    metadata = vocabulary.metadata
    padded = type(metadata)(
        **{
            **metadata.__dict__,
            "tokens": (*metadata.tokens, "[PAD2048]", "[PAD2049]"),
            "token_types": (*metadata.token_types, 5, 5),
        }
    )
    assert GGUFVocabulary(padded, None).get_vocab() == vocabulary.get_vocab()
    # The same text at another id, or not marked UNUSED, is a real token.
    real = type(metadata)(
        **{
            **metadata.__dict__,
            "tokens": (*metadata.tokens, "[PAD7]"),
            "token_types": (*metadata.token_types, 5),
        }
    )
    assert GGUFVocabulary(real, None).get_vocab()["[PAD7]"] == 2048


def test_padded_embedding_rows_match_the_baseline_tokenizer(other_checkpoint: Path, other_gguf: Path) -> None:
    """A GGUF whose embedding is longer than its tokenizer still shares the baseline's vocabulary."""
    vocabulary = get_adapter(ADAPTER).load_tokenizer(other_gguf)
    assert len(vocabulary.metadata.tokens) == 2080 and vocabulary.metadata.tokens[-1] == "[PAD2079]"
    baseline = get_adapter("hf_causal").load_tokenizer(other_checkpoint)
    compare_tokenizers(tokenizer_fingerprint(baseline), tokenizer_fingerprint(vocabulary))
