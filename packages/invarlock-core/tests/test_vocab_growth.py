"""A vocabulary grown on purpose (an adapter that added tokens): the describe contract's optional
``vocab_growth`` key, and certify accepting exactly the declared growth and nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from invarlock.certification import tokenizers
from invarlock.certification.evaluation.invariants import structure_check
from invarlock.description import vocab_growth_problems
from invarlock.errors import TokenizerMismatchError


def description(vocab_size: int = 100, **extra: Any) -> dict[str, Any]:
    return {
        "model_type": "llama",
        "role": "causal",
        "n_layer": 2,
        "heads_per_layer": [4, 4],
        "kv_heads_per_layer": [2, 2],
        "mlp_dims": [64, 64],
        "hidden_size": 32,
        "vocab_size": vocab_size,
        "encoder_decoder": None,
        "moe": None,
        **extra,
    }


def growth(base: int = 100, grown: int = 102, tokens: list[str] | None = None) -> dict[str, Any]:
    return {"base_vocab_size": base, "vocab_size": grown, "added_tokens": tokens}


class Vocabulary:
    """The one tokenizer method these checks read (``get_vocab``), over a fixed vocabulary."""

    def __init__(self, vocab: dict[str, int]) -> None:
        self.vocab = vocab

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab)


BASE = Vocabulary({f"w{i}": i for i in range(100)})


def test_the_optional_key_is_checked_when_present() -> None:
    assert vocab_growth_problems(description()) == []
    assert vocab_growth_problems(description(102, vocab_growth=growth(tokens=["<a>", "<b>"]))) == []
    assert vocab_growth_problems(description(102, vocab_growth=growth(grown=101)))
    assert vocab_growth_problems(description(102, vocab_growth=growth(base=102)))
    assert vocab_growth_problems(description(102, vocab_growth=growth(tokens=["<a>", "<b>", "<c>"])))
    assert vocab_growth_problems(description(102, vocab_growth=[100, 102]))


def test_structure_accepts_exactly_the_declared_growth() -> None:
    accepted = structure_check(description(), description(102, vocab_growth=growth(tokens=["<a>", "<b>"])))
    assert accepted.passed and "grew from 100 to 102 as the subject declares" in accepted.detail
    assert not structure_check(description(), description(102)).passed  # undeclared
    other_step = structure_check(description(), description(102, vocab_growth=growth(base=101)))
    assert not other_step.passed and "another step" in other_step.detail
    # The declaration covers the vocabulary only: any other structural difference still fails.
    broken = description(102, vocab_growth=growth(), hidden_size=64)
    assert not structure_check(description(), broken).passed


def test_appended_tokens_must_keep_every_baseline_id() -> None:
    appended = Vocabulary({**BASE.vocab, "<b>": 101, "<a>": 100})
    assert tokenizers.appended_tokens(BASE, appended) == ["<a>", "<b>"]
    assert tokenizers.appended_tokens(BASE, BASE) == []
    moved = Vocabulary({**{f"w{i}": i + 1 for i in range(100)}, "<a>": 0})
    assert tokenizers.appended_tokens(BASE, moved) == []
    inserted = Vocabulary({**{k: v for k, v in BASE.vocab.items() if v != 99}, "<a>": 99, "w99": 100})
    assert tokenizers.appended_tokens(BASE, inserted) == []


def test_the_description_must_declare_the_appended_tokens() -> None:
    tokenizers.check_declared(["<a>", "<b>"], description(102, vocab_growth=growth(tokens=["<a>", "<b>"])))
    tokenizers.check_declared(["<a>", "<b>"], description(102, vocab_growth=growth(tokens=None)))
    for wrong in (description(102), description(103, vocab_growth=growth(grown=103))):
        with pytest.raises(TokenizerMismatchError, match="declares exactly that growth"):
            tokenizers.check_declared(["<a>", "<b>"], wrong)
    with pytest.raises(TokenizerMismatchError):
        tokenizers.check_declared(
            ["<a>", "<b>"], description(102, vocab_growth=growth(tokens=["<x>", "<y>"]))
        )
