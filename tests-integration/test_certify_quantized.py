"""A bitsandbytes subject against its full-precision baseline: `--adapter auto` resolves each side
from its own checkpoint, so the subject is loaded and scored by hf_bnb (CPU, 8-bit)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import json
from pathlib import Path

import jsonschema
import pytest

from invarlock.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = ROOT / "demo" / "model"
FAST = ["--windows", "32", "--seq-len", "64", "--bootstrap", "300", "--device", "cpu"]


@pytest.fixture(scope="module")
def bnb_subject(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    target = tmp_path_factory.mktemp("bnb8")
    model = AutoModelForCausalLM.from_pretrained(
        DEMO_MODEL, quantization_config=BitsAndBytesConfig(load_in_8bit=True), device_map="cpu"
    )
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(DEMO_MODEL).save_pretrained(target)
    return target


def test_auto_gives_the_quantized_subject_its_own_adapter(
    capsys: pytest.CaptureFixture[str], bnb_subject: Path, tmp_path: Path
) -> None:
    code = main(
        [
            "certify",
            "--baseline",
            str(DEMO_MODEL),
            "--subject",
            str(bnb_subject),
            "--out",
            str(tmp_path),
            *FAST,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    certificate = json.loads((tmp_path / "certificate.json").read_text())
    jsonschema.validate(
        certificate, json.loads((ROOT / "docs" / "schemas" / "certificate.v1.json").read_text())
    )
    baseline, subject = certificate["baseline"], certificate["subject"]
    assert baseline["adapter"]["name"] == "hf_causal"
    assert subject["adapter"]["name"] == "hf_bnb"
    assert "bitsandbytes" in subject["adapter"]["reason"]
    assert (
        subject["adapter"]["distribution"] == "invarlock-bnb"
        and subject["adapter"]["backend"]["bitsandbytes"]
    )
    assert subject["description"]["quantization"]["method"] == "bitsandbytes"
    assert baseline["description"]["quantization"] is None
    assert certificate["invariants"]["passed"], "structure and tying agree despite int8 weights"
    assert 0.98 < certificate["stats"]["ratio"] < 1.02
    assert certificate["stats"]["ratio"] != 1.0, "the int8 subject was really scored by bitsandbytes"


def test_run_with_load_in_8bit_uses_hf_bnb(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        f"model:\n  id: {DEMO_MODEL}\n  device: cpu\n  load_in_8bit: true\n"
        "dataset:\n  seq_len: 64\n  windows: 32\neval:\n  gate:\n    bootstrap: 200\n"
        f"output:\n  dir: {tmp_path / 'runs'}\n"
    )
    assert main(["run", "--config", str(config)]) == 0, capsys.readouterr()
    report = json.loads((tmp_path / "runs" / "evaluation.report.json").read_text())
    assert report["model"]["adapter"]["name"] == "hf_bnb"
    # invarlock-hf, not core, read the option (core names no backend's flags).
    assert report["model"]["adapter"]["reason"] == "the load options ask for bitsandbytes 8-bit quantization"
    assert report["model"]["description"]["quantization"]["bits"] == 8
    assert report["stats"]["ratio"] == 1.0
