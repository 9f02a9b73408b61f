"""Declared structure changes end to end: real pruned subjects built here from the demo model (a
trained Llama) and a tiny Mixtral, certified through invarlock-hf against their baselines.

Each subject is an ordinary checkpoint whose config states its new sizes, so transformers loads it
and invarlock-hf describes it from its modules: query heads pruned (two of four kept, one per KV
group), a layer removed, MLP widths shrunk with the vocabulary padded, experts removed. Declared,
the structure invariant passes; undeclared, it fails naming the layer and key; declared on a
subject that did not change, it fails too. The gate itself may fail on quality: these tests look at
the invariant.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from invarlock.certification.certify import CertifyOptions, certify
from invarlock.certification.evaluate import WindowSettings
from invarlock.certification.evaluation.gate import GatePolicy
from invarlock.certification.evaluation.invariants import structure_check
from invarlock.certification.structure_change import StructureChange, parse
from invarlock.cli import main
from invarlock.config import parse_config

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo" / "model"
SCHEMAS = ROOT / "docs" / "schemas"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
ALL_LAYERS = range(4)


def rebuild(
    base: Path, target: Path, config_changes: dict[str, Any], edit: Callable[[dict[str, Any]], None]
) -> Path:
    """Save ``base`` with ``config_changes`` and its state dict edited by ``edit`` (in place)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    edit(state)
    config = AutoConfig.from_pretrained(base)
    for key, value in config_changes.items():
        setattr(config, key, value)
    torch.manual_seed(0)
    pruned = AutoModelForCausalLM.from_config(config)
    pruned.load_state_dict(state, strict=True)
    pruned.save_pretrained(target)
    for name in TOKENIZER_FILES:
        if (base / name).exists():
            shutil.copy(base / name, target / name)
    return target


def keep_two_heads(state: dict[str, Any]) -> None:
    """Keep query heads 0 and 2 of 4 (one per KV group, so groups of one map onto the 2 KV heads)."""
    import torch

    rows = torch.cat([torch.arange(0, 32), torch.arange(64, 96)])
    for layer in ALL_LAYERS:
        prefix = f"model.layers.{layer}.self_attn."
        state[prefix + "q_proj.weight"] = state[prefix + "q_proj.weight"][rows]
        state[prefix + "o_proj.weight"] = state[prefix + "o_proj.weight"][:, rows]


def remove_layer_2(state: dict[str, Any]) -> None:
    for name in [n for n in state if n.startswith("model.layers.2.")]:
        del state[name]
    for name in [n for n in state if n.startswith("model.layers.3.")]:
        state[name.replace("model.layers.3.", "model.layers.2.")] = state.pop(name)


def shrink_mlp_and_pad_vocab(state: dict[str, Any]) -> None:
    import torch

    for layer in ALL_LAYERS:
        prefix = f"model.layers.{layer}.mlp."
        for name in ("gate_proj", "up_proj"):
            state[f"{prefix}{name}.weight"] = state[f"{prefix}{name}.weight"][:256]
        state[f"{prefix}down_proj.weight"] = state[f"{prefix}down_proj.weight"][:, :256]
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        state[name] = torch.cat([state[name], torch.zeros(64, state[name].shape[1])])


def keep_two_experts(state: dict[str, Any]) -> None:
    for layer in range(2):
        prefix = f"model.layers.{layer}.mlp."
        for name in ("gate.weight", "experts.gate_up_proj", "experts.down_proj"):
            state[prefix + name] = state[prefix + name][:2]


@pytest.fixture(scope="module")
def text(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A few kilobytes of the embedded corpus: enough for 8 windows, quick to tokenize."""
    from invarlock.certification.datasets import embedded_corpus

    path = tmp_path_factory.mktemp("text") / "eval.txt"
    path.write_text("\n\n".join(embedded_corpus().documents)[:12000], encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def subjects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from invarlock_hf.testing import save_tiny_checkpoint, save_tiny_tokenizer

    root = tmp_path_factory.mktemp("pruned")
    mixtral = save_tiny_checkpoint("mixtral", root / "mixtral")
    save_tiny_tokenizer(mixtral)
    return {
        "heads": rebuild(DEMO, root / "heads", {"num_attention_heads": 2}, keep_two_heads),
        "layer": rebuild(DEMO, root / "layer", {"num_hidden_layers": 3}, remove_layer_2),
        "mlp_vocab": rebuild(
            DEMO, root / "mlp_vocab", {"intermediate_size": 256, "vocab_size": 2112}, shrink_mlp_and_pad_vocab
        ),
        "mixtral": mixtral,
        "experts": rebuild(mixtral, root / "experts", {"num_local_experts": 2}, keep_two_experts),
    }


def structure_of(
    text: str, baseline: Path, subject: Path, declared: dict[str, Any] | None, seq_len: int = 32
) -> dict[str, Any]:
    options = CertifyOptions.for_both(
        device="cpu",
        dataset=text,
        windows=WindowSettings(seq_len=seq_len, windows=8),
        policy=GatePolicy(allow_inconclusive=True, bootstrap=200),
        structure_change=parse(declared, "the test's declaration") if declared is not None else None,
    )
    certificate = certify(str(baseline), str(subject), options)
    check = next(c for c in certificate["invariants"]["checks"] if c["name"] == "structure")
    return {"check": check, "delta": certificate["structure_delta"], "certificate": certificate}


HEADS = {"heads_per_layer": {layer: 2 for layer in ALL_LAYERS}}


def judged(certified: dict[str, Any], declared: dict[str, Any] | None, *, subject: str = "subject") -> Any:
    """The structure invariant on the real descriptions a certificate holds, under another declaration."""
    change = parse(declared, "another declaration") if declared is not None else None
    return structure_check(
        certified["certificate"]["baseline"]["description"],
        certified["certificate"][subject]["description"],
        change,
    )


def test_pruned_heads_pass_declared_and_fail_undeclared(text: str, subjects: dict[str, Path]) -> None:
    declared = structure_of(text, DEMO, subjects["heads"], HEADS)
    assert declared["check"]["passed"], declared["check"]["detail"]
    changes = declared["delta"]["changes"]
    assert [(c["key"], c["layer"], c["baseline"], c["subject"], c["status"]) for c in changes] == [
        ("heads_per_layer", layer, 4, 2, "declared") for layer in ALL_LAYERS
    ]
    assert declared["delta"]["passed"] and declared["delta"]["declared"]["heads_per_layer"]["3"] == 2
    undeclared = judged(declared, None)
    assert not undeclared.passed
    assert "layer 0 heads_per_layer: baseline 4, subject 2, not declared" in undeclared.detail
    # Declared on a subject that did not change (the baseline itself): the change was not made.
    absent = judged(declared, HEADS, subject="baseline")
    assert not absent.passed and "layer 2 heads_per_layer: declared 2, subject has 4" in absent.detail


def test_a_removed_layer_lines_up_by_the_baselines_index(text: str, subjects: dict[str, Path]) -> None:
    declared = structure_of(text, DEMO, subjects["layer"], {"layers_removed": [2]})
    assert declared["check"]["passed"], declared["check"]["detail"]
    assert "layer 2 layer present -> removed as declared" in declared["check"]["detail"]
    undeclared = judged(declared, None)
    assert not undeclared.passed and "n_layer: baseline 4, subject 3" in undeclared.detail
    # Layers of one shape: which one went is not in the structure (docs/certify.md says so).
    assert judged(declared, {"layers_removed": [0]}).passed


def test_shrunk_mlps_and_a_padded_vocabulary(text: str, subjects: dict[str, Path]) -> None:
    mlp = {"mlp_dims": {layer: 256 for layer in ALL_LAYERS}}
    both = structure_of(text, DEMO, subjects["mlp_vocab"], {**mlp, "vocab_size": 2112})
    assert both["check"]["passed"], both["check"]["detail"]
    assert "vocab_size grew from 2048 to 2112 as declared" in both["check"]["detail"]
    partly = judged(both, mlp)
    assert not partly.passed
    assert "vocab_size: baseline 2048, subject 2112, not declared" in partly.detail
    assert "mlp_dims" not in partly.detail.split("differ from the declared structure in")[1]


def test_removed_experts(text: str, subjects: dict[str, Path]) -> None:
    declared = structure_of(text, subjects["mixtral"], subjects["experts"], {"num_experts": {0: 2, 1: 2}})
    assert declared["check"]["passed"], declared["check"]["detail"]
    assert "layer 1 num_experts 4 -> 2 as declared" in declared["check"]["detail"]
    undeclared = judged(declared, None)
    assert not undeclared.passed
    assert "layer 0 num_experts: baseline 4, subject 2, not declared" in undeclared.detail
    assert not judged(declared, {"num_experts": {0: 2}}).passed  # layer 1's removal undeclared


def test_the_cli_reads_the_declaration_and_renders_the_delta(
    text: str, subjects: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    declaration = tmp_path / "pruned.yaml"
    declaration.write_text("heads_per_layer: {0: 2, 1: 2, 2: 2, 3: 2}\n", encoding="utf-8")
    out = tmp_path / "cert"
    args = ["certify", "--baseline", str(DEMO), "--subject", str(subjects["heads"]), "--device", "cpu"]
    window_args = [
        "--dataset",
        text,
        "--seq-len",
        "32",
        "--windows",
        "8",
        "--allow-inconclusive",
        "--bootstrap",
        "200",
    ]
    code = main([*args, *window_args, "--declare-edit", str(declaration), "--out", str(out)])
    assert code == 1  # INCONCLUSIVE on 8 windows; the structure holds
    printed = capsys.readouterr().out
    assert "structure: 4 change(s) declared by --declare-edit" in printed
    certificate = json.loads((out / "certificate.json").read_text())
    jsonschema.validate(certificate, json.loads((SCHEMAS / "certificate.v1.json").read_text()))
    assert certificate["structure_delta"]["passed"] and certificate["invariants"]["passed"]
    markdown = (out / "certificate.md").read_text()
    assert (
        "## Structure changes" in markdown and "| 3 | heads_per_layer | 4 | 2 | 2 | as declared |" in markdown
    )

    for text, words in (
        ("heads_per_layer: {9: 2}\n", "but the baseline has 4 layers (0-3)"),
        ("heads: {0: 2}\n", "unknown key 'heads'"),
    ):
        declaration.write_text(text, encoding="utf-8")
        refused = tmp_path / "refused"
        code = main([*args, *window_args, "--declare-edit", str(declaration), "--out", str(refused)])
        err = capsys.readouterr().err
        assert code == 2 and "[structure_declaration_invalid]" in err and words in err
        assert not refused.exists()


def test_run_holds_an_edit_to_its_declared_structure(text: str, tmp_path: Path) -> None:
    from invarlock.certification.run import run

    config = parse_config(
        {
            "model": {"id": str(DEMO), "device": "cpu"},
            "dataset": {"provider": "file", "path": text, "seq_len": 32, "windows": 8},
            "eval": {"gate": {"allow_inconclusive": True, "bootstrap": 200}},
            "edit": {"name": "noop", "structure_change": {"mlp_dims": {0: 256}}},
            "output": {"dir": str(tmp_path)},
        }
    )
    report = run(config)
    jsonschema.validate(report, json.loads((SCHEMAS / "report.v1.json").read_text()))
    check = next(c for c in report["invariants"]["checks"] if c["name"] == "structure")
    assert not check["passed"] and "layer 0 mlp_dims: declared 256, subject has 384" in check["detail"]
    assert report["structure_delta"]["declared"]["sources"] == ["config: 'edit.structure_change'"]
    assert report["restore"]["performed"] or report["restore"]["detail"]


def test_an_edit_declares_its_change_in_its_summary() -> None:
    from invarlock.certification.run import edit_declaration
    from invarlock.errors import StructureDeclarationError

    base = {
        "n_layer": 2,
        "heads_per_layer": [4, 4],
        "kv_heads_per_layer": [2, 2],
        "mlp_dims": [8, 8],
        "vocab_size": 10,
        "encoder_decoder": None,
    }
    assert edit_declaration("noop", {"modules": 0}, base) == StructureChange()
    declared = edit_declaration("prune", {"structure_change": {"mlp_dims": {1: 4}}}, base)
    assert declared.per_layer == {"mlp_dims": {1: 4}} and declared.sources == ("edit prune",)
    with pytest.raises(StructureDeclarationError, match="edit prune declares mlp_dims 8 for layer 1"):
        edit_declaration("prune", {"structure_change": {"mlp_dims": {1: 8}}}, base)
