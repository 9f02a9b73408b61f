"""The README's main job: `bash demo/run_demo.sh` certifies the committed demo model's 8-bit edit
(PASS) and 2-bit edit (FAIL), offline, and leaves certificates that match the schema."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = ROOT / "demo" / "model"


def test_demo_model_is_committed_small_and_trained() -> None:
    files = {p.name: p.stat().st_size for p in DEMO_MODEL.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "training.json"} <= set(files)
    assert sum(files.values()) < 8 * 2**20, "a few MB"
    training = json.loads((DEMO_MODEL / "training.json").read_text())
    assert training["script"] == "scripts/train_demo_model.py"
    assert training["eval_ppl"] < 100 < 2048, "far better than guessing among 2048 tokens"


def test_demo_script_passes_the_8bit_edit_and_fails_the_2bit_edit(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(ROOT / "demo" / "run_demo.sh"), str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "8-bit RTN: PASS" in done.stdout and "2-bit RTN: FAIL" in done.stdout
    schema = json.loads((ROOT / "docs" / "schemas" / "certificate.v1.json").read_text())
    for subject, verdict in (("rtn8", "PASS"), ("rtn2", "FAIL")):
        certificate = json.loads((tmp_path / f"certificate-{subject}" / "certificate.json").read_text())
        jsonschema.validate(certificate, schema)
        assert certificate["verdict"] == verdict
        assert certificate["dataset"]["source"] == "pydoc" and certificate["dataset"]["split"] == "eval"
        assert (tmp_path / f"certificate-{subject}" / "certificate.html").is_file()
        markdown = (tmp_path / f"certificate-{subject}" / "certificate.md").read_text()
        assert_markdown_reads_plainly(markdown, certificate)
    assert_terminal_summary_fits_80_columns(done.stdout)
    assert_verify_confirms_and_rejects(tmp_path)


BARE_NUMBER_CELL = re.compile(r"\|\s*-?\d+(?:\.\d+)?\s*(?=\|)")


def assert_markdown_reads_plainly(markdown: str, certificate: dict[str, Any]) -> None:
    """No ``None`` anywhere, only installed adapters under "Adapters installed", every number in a
    table with its unit, and the units a reader needs in the text."""
    assert not re.search(r"\bNone\b", markdown), [x for x in markdown.splitlines() if "None" in x]
    installed = {a["name"] for a in certificate["plugins"]["adapters"] if a["version"] is not None}
    table = markdown.split("## Adapters installed", 1)[1]
    assert set(re.findall(r"^\| (\S+) \| ", table, flags=re.M)) - {"adapter"} == installed
    assert [line for line in markdown.splitlines() if BARE_NUMBER_CELL.search(line)] == []
    for unit in (" ppl |", " nats/token", " windows of ", " scored tokens", " s\n", " parameters |"):
        assert unit in markdown, unit


def assert_terminal_summary_fits_80_columns(stdout: str) -> None:
    """What certify printed for each subject, up to the list of files it wrote (paths are never cut)."""
    summaries = re.findall(r"^((?:PASS|FAIL): .*?)^  json:", stdout, flags=re.M | re.S)
    assert len(summaries) == 2, stdout
    for block in summaries:
        assert max(len(line) for line in block.splitlines()) <= 80, block


def verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invarlock.cli", "verify", *args], cwd=ROOT, capture_output=True, text=True
    )


def assert_verify_confirms_and_rejects(out: Path) -> None:
    """`invarlock verify` confirms the demo certificates against demo/model and the demo subjects,
    and rejects each against a copy of its subject with one byte changed."""
    for subject in ("rtn8", "rtn2"):
        certificate = out / f"certificate-{subject}" / "certificate.json"
        recorded = json.loads(certificate.read_text())
        for side in ("baseline", "subject"):
            identity = recorded[side]["identity"]
            assert {f["path"] for f in identity["files"]} >= {
                "config.json",
                "model.safetensors",
                "tokenizer.json",
            }
            assert recorded[side]["weights"]["differing"] == [] and recorded[side]["weights"]["compared"] > 0
        checks = {c["name"]: c["passed"] for c in recorded["invariants"]["checks"]}
        assert checks["weights_match_checkpoint_baseline"] and checks["weights_match_checkpoint_subject"]

        confirmed = verify(str(certificate), "--baseline", str(DEMO_MODEL), "--subject", str(out / subject))
        assert confirmed.returncode == 0, confirmed.stdout + confirmed.stderr
        assert confirmed.stdout.startswith(f"MATCH: certificate {recorded['certificate_id']}")
        by_default = verify(str(certificate.parent), "--json")  # the paths the certificate recorded
        assert by_default.returncode == 0 and json.loads(by_default.stdout)["matches"]

        copy = out / f"{subject}-one-byte-changed"
        shutil.copytree(out / subject, copy)
        weights = bytearray((copy / "model.safetensors").read_bytes())
        weights[len(weights) // 2] ^= 0x01
        (copy / "model.safetensors").write_bytes(weights)
        rejected = verify(str(certificate), "--subject", str(copy), "--json")
        assert rejected.returncode == 1, rejected.stdout + rejected.stderr
        result = json.loads(rejected.stdout)
        assert not result["matches"] and result["sides"]["baseline"]["matches"]
        assert result["sides"]["subject"]["changed"] == ["model.safetensors"]
