"""The `invarlock` command: `plugins adapters` (text, --json, --explain), `plugins`, `--version`."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import invarlock
import invarlock.manager
from invarlock.catalogue import FIRST_PARTY, FIRST_PARTY_DISTRIBUTIONS, GROUPS
from invarlock.cli import main
from invarlock.manager import InvarlockPluginManager

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[3] / "docs/schemas/plugins-adapters.v1.json").read_text()
)
HEAVY = (
    "torch",
    "transformers",
    "safetensors",
    "huggingface_hub",
    "accelerate",
    "datasets",
    "optimum",
    "bitsandbytes",
    "gptqmodel",
    "onnxruntime",
)


def first_party_installed() -> list[str]:
    found = []
    for distribution in sorted(FIRST_PARTY_DISTRIBUTIONS):
        try:
            version(distribution)
        except PackageNotFoundError:
            continue
        found.append(distribution)
    return found


@pytest.fixture
def core_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin manager of a machine where only invarlock-core is installed: no entry points."""
    monkeypatch.setattr(invarlock.manager, "_manager", InvarlockPluginManager())


def plugin_source(adapter: str, **spec: Any) -> str:
    fields = "".join(f", {key}={value}" for key, value in spec.items())
    return f"""
from invarlock import hookimpl
from invarlock.adapters import Adapter
from invarlock.types import AdapterSpec, Role

class ThisAdapter(Adapter):
    name = {adapter!r}

@hookimpl
def invarlock_register_adapters():
    return [AdapterSpec({adapter!r}, Role.CAUSAL, ThisAdapter{fields})]
"""


@pytest.fixture
def mixed_site(site: Any) -> Any:
    """Third-party plugins in every state the listing knows."""
    site.add_distribution("acme-ready", "2.0", plugins={"ready": plugin_source("acme_ready")})
    site.add_distribution(
        "acme-needy",
        "1.0",
        plugins={"needy": plugin_source("acme_needy", backend=("absentengine",))},
        requires=["absentengine>=3"],
    )
    site.add_distribution("acme-plan9", plugins={"plan9": plugin_source("acme_plan9", platforms=("plan9",))})
    site.add_distribution("acme-broken", "0.3", plugins={"broken": "raise ImportError('no backend here')\n"})
    site.add_distribution("acme-off", plugins={"off": plugin_source("acme_off")})
    site.add_distribution("acme-one", plugins={"one": plugin_source("acme_twin")})
    site.add_distribution("acme-two", plugins={"two": plugin_source("acme_twin")})
    return site


# -- core alone -------------------------------------------------------------------------------


def test_core_alone_lists_every_first_party_adapter_with_its_install(
    core_alone: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plugins", "adapters", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    jsonschema.validate(listing, SCHEMA)
    items = listing["adapters"]
    assert [item["name"] for item in items] == list(FIRST_PARTY)
    for item in items:
        entry = FIRST_PARTY[item["name"]]
        assert item["origin"] == "first-party"
        assert item["distribution"] == entry.distribution
        assert item["version"] is None
        if item["platforms"] and not sys.platform.startswith(tuple(item["platforms"])):
            assert item["status"] == "unsupported"
        else:
            assert item["status"] == "needs_extra"
            assert item["install"] == f"pip install {entry.distribution}"
            assert item["missing"] == [entry.distribution]


def test_core_alone_text_listing(core_alone: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "adapters"]) == 0
    text = capsys.readouterr().out
    positions = [text.index(group) for group in GROUPS[:3]]
    assert positions == sorted(positions), "groups are listed in capability-matrix order"
    for entry in FIRST_PARTY.values():
        assert entry.adapter in text
        if sys.platform.startswith("linux"):
            assert f"-> pip install {entry.distribution}" in text
    assert f"0 of {len(FIRST_PARTY)} adapters ready" in text


def test_core_alone_plugins_command(core_alone: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    assert "No plugins installed" in capsys.readouterr().out


@pytest.mark.skipif(
    bool(first_party_installed()), reason="first-party adapters are installed in this environment"
)
def test_installed_core_alone_through_the_console_script(cli: Any) -> None:
    """The done-when check, as a user runs it after `pip install ./packages/invarlock-core`."""
    done = cli("plugins", "adapters")
    assert done.returncode == 0, done.stderr
    for entry in FIRST_PARTY.values():
        assert f"{entry.adapter} " in done.stdout
        assert f"-> pip install {entry.distribution}" in done.stdout
    assert f"0 of {len(FIRST_PARTY)} adapters ready" in done.stdout


# -- the listing with plugins in every state ---------------------------------------------------


def test_json_listing_matches_the_schema_in_every_state(mixed_site: Any, listing: Any) -> None:
    env = {**mixed_site.env, "INVARLOCK_DISABLE_PLUGINS": "acme-off"}
    result = listing(env=env)
    jsonschema.validate(result, SCHEMA)
    assert result["schema"] == "invarlock.plugins.adapters/v1"
    assert result["invarlock_core"] == invarlock.__version__
    items = {item["name"]: item for item in result["adapters"]}
    assert items["acme_ready"]["status"] == "ready"
    assert items["acme_needy"]["status"] == "needs_extra"
    assert items["acme_needy"]["install"] == 'pip install "absentengine>=3"'
    assert items["acme_plan9"]["status"] == "unsupported"
    assert items["broken"]["status"] == "error"
    assert "ImportError: no backend here" in items["broken"]["reason"]
    assert items["off"]["status"] == "disabled"
    assert items["acme_twin"]["status"] == "error"
    assert "acme-one and acme-two" in items["acme_twin"]["reason"]
    third_party = [item for item in result["adapters"] if item["group"] == "Third-party"]
    assert result["adapters"][-len(third_party) :] == third_party, "third-party adapters come last"


def test_text_listing_shows_each_fix(mixed_site: Any, cli: Any, listing: Any) -> None:
    items = listing(env=mixed_site.env)["adapters"]
    text = cli("plugins", "adapters", env=mixed_site.env).stdout
    assert "Third-party" in text
    flat = " ".join(text.split())  # follow-up lines are wrapped to the terminal's width
    for item in items:
        assert item["name"] in text
        if item["install"]:
            assert f"-> {item['install']}" in flat
        elif item["reason"]:
            assert f"-> {' '.join(item['reason'].split())}" in flat


def test_explain(mixed_site: Any, cli: Any) -> None:
    done = cli("plugins", "adapters", "--explain", "acme_needy", env=mixed_site.env)
    assert done.returncode == 0
    assert "acme_needy (Third-party, third-party)" in done.stdout
    assert 'install:      pip install "absentengine>=3"' in done.stdout
    assert "missing:      absentengine>=3" in done.stdout
    done = cli("plugins", "adapters", "--explain", "hf_bnb", "--json", env=mixed_site.env)
    item = json.loads(done.stdout)
    assert item["name"] == "hf_bnb"
    jsonschema.validate(item, {**SCHEMA["$defs"]["adapter"], "$defs": SCHEMA["$defs"]})


def test_explain_unknown_name_suggests_and_exits_2(cli: Any) -> None:
    done = cli("plugins", "adapters", "--explain", "hf_casual")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("invarlock: error [adapter_not_found]: ")
    assert "did you mean hf_causal?" in done.stderr


def test_plugins_lists_distributions_hooks_and_errors(mixed_site: Any, cli: Any) -> None:
    done = cli("plugins", env=mixed_site.env)
    assert done.returncode == 0
    assert "ready  acme-ready 2.0  [loaded]" in done.stdout
    assert "hooks: invarlock_register_adapters" in done.stdout
    assert "adapters: acme_ready" in done.stdout
    assert "broken  acme-broken 0.3  [error]" in done.stdout
    assert "error: ImportError: no backend here (`invarlock plugins --traceback broken`)" in done.stdout
    listing = json.loads(cli("plugins", "--json", env=mixed_site.env).stdout)
    assert listing["schema"] == "invarlock.plugins/v1"
    ready = next(p for p in listing["plugins"] if p["name"] == "ready")
    assert ready == {
        "name": "ready",
        "distribution": "acme-ready",
        "version": "2.0",
        "status": "loaded",
        "error": None,
        "hooks": ["invarlock_register_adapters"],
        "adapters": ["acme_ready"],
        "faults": [],
    }


def test_version_lists_core_and_plugins_with_versions(mixed_site: Any, cli: Any) -> None:
    done = cli("--version", env=mixed_site.env)
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert lines[0] == f"invarlock-core {invarlock.__version__}"
    assert "  acme-ready 2.0" in lines
    assert "  acme-broken 0.3 (error)" in lines


def test_no_command_prints_help_and_exits_2(cli: Any) -> None:
    done = cli()
    assert done.returncode == 2
    assert "usage: invarlock" in done.stdout


# -- start-up cost ----------------------------------------------------------------------------


def test_cli_and_listing_import_no_backend(tmp_path: Path) -> None:
    """Stand-ins named like each heavy library record any import, even one guarded by try/except.

    Installed plugins are disabled: this is about core (tests-integration checks real plugins).
    """
    from importlib.metadata import entry_points

    for name in HEAVY:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
    code = (
        "import contextlib, io, json, sys\n"
        "import invarlock, invarlock.adapters, invarlock.cli, invarlock.description, invarlock.network\n"
        "from invarlock.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['plugins', 'adapters', '--json'])\n"
        "    main(['plugins'])\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))\n"
    )
    installed = ",".join(sorted({ep.name for ep in entry_points(group="invarlock")}))
    env = {"PYTHONPATH": str(tmp_path), "INVARLOCK_DISABLE_PLUGINS": installed}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
