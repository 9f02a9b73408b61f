"""``invarlock run --config``: the YAML is checked key by key with one-sentence errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from invarlock.certification.evaluation.distribution import DEFAULT_TOP_K
from invarlock.config import dataset_spec, edit_plan, load_config, load_options, parse_config, window_count
from invarlock.errors import ConfigError

SEED_SHAPED = """
model:
  id: gpt2
  adapter: auto
  device: auto
  torch_dtype: float16
  trust_remote_code: false
  revision: main
  cache_dir: /tmp/cache
  device_map: auto
dataset:
  provider: wikitext2
  seq_len: 128
  stride: 128
  preview_n: 8
  final_n: 8
  seed: 43
edit:
  name: quant_rtn
  plan:
    bitwidth: 8
    group_size: 128
    per_channel: true
    scope: ffn
context:
  snapshot:
    mode: chunked
output:
  dir: runs
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_seed_shaped_config_is_accepted_and_completed(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, SEED_SHAPED))
    assert config["model"]["id"] == "gpt2"
    assert load_options(config) == {
        "dtype": "float16",
        "trust_remote_code": False,
        "revision": "main",
        "cache_dir": "/tmp/cache",
        "device_map": "auto",
    }
    assert dataset_spec(config) == ("hf:wikitext:wikitext-2-raw-v1", "validation")
    assert window_count(config) == 16
    assert edit_plan(config) == {"bitwidth": 8, "group_size": 128, "per_channel": True, "scope": "ffn"}
    assert config["context"]["snapshot"]["mode"] == "chunked"
    assert config["eval"]["gate"]["max_ratio"] == pytest.approx(1.10)


def test_minimal_config_gets_defaults() -> None:
    config = parse_config({"model": {"id": "/models/base"}})
    assert config["model"]["adapter"] == "auto"
    assert config["edit"]["name"] == "noop"
    assert config["context"]["snapshot"]["mode"] == "auto"
    assert dataset_spec(config) == ("pydoc", None)
    assert window_count(config) == 64
    assert load_options(config) == {"trust_remote_code": False}
    assert config["eval"]["top_k"] == DEFAULT_TOP_K
    assert config["eval"]["gate"]["max_kl"] is None and config["eval"]["gate"]["min_top1_agreement"] is None


def test_distribution_keys_are_read() -> None:
    raw = {"model": {"id": "m"}, "eval": {"top_k": 32, "gate": {"max_kl": 1, "min_top1_agreement": 0.9}}}
    config = parse_config(raw)
    assert config["eval"]["top_k"] == 32
    assert config["eval"]["gate"]["max_kl"] == 1.0 and isinstance(config["eval"]["gate"]["max_kl"], float)
    assert config["eval"]["gate"]["min_top1_agreement"] == 0.9


def test_undeclared_model_keys_are_the_adapters_load_options() -> None:
    # Core names no backend's flags: bitsandbytes' load_in_8bit reaches resolution and the adapter as given.
    raw = {"id": "m", "load_in_8bit": True, "bnb_4bit_quant_type": "nf4", "dtype": "bf16"}
    config = parse_config({"model": raw})
    assert load_options(config) == {
        "trust_remote_code": False,
        "dtype": "bf16",
        "load_in_8bit": True,
        "bnb_4bit_quant_type": "nf4",
    }


def test_core_names_no_backend_and_none_of_its_flags() -> None:
    # One decider for "auto": the plugins read the load options. Only the catalogue of first-party
    # adapters (their names and distributions) may name them.
    import invarlock

    package = Path(invarlock.__file__).parent
    for module in sorted(package.rglob("*.py")):
        if module.name == "catalogue.py":
            continue
        source = module.read_text(encoding="utf-8")
        for word in ("load_in_8bit", "load_in_4bit", "bnb_4bit", "BNB_LOAD_FLAGS", "bitsandbytes", "hf_bnb"):
            assert word not in source, f"{module.relative_to(package)} names {word}"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"model": {"id": "m"}, "eval": {"gate": {"max_ratio": float("nan")}}}, "'eval.gate.max_ratio'"),
        ({"model": {"id": "m"}, "eval": {"gate": {"max_ratio": float("inf")}}}, "'eval.gate.max_ratio'"),
        ({"model": {"id": "m"}, "eval": {"gate": {"confidence": float("-inf")}}}, "'eval.gate.confidence'"),
        ({"model": {"id": "m", "llm_int8_threshold": float("nan")}}, "'model.llm_int8_threshold'"),
        ({"model": {"id": "m", "device_map": {"a": [1.0, float("inf")]}}}, "'model.device_map.a[1]'"),
    ],
)
def test_non_finite_numbers_are_refused(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert caught.value.code == "config_invalid"
    assert f"config: {message} must be a finite number, got " in str(caught.value)
    assert "\n" not in str(caught.value)


def test_non_finite_max_ratio_in_a_yaml_file_is_refused(tmp_path: Path) -> None:
    for spelling in (".nan", ".inf", "-.inf", ".NaN"):
        path = tmp_path / "run.yaml"
        path.write_text(f"model:\n  id: m\neval:\n  gate:\n    max_ratio: {spelling}\n")
        with pytest.raises(ConfigError, match=r"'eval\.gate\.max_ratio' must be a finite number"):
            load_config(path)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"model": {"id": "m", "devise": "cpu"}}, "unknown key 'model.devise' (did you mean model.device?)"),
        (
            {"model": {"id": "m"}, "guards": {}},
            "unknown key 'guards'; keys allowed at the top level are model,",
        ),
        (
            {"model": {"id": "m"}, "edit": {"name": "quant_rtn", "plan": {"bitz": 4}}},
            "unknown key 'edit.plan.bitz'",
        ),
        (
            {"model": {"id": "m", "trust_remote_code": "yes"}},
            "'model.trust_remote_code' must be true or false, got 'yes'",
        ),
        ({"model": {"id": 7}}, "'model.id' must be a string, got 7 (int)"),
        ({"model": {"id": "m"}, "dataset": {"seq_len": "long"}}, "'dataset.seq_len' must be an integer"),
        (
            {"model": {"id": "m"}, "dataset": {"seq_len": True}},
            "'dataset.seq_len' must be an integer, got true",
        ),
        ({"model": {"id": "m"}, "dataset": {"seq_len": 1}}, "'dataset.seq_len' must be at least 2"),
        ({"model": {}}, "'model.id' is required"),
        ({"dataset": {}}, "'model.id' is required"),
        ({"model": "gpt2"}, "'model' must be a mapping of keys, got 'gpt2' (str)"),
        (
            {"model": {"id": "m"}, "edit": {"name": "prune"}},
            "'edit.name' must be one of noop, quant_rtn, got 'prune'",
        ),
        (
            {"model": {"id": "m"}, "context": {"snapshot": {"mode": "disk"}}},
            "must be one of auto, memory, chunked",
        ),
        (
            {"model": {"id": "m"}, "edit": {"plan": {"bitwidth": 4}}},
            "'edit.plan.bitwidth' applies to quant_rtn",
        ),
        (
            {"model": {"id": "m"}, "edit": {"name": "quant_rtn", "plan": {"bitwidth": 9}}},
            "between 2 and 8, got 9",
        ),
        ({"model": {"id": "m", "dtype": "float16", "torch_dtype": "float16"}}, "only one of 'model.dtype'"),
        ({"model": {"id": "m"}, "dataset": {"provider": "file"}}, "'dataset.path' is required"),
        (
            {"model": {"id": "m"}, "eval": {"gate": {"max_ratio": "1.1"}}},
            "'eval.gate.max_ratio' must be a number",
        ),
        ({"model": {"id": "m"}, "eval": {"gate": {"confidence": 1}}}, "must be below 1"),
        (
            {"model": {"id": "m"}, "eval": {"gate": {"max_kl": "0.1"}}},
            "'eval.gate.max_kl' must be a number or null, got '0.1'",
        ),
        ({"model": {"id": "m"}, "eval": {"gate": {"max_kl": -0.1}}}, "'eval.gate.max_kl' must be at least 0"),
        (
            {"model": {"id": "m"}, "eval": {"gate": {"min_top1_agreement": 1.5}}},
            "'eval.gate.min_top1_agreement' is a rate between 0 and 1, got 1.5",
        ),
        ({"model": {"id": "m"}, "eval": {"top_k": -1}}, "'eval.top_k' must be at least 0"),
        (
            {"model": {"id": "m"}, "eval": {"top_k": 0, "gate": {"min_top1_agreement": 0.9}}},
            "'eval.gate.min_top1_agreement' gates a distribution metric, but 'eval.top_k' 0 turns them off",
        ),
        (["model"], "must be a YAML mapping"),
    ],
)
def test_bad_configs_name_the_key_and_what_was_expected(raw: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, source="run.yaml")
    text = str(caught.value)
    assert message in text
    assert text.startswith("run.yaml")
    assert text.count(". ") == 0, "one sentence"


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "model:\n  id: m\n  device: [cpu\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML at line \d"):
        load_config(path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
