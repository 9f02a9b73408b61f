"""``invarlock plugins quantizers``: plugins' rows collected, completed, cached and rendered by core."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pytest

from invarlock import hookimpl
from invarlock.cli import main
from invarlock.manager import InvarlockPluginManager, reset_plugin_manager
from invarlock.quantizers import CACHE_DIR_ENV, QuantizationMethod, QuantizerStatus, quantization_methods

DOCS = Path(__file__).resolve().parents[3] / "docs"


def _row(method: str, status: QuantizerStatus, **fields: str) -> QuantizationMethod:
    return QuantizationMethod(
        method=method, status=status, reason=f"{method} says so", library="lib", **fields
    )


class Lists:
    """A plugin whose hook answers with fixed rows and counts its calls."""

    def __init__(self, rows: list[QuantizationMethod]) -> None:
        self.rows, self.calls = rows, 0

    @hookimpl
    def invarlock_quantization_methods(self) -> list[QuantizationMethod]:
        self.calls += 1
        return self.rows


class Raises:
    @hookimpl
    def invarlock_quantization_methods(self) -> list[QuantizationMethod]:
        raise RuntimeError("backend exploded")


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh cache directory, and only the in-process plugins each test registers (installed
    adapter distributions, where a developer's environment has them, stay out)."""
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(InvarlockPluginManager, "load_entrypoints", lambda self: None)
    yield tmp_path / "cache"
    monkeypatch.undo()
    reset_plugin_manager()


def test_rows_are_collected_sorted_and_the_first_plugin_asked_answers() -> None:
    """pluggy asks the plugin registered last first (a third-party plugin before invarlock-hf)."""
    generic = Lists([_row("zeta", QuantizerStatus.NEEDS_GPU), _row("alpha", QuantizerStatus.UNSUPPORTED)])
    specific = Lists([_row("alpha", QuantizerStatus.LOADS), _row("beta", QuantizerStatus.NEEDS_EXTRA)])
    reset_plugin_manager([("generic", generic), ("specific", specific)])
    listing = quantization_methods()
    assert [(r.method, r.status) for r in listing.methods] == [
        ("alpha", QuantizerStatus.LOADS),
        ("beta", QuantizerStatus.NEEDS_EXTRA),
        ("zeta", QuantizerStatus.NEEDS_GPU),
    ]
    assert listing.errors == () and listing.cached is False


def test_answers_are_cached_until_refresh() -> None:
    plugin = Lists([_row("alpha", QuantizerStatus.LOADS)])
    reset_plugin_manager([("lists", plugin)])
    assert quantization_methods().cached is False
    again = quantization_methods()
    assert again.cached is True and plugin.calls == 1
    assert [r.method for r in again.methods] == ["alpha"]
    assert quantization_methods(refresh=True).cached is False and plugin.calls == 2


def test_a_plugin_that_raises_loses_only_its_rows_and_is_not_cached() -> None:
    plugin = Lists([_row("alpha", QuantizerStatus.LOADS)])
    reset_plugin_manager([("lists", plugin), ("raises", Raises())])
    listing = quantization_methods()
    assert [r.method for r in listing.methods] == ["alpha"]
    assert (
        len(listing.errors) == 1 and "raises" in listing.errors[0] and "backend exploded" in listing.errors[0]
    )
    assert quantization_methods().cached is False  # a partial answer is never cached


def test_adapter_rows_get_the_adapters_readiness() -> None:
    # hf_gptq is a catalogue adapter; its distribution is not installed in this environment.
    reset_plugin_manager([("lists", Lists([_row("gptq", QuantizerStatus.ADAPTER, adapter="hf_gptq")]))])
    (row,) = quantization_methods().methods
    assert row.adapter_status == "needs_extra"
    assert row.install == "pip install invarlock-gptq"


def test_json_follows_the_schema_and_the_table_shows_install_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = [
        _row("alpha", QuantizerStatus.NEEDS_EXTRA, install="pip install alpha-kernels"),
        _row("gptq", QuantizerStatus.ADAPTER, adapter="hf_gptq"),
    ]
    reset_plugin_manager([("lists", Lists(rows))])
    assert main(["plugins", "quantizers", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    schema = json.loads((DOCS / "schemas" / "plugins-quantizers.v1.json").read_text())
    jsonschema.validate(document, schema)
    assert document["schema"] == schema["$id"] == schema["properties"]["schema"]["const"]
    assert main(["plugins", "quantizers"]) == 0
    table = capsys.readouterr().out
    assert "-> pip install alpha-kernels" in table
    assert "hf_gptq (needs_extra)" in table and "-> pip install invarlock-gptq" in table
    assert "2 methods: 1 adapter, 1 needs_extra." in table


def test_errors_make_the_command_fail(capsys: pytest.CaptureFixture[str]) -> None:
    reset_plugin_manager([("raises", Raises())])
    assert main(["plugins", "quantizers"]) == 1
    out = capsys.readouterr().out
    assert "No plugin lists quantization methods" in out and "error: plugin raises" in out


def test_rows_round_trip_through_json() -> None:
    row = _row("alpha", QuantizerStatus.LOADS_DEQUANTIZED, quantizer="AlphaQuantizer")
    assert QuantizationMethod.from_json(json.loads(json.dumps(row.as_json()))) == row
    assert SimpleNamespace(**row.as_json()).status == "loads_dequantized"


def test_an_install_or_a_visible_gpu_change_asks_the_plugins_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = Lists([_row("alpha", QuantizerStatus.LOADS)])
    reset_plugin_manager([("lists", plugin)])
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    quantization_methods()
    assert quantization_methods().cached is True
    (site / "alpha_kernels-1.0.dist-info").mkdir()  # what pip leaves when it installs a backend
    assert quantization_methods().cached is False
    assert quantization_methods().cached is True
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert quantization_methods().cached is False
    assert plugin.calls == 3
