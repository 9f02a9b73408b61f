"""Per-side load options: how the command line builds each side, which keys an adapter accepts, and
where each part of a placed model is recorded as having run."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from invarlock.adapters import Adapter, check_load_options
from invarlock.certification.certify import CertifyOptions, placement
from invarlock.certification.sides import SideOptions
from invarlock.cli import build_parser
from invarlock.cli.certify import side_options
from invarlock.errors import InvalidLoadOptionError
from invarlock.types import AdapterSpec, Role

DECLARED = AdapterSpec(
    "declared", Role.CAUSAL, Adapter, load_options=frozenset({"dtype", "device_map", "revision", "base"})
)
UNDECLARED = AdapterSpec("undeclared", Role.CAUSAL, Adapter)


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["certify", "--baseline", "b", "--subject", "s", *argv])


def test_flags_apply_to_both_sides_and_each_sides_options_win() -> None:
    args = parse(
        "--dtype", "float16",
        "--device-map", "auto",
        "--max-memory", '{"cpu": "200MB"}',
        "--offload-folder", "off",
        "--subject-option", "dtype=bfloat16",
        "--subject-option", "device=cpu",
        "--baseline-option", "max_memory={\"0\": \"10GiB\", \"cpu\": \"1GiB\"}",
        "--baseline-option", "revision=abc123",
        "--subject-base", "./base",
    )  # fmt: skip
    baseline, subject = side_options(args, "baseline"), side_options(args, "subject")
    assert baseline == SideOptions(
        "auto",
        "auto",
        {
            "dtype": "float16",
            "device_map": "auto",
            "max_memory": {"0": "10GiB", "cpu": "1GiB"},
            "offload_folder": "off",
            "revision": "abc123",
        },
    )
    assert subject == SideOptions(
        "auto",
        "cpu",
        {
            "dtype": "bfloat16",
            "device_map": "auto",
            "max_memory": {"cpu": "200MB"},
            "offload_folder": "off",
            "base": "./base",
        },
    )
    assert baseline.record()["device"] == "auto" and subject.record()["device"] == "cpu"


def test_values_are_json_when_they_parse_and_text_otherwise() -> None:
    args = parse(
        "--tp-plan", "auto",
        "--subject-option", "merge=true",
        "--subject-option", "n_ctx=256",
        "--subject-option", "revision=0123",
        "--subject-option", "device_map={\"\": \"cpu\"}",
    )  # fmt: skip
    options = side_options(args, "subject").load_options
    assert options == {
        "tp_plan": "auto",
        "merge": True,
        "n_ctx": 256,
        "revision": "0123",
        "device_map": {"": "cpu"},
    }
    assert side_options(parse("--subject-option", 'revision="1234"'), "subject").load_options == {
        "revision": "1234"
    }, "a JSON string keeps what would read as a number"


def test_a_key_that_is_always_text_keeps_the_value_as_written() -> None:
    """A revision of digits (a short commit hash) is not turned into a number: 1e5 would name
    revision 100000.0, and 1234567 a revision transformers cannot look up."""
    args = parse(
        "--subject-option", "revision=1234567",
        "--subject-option", "dtype=1e5",
        "--baseline-option", "offload_folder=2024",
        "--baseline-option", "device=0",
        "--subject-option", "n_ctx=256",
    )  # fmt: skip
    subject, baseline = side_options(args, "subject"), side_options(args, "baseline")
    assert subject.load_options == {"revision": "1234567", "dtype": "1e5", "n_ctx": 256}
    assert baseline.load_options == {"offload_folder": "2024"} and baseline.device == "0"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--subject-option", "dtype"], "--subject-option 'dtype' is not KEY=VALUE"),
        (["--baseline-option", "=cpu"], "--baseline-option '=cpu' is not KEY=VALUE"),
        (["--max-memory", "2GiB"], "--max-memory must be a JSON object"),
    ],
)
def test_unreadable_options_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(InvalidLoadOptionError, match=message):
        side_options(parse(*argv), "subject" if "--subject-option" in argv else "baseline")


def test_both_sides_alike() -> None:
    options = CertifyOptions.for_both("hf_causal", "cpu", {"dtype": "float32"})
    assert options.baseline == options.subject == SideOptions("hf_causal", "cpu", {"dtype": "float32"})


def test_a_key_the_adapter_does_not_declare_is_refused_with_the_closest() -> None:
    check_load_options(DECLARED, {"dtype": "float16", "base": "x"})
    with pytest.raises(InvalidLoadOptionError) as caught:
        check_load_options(DECLARED, {"device_mapp": "auto"}, "the subject")
    assert str(caught.value) == (
        "load option 'device_mapp' of the subject is not one adapter declared accepts; did you mean "
        "device_map? it accepts base, device_map, dtype, revision"
    )
    with pytest.raises(InvalidLoadOptionError, match="not one adapter declared accepts; it accepts"):
        check_load_options(DECLARED, {"num_hidden_layers": 2})


def test_an_adapter_declaring_nothing_gets_every_key_but_a_misspelt_common_one() -> None:
    check_load_options(UNDECLARED, {"n_ctx": 256, "merge": True, "dtype": "float16"})
    with pytest.raises(InvalidLoadOptionError, match="'max_memry' looks misspelt; did you mean max_memory"):
        check_load_options(UNDECLARED, {"max_memry": {"cpu": "1GiB"}})


@pytest.mark.parametrize("spec", [DECLARED, UNDECLARED])
def test_device_is_never_a_load_option(spec: AdapterSpec) -> None:
    with pytest.raises(
        InvalidLoadOptionError,
        match=r"device was given as a load option to adapter .*; it is a side's own setting",
    ):
        check_load_options(spec, {"device": "cpu"})


def test_placement_groups_modules_by_device_with_ranges() -> None:
    device_map: dict[str, Any] = {
        "model.embed_tokens": "cpu",
        **{f"model.layers.{i}": "cpu" for i in range(3)},
        **{f"model.layers.{i}": "disk" for i in range(3, 6)},
        "model.layers.6": "cpu",
        "model.norm": "disk",
        "lm_head": "disk",
    }
    assert placement(device_map) == {
        "cpu": ["model.embed_tokens", "model.layers.0-2, 6"],
        "disk": ["model.layers.3-5", "model.norm", "lm_head"],
    }
    assert placement({"": "cuda:0"}) == {"cuda:0": [""]}
    assert placement(None) is None
