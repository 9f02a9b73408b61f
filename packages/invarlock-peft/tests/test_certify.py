"""invarlock certify with PEFT subjects, offline, on the tiny local checkpoints: the peft block in the
certificate, a declared vocabulary growth accepted (and an undeclared one refused), merged vs unmerged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from invarlock.cli import main

SCHEMA = Path(__file__).resolve().parents[3] / "docs" / "schemas" / "certificate.v1.json"
FAST = ["--seq-len", "40", "--windows", "32", "--bootstrap", "200", "--device", "cpu"]
"""The gate's minimum evidence: 32 windows of 39 scored tokens (at least 1024 in all)."""


def certify(baseline: Path, subject: Path, out: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    code = main(
        ["certify", "--baseline", str(baseline), "--subject", str(subject), "--out", str(out), *FAST, *extra]
    )
    certificate = json.loads((out / "certificate.json").read_text()) if code in (0, 1) else {}
    if certificate:
        import jsonschema

        jsonschema.validate(certificate, json.loads(SCHEMA.read_text()))
    return code, certificate


def check(certificate: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in certificate["invariants"]["checks"] if c["name"] == name)


def test_certify_a_lora_against_its_base(llama_base: Path, llama_lora: Path, tmp_path: Path) -> None:
    code, certificate = certify(llama_base, llama_lora, tmp_path)
    assert code in (0, 1)
    subject = certificate["subject"]
    assert subject["adapter"]["name"] == "hf_peft" and "adapter_config.json" in subject["adapter"]["reason"]
    block = subject["description"]["peft"]
    assert block["method"] == "lora" and block["rank"] == 4 and block["base"] == str(llama_base)
    assert check(certificate, "structure")["passed"]
    markdown = (tmp_path / "certificate.md").read_text()
    assert "| **peft** | – | lora; r=4 alpha=8" in markdown
    assert "lora; r=4 alpha=8" in (tmp_path / "certificate.html").read_text()


def test_a_declared_vocabulary_growth_is_accepted_exactly(
    llama_base: Path, llama_lora_added_tokens: Path, tmp_path: Path, added_tokens: tuple[str, ...]
) -> None:
    code, certificate = certify(llama_base, llama_lora_added_tokens, tmp_path)
    assert code in (0, 1)
    assert certificate["subject"]["description"]["vocab_growth"] == {
        "base_vocab_size": 128,
        "vocab_size": 130,
        "added_tokens": list(added_tokens),
    }
    assert certificate["tokenizer"]["added_tokens"] == list(added_tokens)
    structure = check(certificate, "structure")
    assert (
        structure["passed"]
        and "vocab_size grew from 128 to 130 as the subject declares" in structure["detail"]
    )


def test_an_undeclared_vocabulary_growth_is_refused(
    llama_base: Path, llama_lora_added_tokens: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same grown model saved as a plain checkpoint declares nothing: its tokenizer is refused."""
    from invarlock.adapters import get_adapter

    adapter = get_adapter("hf_peft")
    merged = adapter.load_model(llama_lora_added_tokens, device="cpu", merge=True)
    plain = tmp_path / "plain"
    merged.save_pretrained(plain)
    adapter.load_tokenizer(llama_lora_added_tokens).save_pretrained(plain)
    code, _ = certify(llama_base, plain, tmp_path / "out")
    assert code == 2
    assert "tokenizer_mismatch" in capsys.readouterr().err


def test_merged_against_unmerged(llama_lora: Path, tmp_path: Path) -> None:
    code, certificate = certify(llama_lora, llama_lora, tmp_path, "--subject-merge")
    assert code == 0
    assert certificate["baseline"]["description"]["peft"]["merged"] is False
    assert certificate["subject"]["description"]["peft"]["merged"] is True
    assert certificate["subject_load_options"] == {"merge": True}
    assert certificate["stats"]["ratio"] == pytest.approx(
        1.0, abs=1e-4
    )  # float32: merging is exact to rounding


def test_merged_into_a_4bit_base_against_unmerged(qlora: Path, tmp_path: Path) -> None:
    code, certificate = certify(qlora, qlora, tmp_path, "--subject-merge")
    assert code in (0, 1)
    for side, merged in (("baseline", False), ("subject", True)):
        description = certificate[side]["description"]
        assert description["quantization"]["method"] == "bitsandbytes"
        assert description["peft"]["merged"] is merged and description["peft"]["base_adapter"] == "hf_bnb"


def test_subject_base_overrides_the_adapter_config(
    llama_base: Path, llama_lora: Path, tmp_path: Path
) -> None:
    import shutil

    moved = tmp_path / "lora"
    shutil.copytree(llama_lora, moved)
    config = json.loads((moved / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "/nowhere/base"
    (moved / "adapter_config.json").write_text(json.dumps(config))
    code, certificate = certify(llama_base, moved, tmp_path / "out", "--subject-base", str(llama_base))
    assert code in (0, 1)
    assert certificate["subject"]["description"]["peft"]["base_source"] == "base option"


DEMO_MODEL = Path(__file__).resolve().parents[3] / "demo" / "model"


@pytest.fixture(scope="module")
def demo_lora(tmp_path_factory: pytest.TempPathFactory, make_adapter: Any) -> Path:
    """A LoRA over the committed demo model (a small trained causal LM), so 2-bit rounding fails the gate."""
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(DEMO_MODEL)
    return make_adapter(base, tmp_path_factory.mktemp("demo-lora"), DEMO_MODEL, target_modules=["q_proj"])


@pytest.mark.parametrize("snapshot", ["full", "adapter"])
def test_run_edits_and_restores_a_peft_model(
    demo_lora: Path, tmp_path: Path, snapshot: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """invarlock run's edit (2-bit round-to-nearest) changes base weights too: a failed gate restores
    them from a full snapshot, and an adapter-only snapshot refuses with its own code instead."""
    config = tmp_path / "run.yaml"
    config.write_text(
        f"model: {{id: {demo_lora}, device: cpu, snapshot: {snapshot}}}\n"
        "dataset: {seq_len: 48, windows: 32}\n"  # the gate's minimum evidence
        "eval: {gate: {bootstrap: 200}}\n"
        "edit: {name: quant_rtn, plan: {bitwidth: 2}}\n"
        f"output: {{dir: {tmp_path / 'out'}}}\n"
    )
    code = main(["run", "--config", str(config)])
    if snapshot == "full":
        assert code == 1
        report = json.loads((tmp_path / "out" / "evaluation.report.json").read_text())
        assert "match their pre-edit sha256" in json.dumps(report)
    else:
        assert code == 2
        assert "peft_base_changed" in capsys.readouterr().err
