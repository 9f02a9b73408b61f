"""The docs are part of the contract: every hook and every error code is documented, exactly."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
from pathlib import Path

import jsonschema
import pytest

import invarlock
import invarlock.hookspecs
from invarlock.description import REQUIRED_KEYS
from invarlock.errors import InvarlockError
from invarlock.manager import InvarlockPluginManager

DOCS = Path(__file__).resolve().parents[3] / "docs"


def hookspecs() -> dict[str, str]:
    """Hook name -> ``def name(params) -> result`` as inspect.signature renders it."""
    return {
        name: f"def {name}{inspect.signature(function)}".replace("'", "")
        for name, function in inspect.getmembers(invarlock.hookspecs, inspect.isfunction)
        if name.startswith("invarlock_")
    }


def documented_hooks() -> dict[str, tuple[str, str]]:
    """Hook name -> (signature line, section text) for each ``### invarlock_*`` section of hooks.md."""
    text = (DOCS / "hooks.md").read_text()
    sections = re.split(r"^### ", text, flags=re.MULTILINE)[1:]
    found: dict[str, tuple[str, str]] = {}
    for section in sections:
        title = section.splitlines()[0].strip()
        signatures = re.findall(r"```python\n(def .+)\n```", section)
        assert len(signatures) == 1, f"section {title} needs exactly one python signature block"
        assert title not in found, f"{title} is documented twice"
        found[title] = (signatures[0], section)
    return found


def test_every_hookspec_is_documented_with_its_exact_signature() -> None:
    specs = hookspecs()
    documented = documented_hooks()
    assert sorted(documented) == sorted(specs), "hooks.md documents a different set of hooks"
    for name, signature in specs.items():
        assert documented[name][0] == signature, f"hooks.md has a stale signature for {name}"


def test_describe_keys_in_hooks_md_are_the_validators() -> None:
    section = " ".join(documented_hooks()["invarlock_describe"][1].split())
    listed = re.search(r"required keys (.+?);", section)
    assert listed, "the invarlock_describe section of hooks.md lists no required keys"
    documented = re.findall(r"`(\w+)`", listed.group(1))
    assert len(documented) == len(set(documented)), "hooks.md lists a describe key twice"
    assert sorted(documented) == sorted(REQUIRED_KEYS), (
        "hooks.md and invarlock.description.REQUIRED_KEYS list different describe keys"
    )


def test_first_result_hooks_say_so() -> None:
    manager = InvarlockPluginManager()
    for name, (_, section) in documented_hooks().items():
        first_result = getattr(manager.hook, name).spec.opts["firstresult"]
        says_so = "Stops at the first non-None result" in " ".join(section.split())
        assert says_so == first_result, name


def import_core_modules() -> None:
    """Import every module of invarlock-core, so every error class defined anywhere in it exists."""
    for module in pkgutil.walk_packages(invarlock.__path__, "invarlock."):
        if module.name.endswith(".__main__"):  # runs the command when imported
            continue
        try:
            importlib.import_module(module.name)
        except ModuleNotFoundError as exc:  # a module that needs torch, in core's torch-free venv
            if (exc.name or "").split(".")[0] == "invarlock":
                raise


def error_classes() -> list[type[InvarlockError]]:
    import_core_modules()
    found: list[type[InvarlockError]] = [InvarlockError]
    for cls in found:
        found += [sub for sub in cls.__subclasses__() if sub not in found]
    return found


def test_error_codes_are_unique() -> None:
    codes = [cls.code for cls in error_classes()]
    duplicated = sorted({code for code in codes if codes.count(code) > 1})
    assert not duplicated, f"classes share a code (set `code` on each subclass): {duplicated}"


def test_every_error_code_is_documented() -> None:
    rows = {}
    for line in (DOCS / "errors.md").read_text().splitlines():
        match = re.match(r"\| `([a-z_]+)` \| `(\w+)` \|", line)
        if match:
            rows[match.group(1)] = match.group(2)
    expected = {cls.code: cls.__name__ for cls in error_classes() if cls.__module__.startswith("invarlock.")}
    assert rows == expected


@pytest.mark.parametrize(
    "schema_file", sorted((DOCS / "schemas").glob("plugins-*.json")), ids=lambda p: p.name
)
def test_plugin_schemas_are_valid_json_schema(schema_file: Path) -> None:
    schema = json.loads(schema_file.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)


def test_adapter_schema_id_matches_what_the_cli_prints() -> None:
    from invarlock.listing import ADAPTERS_SCHEMA

    schema = json.loads((DOCS / "schemas" / "plugins-adapters.v1.json").read_text())
    assert schema["$id"] == ADAPTERS_SCHEMA
    assert schema["properties"]["schema"]["const"] == ADAPTERS_SCHEMA


def test_hookimpls_in_the_guide_are_real_hooks() -> None:
    guide = (DOCS / "write-your-own-adapter.md").read_text()
    named = set(re.findall(r"\binvarlock_[a-z_]+\b", guide))
    assert named, "the guide shows no hooks"
    # import names of distributions the guide uses (the sample plugin, the snapshot engine)
    python_names = {"invarlock_tinylinear", "invarlock_torch"}
    assert named - python_names <= set(hookspecs())


def test_optional_describe_keys_in_hooks_md_are_the_validators() -> None:
    from invarlock.description import OPTIONAL_KEYS

    text = (DOCS / "hooks.md").read_text()
    table = text.split("Optional keys, checked whenever present", 1)[1].split("\n\n", 2)[1]
    documented = re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE)
    assert sorted(documented) == sorted(OPTIONAL_KEYS), "hooks.md and OPTIONAL_KEYS differ"


def shell_commands(markdown: str) -> list[str]:
    """Every command of the ```bash blocks of a page, continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", markdown, flags=re.S)
    return [command.strip() for block in blocks for command in block.replace("\\\n", " ").splitlines()]


def test_certify_commands_in_scaling_md_parse_with_the_real_parser() -> None:
    import shlex

    from invarlock.cli import build_parser
    from invarlock.cli.certify import side_options

    commands = [c for c in shell_commands((DOCS / "scaling.md").read_text()) if " certify " in f" {c} "]
    assert len(commands) >= 3
    for command in commands:
        words = shlex.split(command)
        words = words[words.index("invarlock") + 1 :]  # `torchrun ... -m invarlock certify ...` too
        args = build_parser().parse_args(words)
        for side in ("baseline", "subject"):
            options = side_options(args, side)
            assert all(not key.startswith("-") for key in options.load_options), command
