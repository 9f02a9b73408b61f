"""Certificates on disk: the schemas, the three renderings and the all-or-nothing write.

The documents are the examples in docs/examples/, written by a real `invarlock certify` and
`invarlock run` on the demo model (see docs/certify.md), so the schemas are checked against what
the commands actually produce.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from invarlock.certification.certificate import (
    CERTIFICATE_SCHEMA,
    REPORT_SCHEMA,
    write_certificate,
    write_report,
)
from invarlock.certification.certificate.html import render_html
from invarlock.certification.certificate.markdown import render_markdown
from invarlock.certification.certificate.text import distribution_line
from invarlock.certification.certify import certificate_id
from invarlock.errors import InvarlockError

DOCS = Path(__file__).resolve().parents[3] / "docs"
SCHEMAS = DOCS / "schemas"


def load(path: Path) -> Any:
    return json.loads(path.read_text())


@pytest.fixture
def certificate() -> dict[str, Any]:
    return load(DOCS / "examples" / "certificate.json")  # type: ignore[no-any-return]


@pytest.fixture
def report() -> dict[str, Any]:
    return load(DOCS / "examples" / "evaluation.report.json")  # type: ignore[no-any-return]


def validate(document: dict[str, Any], schema: str) -> None:
    jsonschema.validate(document, load(SCHEMAS / schema))


@pytest.mark.parametrize("name", ["certificate.v1.json", "report.v1.json"])
def test_schemas_are_valid_json_schema(name: str) -> None:
    jsonschema.Draft202012Validator.check_schema(load(SCHEMAS / name))


def test_schema_ids_match_what_the_commands_write() -> None:
    assert load(SCHEMAS / "certificate.v1.json")["properties"]["schema"]["const"] == CERTIFICATE_SCHEMA
    assert load(SCHEMAS / "report.v1.json")["properties"]["schema"]["const"] == REPORT_SCHEMA


def test_shared_definitions_are_identical_in_both_schemas() -> None:
    certificate_defs = load(SCHEMAS / "certificate.v1.json")["$defs"]
    for name, definition in load(SCHEMAS / "report.v1.json")["$defs"].items():
        assert definition == certificate_defs[name], name


def test_examples_match_their_schemas(certificate: dict[str, Any], report: dict[str, Any]) -> None:
    validate(certificate, "certificate.v1.json")
    validate(report, "report.v1.json")


def test_schema_rejects_what_it_must(certificate: dict[str, Any]) -> None:
    for mutate in (
        lambda c: c.pop("plugins"),
        lambda c: c.__setitem__("verdict", "MAYBE"),
        lambda c: c.__setitem__("exit_code", 1),  # a PASS exits 0
        lambda c: c["baseline"]["adapter"].pop("reason"),
        lambda c: c["stats"].__setitem__("ci", [1.0]),
        lambda c: c["dataset"]["windows"].__setitem__("window_ids", []),
        lambda c: c["subject"].pop("identity"),
        lambda c: c["baseline"]["identity"]["files"][0].__setitem__("sha256", "abc"),
        lambda c: c["gate"].pop("min_windows"),
        lambda c: c.pop("invocation"),
    ):
        broken = copy.deepcopy(certificate)
        mutate(broken)
        with pytest.raises(jsonschema.ValidationError):
            validate(broken, "certificate.v1.json")


def test_certificate_id_comes_from_content_never_from_path_spelling(certificate: dict[str, Any]) -> None:
    assert certificate_id(certificate) == certificate["certificate_id"]
    elsewhere = copy.deepcopy(certificate)
    elsewhere.update(created="2030-01-01T00:00:00+00:00", duration_s=99.0)
    for side in ("baseline", "subject"):
        elsewhere[side]["model_id"] = "/somewhere/else/" + elsewhere[side]["model_id"]
        elsewhere[side]["identity"]["hashing"] = {"seconds": 9.0, "mib_per_s": 1.0}
    elsewhere["invocation"].update(cwd="/elsewhere", command="invarlock certify ...")
    assert certificate_id(elsewhere) == certificate["certificate_id"]
    for mutate in (
        lambda c: c["subject"]["identity"].__setitem__("digest", "0" * 64),
        lambda c: c["baseline"]["identity"].__setitem__("digest", "0" * 64),
        lambda c: c["dataset"].__setitem__("sha256", "0" * 64),
        lambda c: c["dataset"]["windows"]["window_ids"].pop(),
        lambda c: c["gate"].__setitem__("max_ratio", 1.2),
        lambda c: c["environment"].__setitem__("invarlock_core", "9.9"),
        lambda c: c["subject"]["load_options"].__setitem__("dtype", "bfloat16"),
        lambda c: c["baseline"]["load_options"].__setitem__("device", "cuda:1"),
    ):
        changed = copy.deepcopy(certificate)
        mutate(changed)
        assert certificate_id(changed) != certificate["certificate_id"]


def test_markdown_leads_with_the_verdict(certificate: dict[str, Any]) -> None:
    text = render_markdown(certificate)
    assert text.startswith(f"# InvarLock certificate: ✅ {certificate['verdict']}")
    assert f"{certificate['stats']['ratio']:.4f}" in text
    assert "| structure | pass |" in text
    assert "| hf_causal | invarlock-hf |" in text
    assert f"sha256 {certificate['subject']['identity']['digest']}" in text
    assert "| weights_match_checkpoint_subject | pass |" in text
    assert f"`{certificate['invocation']['command']}`" in text


def test_the_distribution_metrics_are_shown_with_their_intervals(certificate: dict[str, Any]) -> None:
    block = certificate["distribution"]
    text = render_markdown(certificate)
    kl = block["kl"]
    interval = f"{kl['ci'][0]:.5f} – {kl['ci'][1]:.5f}"
    assert f"| KL(baseline‖subject), mean | {kl['mean']:.5f} nats/token | {interval} |" in text
    top1 = block["top1_agreement"]
    rate_ci = f"{100 * top1['ci'][0]:.2f} – {100 * top1['ci'][1]:.2f}"
    assert f"| top-1 agreement | {100 * top1['rate']:.2f} % | {rate_ci} |" in text
    assert f"| Δp of the observed token, RMS | {100 * block['delta_p']['rms']:.2f} pp |" in text
    assert block["approximation"] in text
    without = {k: v for k, v in certificate.items() if k != "distribution"}
    assert "## Distribution" not in render_markdown(without), "a certificate with --top-k 0 has none"
    summary_line = distribution_line(block)
    assert (
        summary_line.startswith(f"KL {kl['mean']:.5f} nats/token (CI ")
        and f"top {block['top_k']}" in summary_line
    )


BARE_NUMBER_CELL = re.compile(r"\|\s*-?\d+(?:\.\d+)?\s*(?=\|)")
"""A table cell that is a number with no unit."""


def markdown_problems(text: str, certificate: dict[str, Any]) -> list[str]:
    """What a reader of the Markdown certificate would trip over: a ``None``, an adapter listed as
    installed that is not, a number in a table without its unit."""
    problems = [f"None printed: {line}" for line in text.splitlines() if re.search(r"\bNone\b", line)]
    table = text.split("## Adapters installed", 1)[1]
    listed = set(re.findall(r"^\| (\S+) \| ", table, flags=re.M)) - {"adapter"}
    installed = {a["name"] for a in certificate["plugins"]["adapters"] if a["version"] is not None}
    if listed != installed:
        problems.append(f"adapters listed {sorted(listed)}, installed {sorted(installed)}")
    lines = text.splitlines()
    problems += [f"number without unit: {line}" for line in lines if BARE_NUMBER_CELL.search(line)]
    for unit in (" ppl |", " nats/token", " windows of ", " tokens (", " KiB |", " parameters |"):
        if unit not in text:
            problems.append(f"no {unit.strip()!r} anywhere")
    if " s\n" not in text and " min\n" not in text:  # the duration: seconds, or minutes from 2 on
        problems.append("no duration unit anywhere")
    return problems


def test_markdown_prints_no_none_lists_installed_adapters_and_gives_units(
    certificate: dict[str, Any],
) -> None:
    assert certificate["environment"]["cuda"] is None  # the example was made on a CPU-only machine
    assert any(a["version"] is None for a in certificate["plugins"]["adapters"])
    text = render_markdown(certificate)
    assert markdown_problems(text, certificate) == []
    assert "- cuda: not available" in text
    assert "| n_params | 1049728 parameters | 1049728 parameters |" in text
    assert "| heads_per_layer | 4 heads in each of 4 layers |" in text
    assert "| moe_per_layer | dense in each of 4 layers |" in text
    not_installed = sum(a["version"] is None for a in certificate["plugins"]["adapters"])
    assert f"{not_installed} more adapters are catalogued but not installed" in text


def test_markdown_of_an_inconclusive_certificate_prints_no_none(certificate: dict[str, Any]) -> None:
    """Every optional value empty at once: an unknown ratio and interval, no hub revision, a PEFT
    block with unknown fields, a per-layer list of mixed values."""
    empty = copy.deepcopy(certificate)
    empty["verdict"] = "INCONCLUSIVE"
    empty["stats"].update(ratio=None, ci=[None, None], subject_ppl=None, mean_delta_log_loss=None)
    empty["subject"]["description"]["peft"] = {
        "method": "lora",
        "rank": 8,
        "alpha": None,
        "dropout": None,
        "target_modules": None,
        "adapted_layers": [],
        "adapter_parameters": None,
        "base": "b",
        "base_adapter": None,
    }
    empty["subject"]["description"]["kv_heads_per_layer"] = [2, 2, None, 1]
    empty["invocation"]["command"] = None
    text = render_markdown(empty)
    assert [line for line in text.splitlines() if re.search(r"\bNone\b", line)] == []
    assert "| **kv_heads_per_layer** | 2 heads in each of 4 layers | 2, 2, –, 1 heads |" in text


def test_markdown_escapes_model_paths(certificate: dict[str, Any]) -> None:
    hostile = copy.deepcopy(certificate)
    hostile["subject"]["model_id"] = "/m/<img src=x onerror=alert(1)>`</code><script>x</script>"
    hostile["baseline"]["model_id"] = "`leading backtick"
    hostile["subject"]["adapter"]["reason"] = "config.json of /m/<b>x</b>|y names a causal LM"
    text = render_markdown(hostile)
    assert "- **Subject:** ``/m/<img src=x onerror=alert(1)>`</code><script>x</script>``" in text
    assert "- **Baseline:** `` `leading backtick ``" in text
    assert "<b>" not in text and "&lt;b&gt;x&lt;/b&gt;\\|y" in text
    outside_code = text.replace("``/m/<img src=x onerror=alert(1)>`</code><script>x</script>``", "")
    assert "<img" not in outside_code and "<script" not in outside_code


def test_html_is_standalone_and_escapes_what_it_shows(certificate: dict[str, Any]) -> None:
    hostile = copy.deepcopy(certificate)
    hostile["subject"]["model_id"] = "<script>alert(1)</script>"
    page = render_html(hostile)
    assert page.startswith("<!DOCTYPE html>")
    assert f'<header class="verdict {certificate["verdict"]}">' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for fetch in ("<script", "<link", "src=", "@import", "url(", "http://", "https://"):
        assert fetch not in page
    assert page.count("<svg") == 6  # three charts, each drawn for wide and narrow screens
    assert page.count("<title>window ") == 2 * certificate["stats"]["windows"]


def test_write_certificate_writes_three_files(certificate: dict[str, Any], tmp_path: Path) -> None:
    paths = write_certificate(copy.deepcopy(certificate), tmp_path / "cert")
    assert {k: p.name for k, p in paths.items()} == {
        "json": "certificate.json",
        "markdown": "certificate.md",
        "html": "certificate.html",
    }
    assert sorted(p.name for p in (tmp_path / "cert").iterdir()) == sorted(p.name for p in paths.values())
    assert load(paths["json"]) == certificate


def test_a_failed_write_leaves_nothing_behind(certificate: dict[str, Any], tmp_path: Path) -> None:
    unrenderable = copy.deepcopy(certificate)
    del unrenderable["stats"]["per_window"]
    with pytest.raises(KeyError):
        write_certificate(unrenderable, tmp_path / "a")
    assert not (tmp_path / "a").exists()

    blocker = tmp_path / "b"
    blocker.write_text("a file where the directory should go")
    with pytest.raises(InvarlockError, match="choose another --out"):
        write_certificate(copy.deepcopy(certificate), blocker)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_non_finite_numbers_are_refused_rather_than_written_as_nan(
    report: dict[str, Any], tmp_path: Path
) -> None:
    broken = copy.deepcopy(report)
    broken["stats"]["ratio"] = float("nan")
    with pytest.raises(ValueError):
        write_report(broken, tmp_path)
    assert list(tmp_path.iterdir()) == []
