"""`invarlock plugins adapters` with real plugins installed: invarlock-hf, the third-party sample
invarlock-tinylinear, and invarlock-broken, whose plugin raises at import.

The broken plugin is listed as an error while everything else keeps working, and the listing
imports no backend even though every installed plugin is loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema

from invarlock.catalogue import FIRST_PARTY

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "docs" / "schemas" / "plugins-adapters.v1.json"
HEAVY = (
    "torch",
    "transformers",
    "safetensors",
    "huggingface_hub",
    "accelerate",
    "optimum",
    "bitsandbytes",
    "gptqmodel",
    "onnxruntime",
)


def invarlock(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invarlock.cli", *args], capture_output=True, text=True, check=True
    )


def adapters() -> dict[str, Any]:
    return json.loads(invarlock("plugins", "adapters", "--json").stdout)  # type: ignore[no-any-return]


def test_listing_matches_the_published_schema() -> None:
    jsonschema.validate(adapters(), json.loads(SCHEMA.read_text()))


def test_broken_plugin_is_an_error_row_and_the_rest_still_works() -> None:
    items = {item["name"]: item for item in adapters()["adapters"]}
    broken = items["broken"]
    assert broken["status"] == "error"
    assert broken["origin"] == "third-party"
    assert "RuntimeError: invarlock-broken fails at import on purpose" in broken["reason"]
    assert items["tinylinear"]["status"] == "ready"
    for name in ("hf_causal", "hf_mlm", "hf_seq2seq", "hf_auto"):
        assert items[name]["status"] == "ready", items[name]["reason"]
        assert items[name]["origin"] == "first-party"


def test_every_first_party_adapter_is_listed_with_a_way_forward() -> None:
    items = {item["name"]: item for item in adapters()["adapters"]}
    for name, entry in FIRST_PARTY.items():
        item = items[name]
        assert item["distribution"] == entry.distribution
        if item["status"] == "needs_extra":
            assert item["install"].startswith("pip install "), item


def test_plugins_command_shows_the_error_and_the_hooks() -> None:
    listing = json.loads(invarlock("plugins", "--json").stdout)
    plugins = {plugin["name"]: plugin for plugin in listing["plugins"]}
    assert plugins["broken"]["status"] == "error"
    assert plugins["broken"]["distribution"] == "invarlock-broken"
    assert plugins["tinylinear"]["status"] == "loaded"
    assert "invarlock_restore_chunked" in plugins["tinylinear"]["hooks"]
    assert plugins["tinylinear"]["adapters"] == ["tinylinear"]
    text = invarlock("plugins").stdout
    assert "broken  invarlock-broken 0.1.0  [error]" in text
    assert "error: RuntimeError: invarlock-broken fails at import on purpose" in text


def test_version_lists_every_plugin_distribution() -> None:
    text = invarlock("--version").stdout
    assert "invarlock-tinylinear 0.1.0" in text
    assert "invarlock-hf " in text
    assert "invarlock-broken 0.1.0 (error)" in text


def test_listing_imports_no_backend_with_every_plugin_loaded() -> None:
    code = (
        "import sys, json, io, contextlib\n"
        "from invarlock.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['plugins', 'adapters', '--json'])\n"
        "from invarlock.manager import get_plugin_manager\n"
        "records = get_plugin_manager().plugin_records.values()\n"
        "loaded = sorted(r.name for r in records if r.status == 'loaded')\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(json.dumps({'loaded': loaded, 'heavy': heavy}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    assert {"hf", "tinylinear"} <= set(result["loaded"])
    assert result["heavy"] == []
