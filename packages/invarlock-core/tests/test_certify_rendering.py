"""Certificates on disk: the schemas, the three renderings and the all-or-nothing write.

The documents are the examples in docs/examples/, written by a real `invarlock certify` and
`invarlock run` on the demo model (see docs/certify.md), so the schemas are checked against what
the commands actually produce.
"""

from __future__ import annotations

import copy
import json
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
    assert f'<div class="verdict {certificate["verdict"]}">' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for fetch in ("<script", "<link", "src=", "@import", "url(", "http://", "https://"):
        assert fetch not in page
    assert page.count("<svg") == 2
    assert page.count("<title>window ") == certificate["stats"]["windows"]


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
