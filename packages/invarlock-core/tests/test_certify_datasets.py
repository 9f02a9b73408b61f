"""Evaluation text and deterministic windows: pure Python, no torch."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from invarlock.certification.datasets import embedded_corpus, load_corpus
from invarlock.certification.evaluation.windows import make_windows, token_stream
from invarlock.errors import DatasetError, DependencyMissingError, NetworkDisabledError


class WordTokenizer:
    """The slice of the Hugging Face tokenizer interface windows use: ids for whitespace words."""

    eos_token_id = 0

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}

    def __call__(self, texts: list[str], **_: Any) -> dict[str, list[list[int]]]:
        return {
            "input_ids": [[self.vocab.setdefault(w, len(self.vocab) + 1) for w in t.split()] for t in texts]
        }


def test_embedded_corpus_is_offline_split_and_deterministic() -> None:
    evaluation, train = embedded_corpus("eval"), embedded_corpus("train")
    assert evaluation.documents and train.documents
    assert not set(evaluation.documents) & set(train.documents)
    assert len(evaluation.documents) + len(train.documents) == len(embedded_corpus("all").documents)
    assert embedded_corpus("eval").digest == evaluation.digest
    info = evaluation.info()
    assert info["source"] == "pydoc" and info["split"] == "eval" and info["python"]
    assert sum(len(d) for d in evaluation.documents) > 20_000, "enough text for dozens of windows"
    assert load_corpus().digest == evaluation.digest, "the default dataset is the embedded eval split"


def test_embedded_corpus_rejects_unknown_split() -> None:
    with pytest.raises(DatasetError, match="no split 'validation'"):
        embedded_corpus("validation")


def test_text_and_jsonl_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("one two three\n")
    assert load_corpus(str(text)).documents == ["one two three\n"]
    lines = tmp_path / "data.jsonl"
    lines.write_text("\n".join(json.dumps({"body": f"doc {i}"}) for i in range(3)) + "\n\n")
    corpus = load_corpus(str(lines), text_field="body")
    assert corpus.documents == ["doc 0", "doc 1", "doc 2"]
    assert corpus.info()["format"] == "jsonl"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", "", "is empty"),
        ("blank.txt", "  \n\n", "is empty"),
        ("bad.jsonl", '{"text": "a"}\nnot json\n', "line 2 of"),
        ("field.jsonl", '{"body": "a"}\n', "has no string field 'text'"),
    ],
)
def test_bad_dataset_files(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_corpus(str(path))


def test_missing_dataset_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_corpus(str(tmp_path / "missing.txt"))


def test_hf_datasets_are_network_gated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INVARLOCK_ALLOW_NETWORK", raising=False)
    if importlib.util.find_spec("datasets") is None:
        with pytest.raises(DependencyMissingError, match="pip install datasets"):
            load_corpus("hf:wikitext:wikitext-2-raw-v1")
    else:
        with pytest.raises(NetworkDisabledError, match="INVARLOCK_ALLOW_NETWORK=1"):
            load_corpus("hf:invarlock-no-such-dataset-anywhere")


def test_windows_are_deterministic_and_recorded_by_offset() -> None:
    stream = list(range(1000))
    first = make_windows(stream, length=50, count=5, seed=3)
    again = make_windows(stream, length=50, count=5, seed=3)
    assert first == again
    assert [w.window_id for w in first.windows] == sorted(w.window_id for w in first.windows)
    for window in first.windows:
        assert window.tokens == tuple(stream[window.window_id : window.window_id + 50])
    assert first.info()["window_ids"] == [w.window_id for w in first.windows]
    assert make_windows(stream, length=50, count=5, seed=4).info()["window_ids"] != first.info()["window_ids"]


def test_all_windows_when_fewer_candidates_than_asked() -> None:
    windows = make_windows(list(range(100)), length=30, count=64, seed=0)
    assert [w.window_id for w in windows.windows] == [0, 30, 60]
    overlapping = make_windows(list(range(100)), length=30, stride=10, count=64, seed=0)
    assert len(overlapping.windows) == 8


def test_too_short_for_one_window() -> None:
    with pytest.raises(DatasetError, match="has 10 tokens, too short for one window of 128"):
        make_windows(list(range(10)), length=128, count=4, seed=0)


def test_token_stream_separates_documents() -> None:
    corpus = load_corpus.__globals__["Corpus"]("inline", None, ["a b", "c"])
    assert token_stream(WordTokenizer(), corpus) == [1, 2, 0, 3, 0]
