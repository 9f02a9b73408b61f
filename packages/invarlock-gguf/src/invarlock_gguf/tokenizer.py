"""The GGUF file's own vocabulary, as the tokenizer the host compares with the baseline's.

No tokenizer is rebuilt from the file. :class:`GGUFVocabulary` answers the questions the host's
tokenizer check asks (vocabulary, special token ids, how a probe text splits): the vocabulary and
the special ids come from the metadata, and text is split by llama.cpp itself (a vocabulary-only
``llama_cpp.Llama``), so the check is against what llama.cpp will run. When the vocabulary is
identical, certify scores both sides on the baseline's token ids.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from invarlock.errors import ModelLoadError
from invarlock_gguf.metadata import read_metadata
from invarlock_gguf.models import GGUFMetadata

UNUSED_TOKEN_TYPE = 5  # gguf.TokenType.UNUSED
# convert_hf_to_gguf.py fills embedding rows the tokenizer has no token for with "[PAD<id>]".
_PADDING = re.compile(r"\[PAD(\d+)\]")
_SPECIAL_KEYS = {
    "bos_token_id": "tokenizer.ggml.bos_token_id",
    "eos_token_id": "tokenizer.ggml.eos_token_id",
    "unk_token_id": "tokenizer.ggml.unknown_token_id",
    "pad_token_id": "tokenizer.ggml.padding_token_id",
    "mask_token_id": "tokenizer.ggml.mask_token_id",
    "cls_token_id": "tokenizer.ggml.cls_token_id",
    "sep_token_id": "tokenizer.ggml.seperator_token_id",  # sic: the GGUF key is spelled so
}


class GGUFVocabulary:
    """The vocabulary of one GGUF file, with llama.cpp splitting text."""

    bos_token_id: int | None
    eos_token_id: int | None
    unk_token_id: int | None
    pad_token_id: int | None
    mask_token_id: int | None
    cls_token_id: int | None
    sep_token_id: int | None

    def __init__(self, metadata: GGUFMetadata, llama: Any) -> None:
        self.metadata = metadata
        self._llama = llama
        for attribute, key in _SPECIAL_KEYS.items():
            value = metadata.values.get(key)
            setattr(self, attribute, int(value) if isinstance(value, int) else None)

    def __repr__(self) -> str:
        return f"<GGUFVocabulary {self.metadata.path.name}: {len(self)} tokens>"

    def __len__(self) -> int:
        return len(self.get_vocab())

    def get_vocab(self) -> dict[str, int]:
        """Token string → id, as ``tokenizer.get_vocab()`` of the Hugging Face tokenizer it came from.

        The converter's ``[PAD<id>]`` rows (type UNUSED, at the id they name) are embedding
        padding the tokenizer never produces; they are left out, as the Hugging Face tokenizer has
        no such tokens.
        """
        types = self.metadata.token_types
        vocab: dict[str, int] = {}
        for index, token in enumerate(self.metadata.tokens):
            padding = _PADDING.fullmatch(token)
            if padding and int(padding.group(1)) == index and types and types[index] == UNUSED_TOKEN_TYPE:
                continue
            vocab[token] = index
        return vocab

    def __call__(
        self, text: str | Sequence[str], add_special_tokens: bool = True, **_: Any
    ) -> dict[str, Any]:
        """``{"input_ids": ...}`` for one text or a list, split by llama.cpp's tokenizer for this file."""
        if isinstance(text, str):
            return {"input_ids": self.encode(text, add_special_tokens=add_special_tokens)}
        return {"input_ids": [self.encode(t, add_special_tokens=add_special_tokens) for t in text]}

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        # special=True: added and control tokens written in the text are matched, as Hugging Face does.
        return list(self._llama.tokenize(text.encode("utf-8"), add_bos=add_special_tokens, special=True))


def load_vocabulary(model_id: str) -> GGUFVocabulary:
    from invarlock_gguf.loading import _import_backend, gguf_path

    path = gguf_path(model_id)
    metadata = read_metadata(path)
    if not metadata.tokens:
        raise ModelLoadError(
            f"{path.name} has no vocabulary (no tokenizer.ggml.tokens), so its tokenizer cannot be compared "
            "with the baseline's; re-convert it with its tokenizer"
        )
    Llama, _ = _import_backend()
    try:
        llama = Llama(model_path=str(path), vocab_only=True, verbose=False)
    except Exception as exc:
        raise ModelLoadError(
            f"llama.cpp could not read the vocabulary of {path.name} ({type(exc).__name__}: {exc}); "
            "check that this llama-cpp-python build supports the file's tokenizer"
        ) from exc
    return GGUFVocabulary(metadata, llama)
