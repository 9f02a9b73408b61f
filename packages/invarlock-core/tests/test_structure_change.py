"""Declared structure changes: the format, its one-sentence refusals, and the structure invariant
holding a subject to exactly the declaration (real pruned models: invarlock-hf's
tests/test_declared_structure.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from invarlock.certification import structure_change
from invarlock.certification.evaluation.invariants import structure_check
from invarlock.certification.structure_change import StructureChange, parse
from invarlock.config import parse_config
from invarlock.errors import StructureDeclarationError


def description(**changes: Any) -> dict[str, Any]:
    moe = {"num_experts": 4, "experts_per_token": 2, "expert_mlp_dim": 32, "shared_expert_mlp_dim": None}
    return {
        "model_type": "mixtral",
        "role": "causal",
        "n_layer": 3,
        "heads_per_layer": [4, 4, 4],
        "kv_heads_per_layer": [2, 2, 2],
        "mlp_dims": [64, 32, 32],
        "hidden_size": 32,
        "vocab_size": 100,
        "encoder_decoder": None,
        "moe": {"num_experts": 4, "experts_per_token": 2, "expert_mlp_dim": 32},
        "layer_types": ["full_attention"] * 3,
        "moe_per_layer": [None, dict(moe), dict(moe)],
        **changes,
    }


def test_the_format_is_checked_key_by_key() -> None:
    change = parse(
        {
            "heads_per_layer": {1: 2, "2": 3},
            "mlp_dims": {0: 48},
            "num_experts": {1: 3},
            "vocab_size": 128,
            "added_tokens": ["<a>"],
            "layers_removed": [2],
        },
        "decl.yaml",
    )
    assert change.per_layer["heads_per_layer"] == {1: 2, 2: 3}
    assert change.layers_removed == (2,) and change.vocab_size == 128 and change.added_tokens == ("<a>",)
    assert change.to_dict()["heads_per_layer"] == {"1": 2, "2": 3}
    assert not parse(None, "x") and not parse({}, "x")
    for raw, words in (
        ([1, 2], "is a mapping"),
        ({"heads": {1: 2}}, "unknown key 'heads'"),
        ({"heads_per_layer": [2, 2]}, "must map layer indices"),
        ({"heads_per_layer": {-1: 2}}, "layers are non-negative integers"),
        ({"heads_per_layer": {"first": 2}}, "layers are non-negative integers"),
        ({"mlp_dims": {0: "wide"}}, "must be an integer of at least 0"),
        ({"num_experts": {0: 0}}, "at least 1"),
        ({"heads_per_layer": {True: 2}}, "non-negative integers"),
        ({"vocab_size": 0}, "'vocab_size' must be a positive integer"),
        ({"added_tokens": ["<a>"]}, "needs 'vocab_size'"),
        ({"layers_removed": [1, 1]}, "distinct layer indices"),
        ({"layers_removed": 3}, "distinct layer indices"),
    ):
        with pytest.raises(StructureDeclarationError, match=words) as caught:
            parse(raw, "decl.yaml")
        assert (
            str(caught.value).startswith("decl.yaml: ")
            and caught.value.code == "structure_declaration_invalid"
        )


def test_a_file_is_yaml_or_json(tmp_path: Path) -> None:
    yaml_file = tmp_path / "pruned.yaml"
    yaml_file.write_text("heads_per_layer:\n  1: 2\nlayers_removed: [0]\n", encoding="utf-8")
    json_file = tmp_path / "pruned.json"
    json_file.write_text(json.dumps({"heads_per_layer": {"1": 2}, "layers_removed": [0]}), encoding="utf-8")
    assert structure_change.load(yaml_file).to_dict() | {"sources": []} == structure_change.load(
        json_file
    ).to_dict() | {"sources": []}
    broken = tmp_path / "broken.yaml"
    broken.write_text("heads_per_layer: {1: 2\n", encoding="utf-8")
    with pytest.raises(StructureDeclarationError, match="not valid YAML or JSON at line"):
        structure_change.load(broken)
    with pytest.raises(StructureDeclarationError, match="cannot read the file"):
        structure_change.load(tmp_path / "missing.yaml")


def test_a_declaration_must_change_what_the_baseline_has() -> None:
    base = description()
    for raw, words in (
        ({"heads_per_layer": {3: 2}}, "the baseline has 3 layers"),
        ({"heads_per_layer": {1: 4}}, "the baseline's own value"),
        ({"num_experts": {0: 2}}, "that baseline layer's MoE is dense"),
        ({"vocab_size": 90}, "a declared vocabulary grows"),
        ({"vocab_size": 102, "added_tokens": ["<a>"]}, "1 added token"),
        ({"layers_removed": [0, 1, 2]}, "all 3 layers removed"),
        ({"layers_removed": [1], "mlp_dims": {1: 16}}, "a layer it also declares removed"),
    ):
        with pytest.raises(StructureDeclarationError, match=words):
            parse(raw, "decl.yaml").check_applies_to(base)
    with pytest.raises(StructureDeclarationError, match="not described per layer"):
        parse({"num_experts": {1: 2}}, "decl.yaml").check_applies_to({**base, "moe_per_layer": None})


def test_two_declarations_merge_unless_they_disagree() -> None:
    a, b = parse({"heads_per_layer": {1: 2}}, "a"), parse({"heads_per_layer": {2: 2}, "vocab_size": 102}, "b")
    merged = a.merged(b)
    assert merged.per_layer["heads_per_layer"] == {1: 2, 2: 2} and merged.sources == ("a", "b")
    with pytest.raises(StructureDeclarationError, match="declare heads_per_layer of layer 1 as 2 and 3"):
        a.merged(parse({"heads_per_layer": {1: 3}}, "c"))
    with pytest.raises(StructureDeclarationError, match="two vocabularies"):
        b.merged(parse({"vocab_size": 104}, "c"))


def test_the_subject_must_differ_by_exactly_the_declaration() -> None:
    base = description()
    pruned = description(heads_per_layer=[4, 2, 4], kv_heads_per_layer=[2, 1, 2])
    declared = parse({"heads_per_layer": {1: 2}, "kv_heads_per_layer": {1: 1}}, "pruned.yaml")
    check = structure_check(base, pruned, declared)
    assert check.passed, check.detail
    assert "layer 1 heads_per_layer 4 -> 2 as declared" in check.detail
    # Undeclared: named by layer and key.
    undeclared = structure_check(base, pruned)
    assert not undeclared.passed
    assert "layer 1 heads_per_layer: baseline 4, subject 2, not declared" in undeclared.detail
    assert "layer 1 kv_heads_per_layer" in undeclared.detail
    # Declared, but not made.
    absent = structure_check(base, base, declared)
    assert not absent.passed and "layer 1 heads_per_layer: declared 2, subject has 4" in absent.detail
    # Declared in part: the rest of the difference is still undeclared.
    partial = structure_check(base, pruned, parse({"heads_per_layer": {1: 2}}, "p"))
    assert not partial.passed and "kv_heads_per_layer: baseline 2, subject 1, not declared" in partial.detail
    assert "layer 1 heads_per_layer" not in partial.detail


def test_experts_removed_and_layers_removed_line_up_by_baseline_index() -> None:
    base = description()
    fewer = [dict(e, num_experts=3) if e else None for e in base["moe_per_layer"]]
    subject = description(
        moe_per_layer=[None, fewer[1], base["moe_per_layer"][2]],
        moe={**base["moe"], "varies_per_layer": True},
    )
    check = structure_check(base, subject, parse({"num_experts": {1: 3}}, "experts.yaml"))
    assert check.passed, check.detail
    assert "layer 1 num_experts 4 -> 3 as declared" in check.detail
    undeclared = structure_check(base, subject)
    assert (
        not undeclared.passed
        and "layer 1 num_experts: baseline 4, subject 3, not declared" in undeclared.detail
    )

    shorter = description(
        n_layer=2,
        heads_per_layer=[4, 4],
        kv_heads_per_layer=[2, 2],
        mlp_dims=[64, 32],
        layer_types=["full_attention"] * 2,
        moe_per_layer=base["moe_per_layer"][:2],
    )
    removed = structure_check(base, shorter, parse({"layers_removed": [2]}, "removed.yaml"))
    assert removed.passed, removed.detail
    assert "layer 2 layer present -> removed as declared" in removed.detail
    wrong_one = structure_check(base, shorter, parse({"layers_removed": [0]}, "removed.yaml"))
    assert (
        not wrong_one.passed and "layer 1 mlp_dims: baseline 32, subject 64, not declared" in wrong_one.detail
    )
    assert not structure_check(base, shorter).passed
    assert not structure_check(base, base, parse({"layers_removed": [2]}, "r")).passed


def test_a_declared_vocabulary_is_the_subjects_vocab_growth_unified() -> None:
    base = description()
    grown = description(vocab_size=102)
    assert structure_check(base, grown, parse({"vocab_size": 102}, "v")).passed
    growth = {"base_vocab_size": 100, "vocab_size": 102, "added_tokens": ["<a>", "<b>"]}
    both = structure_check(base, {**grown, "vocab_growth": growth}, parse({"vocab_size": 102}, "v"))
    assert both.passed, both.detail
    with pytest.raises(StructureDeclarationError, match="two vocabularies"):
        structure_check(
            base,
            {**grown, "vocab_growth": growth},
            parse({"vocab_size": 102, "added_tokens": ["<x>", "<y>"]}, "v"),
        )
    assert not structure_check(base, grown, parse({"vocab_size": 104}, "v")).passed


def test_the_run_config_declares_under_edit() -> None:
    config = parse_config({"model": {"id": "m"}, "edit": {"structure_change": {"mlp_dims": {0: 16}}}})
    assert config["edit"]["structure_change"] == {"mlp_dims": {0: 16}}
    with pytest.raises(
        StructureDeclarationError, match=r"config: 'edit\.structure_change': unknown key 'mlp'"
    ):
        parse_config({"model": {"id": "m"}, "edit": {"structure_change": {"mlp": {0: 16}}}})
    assert StructureChange() == parse(None, "x")
