"""Both sides must share one tokenizer: a fingerprint of each, compared before anything is scored."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from invarlock.errors import TokenizerMismatchError

PROBE_TEXT = (
    "InvarLock compares an edited model with its baseline: naïve café, Straße, 東京, 12345, "
    "def f(x):\n    return x ** 2  # ✓\n"
)
"""Tokenized by both sides' tokenizers; any difference means the tokenizers differ."""

_SPECIAL_IDS = ("bos_token_id", "eos_token_id", "mask_token_id", "cls_token_id", "sep_token_id")


def fingerprint(tokenizer: Any) -> dict[str, Any]:
    vocab = tokenizer.get_vocab()
    vocab_hash = hashlib.sha256(json.dumps(sorted(vocab.items()), ensure_ascii=False).encode()).hexdigest()
    # Without special tokens, as windows are tokenized; the special ids framing uses are compared apart.
    probe = list(tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"])
    return {
        "class": type(tokenizer).__name__,
        "vocab_size": len(vocab),
        "vocab_sha256": vocab_hash,
        "probe_ids": probe,
        "special_ids": {name: getattr(tokenizer, name, None) for name in _SPECIAL_IDS},
    }


def compare(baseline: Mapping[str, Any], subject: Mapping[str, Any]) -> None:
    """Raise :class:`TokenizerMismatchError` naming the first difference."""
    if baseline["vocab_sha256"] != subject["vocab_sha256"]:
        what = f"vocabularies differ ({baseline['vocab_size']} vs {subject['vocab_size']} tokens)"
    elif baseline["probe_ids"] != subject["probe_ids"]:
        what = "they split the same probe text into different tokens"
    elif baseline["special_ids"] != subject["special_ids"]:
        what = f"special token ids differ ({baseline['special_ids']} vs {subject['special_ids']})"
    else:
        return
    raise TokenizerMismatchError(
        f"the subject's tokenizer differs from the baseline's: {what}; certify compares models that share "
        "one tokenizer, so pass a subject derived from this baseline (with the baseline's tokenizer files)"
    )


def block(fingerprint: Mapping[str, Any], subject_note: str | None) -> dict[str, Any]:
    return {
        "class": fingerprint["class"],
        "vocab_size": fingerprint["vocab_size"],
        "vocab_sha256": fingerprint["vocab_sha256"],
        "probe_sha256": hashlib.sha256(json.dumps(fingerprint["probe_ids"]).encode()).hexdigest(),
        "shared": subject_note is None,
        "note": subject_note
        or "subject and baseline tokenizers are identical (vocabulary, probe text, special ids)",
    }
