"""``invarlock certify --baseline BASE --subject W4A16_DIR``, offline, on the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from invarlock.cli import main


def test_certify_a_w4a16_subject_against_its_float_baseline(
    base_path: Path, w4a16_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "certificate"
    code = main(
        [
            "certify",
            "--baseline",
            str(base_path),
            "--subject",
            str(w4a16_path),
            "--device",
            "cpu",
            "--windows",
            "32",  # the gate's minimum evidence: 32 windows, 1024 scored tokens
            "--seq-len",
            "40",
            "--bootstrap",
            "200",
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    certificate = json.loads((out / "certificate.json").read_text())
    assert code == certificate["exit_code"] == 0, printed
    assert certificate["verdict"] == "PASS"
    assert certificate["baseline"]["adapter"]["name"] == "hf_causal"
    subject = certificate["subject"]
    assert subject["adapter"]["name"] == "hf_compressed"
    assert subject["adapter"]["backend"]["compressed-tensors"]
    block = subject["description"]["quantization"]
    assert (block["method"], block["format"], block["bits"]) == ("compressed-tensors", "pack-quantized", 4)
    (scheme,) = block["schemes"]
    assert (scheme["strategy"], scheme["group_size"], scheme["symmetric"]) == ("group", 128, True)
    assert block["compressed_in_memory"] is True
    assert "pack-quantized" in (out / "certificate.md").read_text()
    # A quantized subject has the baseline's structure and parameter count.
    assert subject["description"]["n_params"] == certificate["baseline"]["description"]["n_params"]
