"""certify of the demo model against its GGUF exports, and run's up-front refusal of edits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from invarlock.certification.certify import CertifyOptions, certify
from invarlock.certification.evaluate import WindowSettings
from invarlock.errors import EditError, TokenizerMismatchError

# Small enough for two cores, wide enough for a verdict: 32 windows of 128 tokens.
OPTIONS = CertifyOptions.for_both(device="cpu", windows=WindowSettings(windows=32, seq_len=128))


@pytest.fixture(scope="module")
def q8_certificate(demo_model: Path, gguf_files: dict[str, Path]) -> dict[str, Any]:
    return certify(str(demo_model), str(gguf_files["Q8_0"]), OPTIONS)


def test_q8_0_passes_with_its_description(
    q8_certificate: dict[str, Any], gguf_files: dict[str, Path]
) -> None:
    certificate = q8_certificate
    assert certificate["verdict"] == "PASS", certificate["reasons"]
    subject = certificate["subject"]
    assert subject["adapter"]["name"] == "gguf"
    assert subject["adapter"]["reason"] == f"{gguf_files['Q8_0']} is a GGUF file"
    assert set(subject["adapter"]["backend"]) == {"llama-cpp-python", "gguf"}
    description = subject["description"]
    assert description["quantization"] == {
        "method": "gguf",
        "file_type": "MOSTLY_Q8_0",
        "tensor_types": {"Q8_0": 29, "F32": 9},
    }
    assert description["gguf"]["file"] == "model-q8_0.gguf"
    assert certificate["invariants"]["passed"], certificate["invariants"]
    assert certificate["tokenizer"]["shared"] is True
    assert certificate["stats"]["ratio"] < 1.02


def test_2_bit_fails_like_the_demos_2_bit_edit(demo_model: Path, gguf_files: dict[str, Path]) -> None:
    """2-bit weights (the demo's rtn2 precision) in a Q4_0 GGUF: certify fails on perplexity alone."""
    certificate = certify(str(demo_model), str(gguf_files["Q2_IN_Q4_0"]), OPTIONS)
    assert certificate["verdict"] == "FAIL"
    assert certificate["invariants"]["passed"], "only the perplexity gate should fail"
    assert certificate["gate"]["ratio_passed"] is False
    assert certificate["stats"]["ci"][0] > OPTIONS.policy.max_ratio
    assert certificate["subject"]["description"]["quantization"]["file_type"] == "MOSTLY_Q4_0"


def test_4_bit_costs_more_than_8_bit(
    demo_model: Path, gguf_files: dict[str, Path], q8_certificate: dict[str, Any]
) -> None:
    certificate = certify(str(demo_model), str(gguf_files["Q4_0"]), OPTIONS)
    assert certificate["invariants"]["passed"]
    assert certificate["stats"]["ratio"] > q8_certificate["stats"]["ratio"] + 0.01


def test_f32_scores_like_the_baseline(demo_model: Path, gguf_files: dict[str, Path]) -> None:
    certificate = certify(str(demo_model), str(gguf_files["F32"]), OPTIONS)
    assert certificate["verdict"] == "PASS"
    assert abs(certificate["stats"]["ratio"] - 1.0) < 1e-3


def test_a_different_vocabulary_is_refused_before_scoring(demo_model: Path, tmp_path: Path) -> None:
    from gguf_export import write_gguf

    vocab = json.loads((demo_model / "tokenizer.json").read_text())["model"]["vocab"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda item: item[1])]
    tokens[-1] = "a-token-the-baseline-does-not-have"
    path = write_gguf(demo_model, tmp_path / "other-vocab.gguf", "Q8_0", tokens=tokens)
    last = len(tokens) - 1
    with pytest.raises(TokenizerMismatchError, match=f"vocabularies differ .*first id {last}: "):
        certify(str(demo_model), str(path), OPTIONS)


def test_command_line_certify_offline(demo_model: Path, gguf_files: dict[str, Path], tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("INVARLOCK_ALLOW_NETWORK", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "invarlock.cli",
            "certify",
            "--baseline",
            str(demo_model),
            "--subject",
            str(gguf_files["Q8_0"]),
            "--windows",
            "32",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    certificate = json.loads((tmp_path / "out" / "certificate.json").read_text())
    assert certificate["verdict"] == "PASS"
    assert certificate["subject"]["description"]["quantization"]["file_type"] == "MOSTLY_Q8_0"


def test_run_with_an_edit_is_refused_up_front(gguf_files: dict[str, Path], tmp_path: Path) -> None:
    from invarlock.certification.run import run
    from invarlock.config import load_config

    config_text = (
        f"model:\n  id: {gguf_files['Q8_0']}\n  adapter: gguf\n"
        "edit:\n  name: quant_rtn\n  plan:\n    bitwidth: 8\n"
    )
    config_path = tmp_path / "run.yaml"
    config_path.write_text(config_text)
    with pytest.raises(EditError, match="adapter gguf is inference-only"):
        run(load_config(config_path))
