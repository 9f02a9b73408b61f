"""Evaluation text: a local text or JSONL file, a Hugging Face dataset, or the embedded corpus.

The embedded corpus needs no network and no download: it is the Python standard library's own
documentation (``pydoc_data.topics``, the text behind ``help("assert")``), read at run time. Its
topics are split deterministically: every fifth distinct topic text (in the sorted order of the
topic names) is held out as ``eval``, the rest is ``train`` (what the demo model was trained on).
The text differs a little between Python versions, so the certificate records the Python version
and a digest of the text.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invarlock.errors import DatasetError, DependencyMissingError, NetworkDisabledError
from invarlock.network import hub_offline_unless_allowed

EMBEDDED = "pydoc"
"""The name of the embedded corpus (``--dataset pydoc``, the default)."""
EMBEDDED_SPLITS = ("eval", "train", "all")
HF_PREFIX = "hf:"
_HELD_OUT_EVERY = 5


@dataclass(frozen=True)
class Corpus:
    """Documents to evaluate on, and where they came from."""

    source: str
    split: str | None
    documents: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        """sha256 of the documents, so a certificate says exactly which text was used."""
        h = hashlib.sha256()
        for document in self.documents:
            h.update(document.encode("utf-8"))
            h.update(b"\x00")
        return h.hexdigest()

    def info(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "split": self.split,
            "documents": len(self.documents),
            "characters": sum(len(d) for d in self.documents),
            "sha256": self.digest,
            **self.meta,
        }


def load_corpus(spec: str = EMBEDDED, *, split: str | None = None, text_field: str = "text") -> Corpus:
    """The corpus named by ``spec``: ``pydoc``, ``hf:NAME[:CONFIG]``, or a path to a .txt/.jsonl file."""
    if spec == EMBEDDED:
        return embedded_corpus(split or "eval")
    if spec.startswith(HF_PREFIX):
        return hf_corpus(spec[len(HF_PREFIX) :], split or "validation", text_field)
    return file_corpus(Path(spec), text_field)


def embedded_corpus(split: str = "eval") -> Corpus:
    if split not in EMBEDDED_SPLITS:
        raise DatasetError(
            f"the embedded corpus has no split {split!r}; use one of {', '.join(EMBEDDED_SPLITS)}"
        )
    try:
        from pydoc_data.topics import topics
    except ImportError as exc:
        raise DatasetError(
            "the embedded corpus needs the standard library's pydoc_data module, which this Python "
            "lacks; pass --dataset with a local .txt or .jsonl file instead"
        ) from exc
    # Several topic names share one text; each text counts once, under its first name.
    texts = list(dict.fromkeys(topics[name] for name in sorted(topics)))
    if split != "all":
        held_out = split == "eval"
        texts = [text for i, text in enumerate(texts) if (i % _HELD_OUT_EVERY == 0) == held_out]
    return Corpus(EMBEDDED, split, texts, {"python": platform.python_version(), "topics": len(texts)})


def file_corpus(path: Path, text_field: str = "text") -> Corpus:
    if not path.is_file():
        raise DatasetError(f"dataset file {path} does not exist; pass an existing .txt or .jsonl file")
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(
            f"dataset file {path} cannot be read as UTF-8 text ({exc}); fix or replace it"
        ) from exc
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        documents = _jsonl_documents(path, raw, text_field)
        kind = "jsonl"
    else:
        documents = [raw]
        kind = "text"
    documents = [d for d in documents if d.strip()]
    if not documents:
        raise DatasetError(f"dataset file {path} is empty; give it some text to evaluate on")
    return Corpus(str(path), None, documents, {"format": kind})


def _jsonl_documents(path: Path, raw: str, text_field: str) -> list[str]:
    documents: list[str] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"line {number} of {path} is not valid JSON ({exc.msg}); fix that line"
            ) from exc
        if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
            raise DatasetError(
                f"line {number} of {path} has no string field {text_field!r}; "
                "pass --text-field with the name of the field that holds the text"
            )
        documents.append(record[text_field])
    return documents


def hf_corpus(name: str, split: str, text_field: str = "text") -> Corpus:
    """A Hugging Face dataset, loaded offline unless ``INVARLOCK_ALLOW_NETWORK=1``."""
    dataset_name, _, config = name.partition(":")
    try:
        import datasets
    except ImportError as exc:
        raise DependencyMissingError(
            f"dataset hf:{name} needs the Hugging Face datasets library; run: pip install datasets"
        ) from exc
    with hub_offline_unless_allowed() as allowed:
        try:
            dataset = datasets.load_dataset(dataset_name, config or None, split=split)
        except Exception as exc:
            if not allowed:
                raise NetworkDisabledError(
                    f"dataset hf:{name} (split {split}) is not in the local cache and the network is off; "
                    "set INVARLOCK_ALLOW_NETWORK=1 to download it, or pass a local file"
                ) from exc
            raise DatasetError(f"dataset hf:{name} (split {split}) could not be loaded: {exc}") from exc
    if text_field not in dataset.column_names:
        raise DatasetError(
            f"dataset hf:{name} has no column {text_field!r} (it has {', '.join(dataset.column_names)}); "
            "pass --text-field"
        )
    documents = [text for text in dataset[text_field] if isinstance(text, str) and text.strip()]
    if not documents:
        raise DatasetError(f"dataset hf:{name} (split {split}) holds no text in column {text_field!r}")
    return Corpus(f"{HF_PREFIX}{name}", split, documents, {"datasets": datasets.__version__})
