"""Both sides must share one tokenizer: a fingerprint of each, compared before anything is scored."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from invarlock.certification.structure_change import StructureChange
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
        "vocab": vocab,
        "vocab_size": len(vocab),
        "vocab_sha256": vocab_hash,
        "probe_ids": probe,
        "special_ids": {name: getattr(tokenizer, name, None) for name in _SPECIAL_IDS},
    }


def appended_tokens(baseline: Any, subject: Any) -> list[str]:
    """Tokens the subject's tokenizer appends to the baseline's vocabulary, in id order: empty unless
    the subject keeps every baseline token at its id and adds tokens after the baseline's last id."""
    base_vocab, subject_vocab = baseline.get_vocab(), subject.get_vocab()
    if len(subject_vocab) <= len(base_vocab):
        return []
    if any(subject_vocab.get(token) != index for token, index in base_vocab.items()):
        return []
    first_new = max(base_vocab.values(), default=-1) + 1
    added = sorted((index, token) for token, index in subject_vocab.items() if token not in base_vocab)
    return [token for index, token in added] if added[0][0] >= first_new else []


def compare(baseline: Mapping[str, Any], subject: Mapping[str, Any], *, appended: bool = False) -> None:
    """Raise :class:`TokenizerMismatchError` naming the first difference.

    :param appended: the subject's vocabulary is the baseline's plus appended tokens
        (:func:`appended_tokens`), which the subject's description must then declare
        (:func:`check_declared`); the probe text and special ids must still agree.
    """
    if baseline["vocab_sha256"] != subject["vocab_sha256"] and not appended:
        what = (
            f"vocabularies differ ({baseline['vocab_size']} vs {subject['vocab_size']} tokens"
            f"{vocabulary_difference(baseline.get('vocab'), subject.get('vocab'))})"
        )
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


def check_declared(
    appended: list[str],
    description: Mapping[str, Any],
    declared: StructureChange | None = None,
    base_vocab_size: int | None = None,
) -> None:
    """Raise :class:`TokenizerMismatchError` unless the appended tokens are declared exactly: by
    the subject's description (``vocab_growth``) or by a declared structure change (``vocab_size``
    and, when given, ``added_tokens``) over the baseline's ``base_vocab_size``."""
    if declared is not None and declared.vocab_size is not None and base_vocab_size is not None:
        count = declared.vocab_size - base_vocab_size
        tokens = list(declared.added_tokens) if declared.added_tokens is not None else None
        if count == len(appended) and (tokens is None or tokens == appended):
            return
        raise TokenizerMismatchError(
            f"the subject's tokenizer appends {len(appended)} token(s) to the baseline's "
            f"({', '.join(appended[:5])}) but {' and '.join(declared.sources)} declares a vocabulary "
            f"grown by {count} ({tokens}); declare exactly the tokens the subject's tokenizer appends"
        )
    growth = description.get("vocab_growth") or {}
    count = growth.get("vocab_size", 0) - growth.get("base_vocab_size", 0) if growth else 0
    tokens = growth.get("added_tokens")
    if count == len(appended) and (tokens is None or list(tokens) == appended):
        return
    raise TokenizerMismatchError(
        f"the subject's tokenizer appends {len(appended)} token(s) to the baseline's "
        f"({', '.join(appended[:5])}) but its description declares "
        + (f"a vocab_growth of {count} token(s) ({tokens})" if growth else "no vocab_growth")
        + "; certify accepts a grown vocabulary only when the subject's adapter declares exactly that growth "
        "or --declare-edit declares it (vocab_size, added_tokens)"
    )


def vocabulary_difference(baseline: Mapping[str, int] | None, subject: Mapping[str, int] | None) -> str:
    """``"; 2 ids differ, first id 100: 'ab' vs 'ba'"``: where two vocabularies part (empty if unknown)."""
    if baseline is None or subject is None:
        return ""
    by_id = [{index: token for token, index in vocab.items()} for vocab in (baseline, subject)]
    differing = sorted(i for i in set(by_id[0]) | set(by_id[1]) if by_id[0].get(i) != by_id[1].get(i))
    if not differing:
        return ""
    first = differing[0]
    return (
        f"; {len(differing)} id{'s' if len(differing) > 1 else ''} differ, first id {first}: "
        f"{by_id[0].get(first)!r} vs {by_id[1].get(first)!r}"
    )


def block(
    fingerprint: Mapping[str, Any], subject_note: str | None, appended: list[str] | None = None
) -> dict[str, Any]:
    if appended:
        return {
            "class": fingerprint["class"],
            "vocab_size": fingerprint["vocab_size"],
            "vocab_sha256": fingerprint["vocab_sha256"],
            "probe_sha256": hashlib.sha256(json.dumps(fingerprint["probe_ids"]).encode()).hexdigest(),
            "shared": False,
            "added_tokens": appended,
            "note": f"the subject's tokenizer is the baseline's plus {len(appended)} appended token(s), "
            "declared by its adapter (vocab_growth); probe text and special ids are identical",
        }
    return {
        "class": fingerprint["class"],
        "vocab_size": fingerprint["vocab_size"],
        "vocab_sha256": fingerprint["vocab_sha256"],
        "probe_sha256": hashlib.sha256(json.dumps(fingerprint["probe_ids"]).encode()).hexdigest(),
        "shared": subject_note is None,
        "note": subject_note
        or "subject and baseline tokenizers are identical (vocabulary, probe text, special ids)",
    }
