"""The command as a person at a terminal meets it: a closed pipe and Ctrl-C end cleanly, typos get a
"did you mean", abbreviations are refused, `python -m invarlock` works, the help lists the
environment variables, and `invarlock env` prints what a bug report needs."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import invarlock
from invarlock.certification.progress import CI_ENV
from invarlock.cli import build_parser, main
from invarlock.cli.env import ENV_SCHEMA, ENVIRONMENT_VARIABLES
from invarlock.cli.style import NO_COLOR_ENV, with_coloured_verdict
from invarlock.listing import adapters_listing
from invarlock.manager import DISABLE_ENV
from invarlock.network import ALLOW_NETWORK_ENV
from invarlock.quantizers import CACHE_DIR_ENV

REPO = Path(__file__).resolve().parents[3]
ENV_SCHEMA_DOC = json.loads((REPO / "docs/schemas/env.v1.json").read_text())


def command(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("invarlock")
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "invarlock", *args]


def torch_installed() -> bool:
    try:
        version("torch")
    except PackageNotFoundError:
        return False
    return True


# -- a closed pipe (`invarlock ... | head`) ------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("plugins", "adapters", "--json"),
        ("plugins", "adapters", "--explain", "hf_gptq"),
        ("plugins", "adapters"),
        ("env", "--json"),
        ("--help",),
        ("--version",),
    ],
    ids=" ".join,
)
def test_a_reader_that_closed_the_pipe_is_not_a_failure(args: tuple[str, ...]) -> None:
    """The reader end is closed before the command writes anything, as `| head -0` would: every
    write meets a broken pipe, deterministically. Exit 0, nothing on stderr (no traceback, no
    "Exception ignored" from the interpreter's last flush)."""
    process = subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 0, stderr
    assert stderr == ""


def test_head_of_the_json_listing_reads_its_first_line() -> None:
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"{' '.join(command('plugins', 'adapters', '--json'))} | head -1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "{\n", "")


# -- Ctrl-C ---------------------------------------------------------------------------------------

SLOW_PLUGIN = """
import pathlib, time
pathlib.Path({marker!r}).write_text("importing")
time.sleep(60)
"""


def hear_ctrl_c() -> None:
    """In the child before exec: SIGINT back to its default. A test run started in the background
    by a non-interactive shell (as CI may start it) inherits SIGINT ignored, and Python then never
    raises KeyboardInterrupt; a user's terminal does not ignore it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(
    "args", [("plugins",), ("plugins", "adapters"), ("env",), ("--version",)], ids=" ".join
)
def test_ctrl_c_while_plugins_load_exits_130_without_a_traceback(
    site: Any, tmp_path: Path, args: tuple[str, ...]
) -> None:
    """SIGINT arrives while a (slow) plugin is being imported, inside the command or inside the
    argument parsing (`--version`): one line on stderr, exit 130."""
    marker = tmp_path / "importing"
    site.add_distribution("acme-slow", plugins={"slow": SLOW_PLUGIN.format(marker=str(marker))})
    process = subprocess.Popen(
        command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=site.env,
        preexec_fn=hear_ctrl_c,
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the slow plugin was never imported"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().startswith("invarlock: interrupted"), stderr
    assert stderr.strip().count("\n") == 0, stderr


SLOW_CLI_IMPORT = """
import importlib.abc, pathlib, runpy, sys, time

class SlowSubcommand(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "invarlock.cli.certify":
            pathlib.Path({marker!r}).write_text("importing")
            time.sleep(60)
        return None

sys.meta_path.insert(0, SlowSubcommand())
sys.argv = ["invarlock", "certify", "--help"]
runpy.run_module("invarlock", run_name="__main__", alter_sys=True)
"""


def test_ctrl_c_while_the_command_imports_its_own_modules_exits_130_without_a_traceback(
    tmp_path: Path,
) -> None:
    """SIGINT while ``python -m invarlock`` is still importing its subcommands' modules."""
    marker = tmp_path / "importing"
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_CLI_IMPORT.format(marker=str(marker))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=hear_ctrl_c,
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "invarlock.cli.certify was never imported"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert (process.returncode, stderr.strip()) == (130, "invarlock: interrupted")


# -- typos, abbreviations --------------------------------------------------------------------------


def usage_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.strip()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("certify", "--subjet", "s", "--baseline", "b"),
            "invarlock certify: error: unknown option --subjet; did you mean --subject?",
        ),
        (
            ("certify", "--baseline", "b", "--subject", "s", "--max-ration", "1.2"),
            "invarlock certify: error: unknown option --max-ration; did you mean --max-ratio?",
        ),
        (
            ("certify", "--baseline", "b", "--subject", "s", "--max-ration=1.2"),
            "invarlock certify: error: unknown option --max-ration; did you mean --max-ratio?",
        ),
        (("--verison",), "invarlock: error: unknown option --verison; did you mean --version?"),
        (("plugin", "adapters"), "invarlock: error: unknown command plugin; did you mean plugins?"),
        (
            ("plugins", "adaptres"),
            "invarlock plugins: error: unknown command adaptres; did you mean adapters?",
        ),
        (
            ("plugins", "adapters", "--jsno"),
            "invarlock plugins adapters: error: unknown option --jsno; did you mean --json?",
        ),
        (("certfy",), "invarlock: error: unknown command certfy; did you mean certify?"),
    ],
)
def test_a_typo_is_one_line_naming_what_was_meant(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], expected: str
) -> None:
    assert usage_error(capsys, *args) == expected


def test_an_unknown_option_without_a_close_match_points_at_help(capsys: pytest.CaptureFixture[str]) -> None:
    err = usage_error(capsys, "plugins", "adapters", "--zzzzzz")
    assert err == "invarlock plugins adapters: error: unknown option --zzzzzz; " + (
        "`invarlock plugins adapters --help` lists the options"
    )


def test_abbreviated_options_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    err = usage_error(capsys, "certify", "--baseline", "b", "--subject", "s", "--max-r", "1.2")
    assert "unknown option --max-r; did you mean --max-ratio?" in err
    err = usage_error(capsys, "certify", "--baseline", "b", "--subj", "s")
    assert "unknown option --subj; did you mean --subject?" in err


def test_every_parser_refuses_abbreviations() -> None:
    def parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
        found = [parser]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    found += parsers(child)
        return found

    every = parsers(build_parser())
    assert {p.prog for p in every} >= {"invarlock certify", "invarlock plugins adapters", "invarlock env"}
    assert [p.prog for p in every if p.allow_abbrev] == []


def test_values_that_look_like_options_are_not_typos(capsys: pytest.CaptureFixture[str]) -> None:
    """A negative number is a value; `--` ends the options."""
    parser = build_parser()
    args = parser.parse_args(["certify", "--baseline", "b", "--subject", "s", "--seed", "-3"])
    assert args.seed == -3


def test_missing_required_options_still_say_so(capsys: pytest.CaptureFixture[str]) -> None:
    err = usage_error(capsys, "certify", "--baseline", "b")
    assert err == "invarlock certify: error: the following arguments are required: --subject"


# -- 80 columns -------------------------------------------------------------------------------------


def test_the_adapter_table_fits_80_columns_and_shows_every_column_when_wider(site: Any) -> None:
    site.add_distribution(
        "acme-long-named-distribution",
        "12.0.1",
        plugins={
            "long": "raise ImportError('the acme engine needs a long explanation of why "
            "it cannot load here, longer than any terminal line, with pip install acme-engine>=3')\n"
        },
    )
    narrow = subprocess.run(
        command("plugins", "adapters"),
        capture_output=True,
        text=True,
        env={**site.env, "COLUMNS": "80"},
        check=False,
    )
    assert narrow.returncode == 0, narrow.stderr
    lines = narrow.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, narrow.stdout
    every = ["ADAPTER", "DISTRIBUTION", "BACKEND", "ROLE", "SNAPSHOT", "GUARDS", "PLATFORM", "STATUS"]
    headers = {line for line in lines if line.startswith("ADAPTER")}
    assert len(headers) == 1, "every group shows the same columns"
    shown = headers.pop().split()
    assert shown[:2] == ["ADAPTER", "DISTRIBUTION"] and shown[-1] == "STATUS"
    hidden = [column for column in every if column not in shown]
    assert {"BACKEND", "GUARDS"} <= set(hidden), "the least needed columns go first"
    assert " ".join(f"({' and '.join(hidden)} left out to fit 80 columns;".split()) in " ".join(lines)
    flat = " ".join(narrow.stdout.split())
    assert "pip install acme-engine>=3" in flat, "words are wrapped whole, never split"
    wide = subprocess.run(
        command("plugins", "adapters"),
        capture_output=True,
        text=True,
        env={**site.env, "COLUMNS": "250"},
        check=False,
    )
    header = next(line for line in wide.stdout.splitlines() if line.startswith("ADAPTER"))
    assert header.split() == [
        "ADAPTER",
        "DISTRIBUTION",
        "BACKEND",
        "ROLE",
        "SNAPSHOT",
        "GUARDS",
        "PLATFORM",
        "STATUS",
    ]
    assert "left out" not in wide.stdout


# -- colour -----------------------------------------------------------------------------------------

SUMMARY = "FAIL: ppl ratio 1.2000 (95% CI 1.1500–1.2500), gate upper <= 1.10\n  baseline ppl 10.0"
SGR = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def terminal() -> Iterator[Any]:
    """A real terminal (a pseudo-terminal's far end), as the user's shell would hand us."""
    leader, follower = os.openpty()
    stream = os.fdopen(follower, "w")
    yield stream
    stream.close()
    os.close(leader)


@pytest.mark.skipif(importlib.util.find_spec("rich") is None, reason="rich is not installed (plain output)")
def test_the_verdict_is_coloured_on_a_terminal(terminal: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NO_COLOR_ENV, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    coloured = with_coloured_verdict(SUMMARY, "FAIL", terminal)
    assert coloured != SUMMARY and coloured.startswith("\x1b[")
    assert SGR.sub("", coloured) == SUMMARY, "colour adds escapes only; the words are unchanged"


def test_no_colour_where_it_cannot_be_seen_or_is_refused(
    terminal: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(NO_COLOR_ENV, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert with_coloured_verdict(SUMMARY, "FAIL", terminal, no_color=True) == SUMMARY
    with open(tmp_path / "out.txt", "w") as file:
        assert with_coloured_verdict(SUMMARY, "FAIL", file) == SUMMARY
    read, write = os.pipe()
    with os.fdopen(write, "w") as pipe:
        assert with_coloured_verdict(SUMMARY, "FAIL", pipe) == SUMMARY
    os.close(read)
    monkeypatch.setenv(NO_COLOR_ENV, "1")
    assert with_coloured_verdict(SUMMARY, "FAIL", terminal) == SUMMARY
    monkeypatch.delenv(NO_COLOR_ENV)
    monkeypatch.setenv("TERM", "dumb")
    assert with_coloured_verdict(SUMMARY, "FAIL", terminal) == SUMMARY


def test_no_color_is_an_option_of_the_commands_that_print_a_verdict() -> None:
    parser = build_parser()
    assert parser.parse_args(["certify", "--baseline", "b", "--subject", "s", "--no-color"]).no_color
    assert parser.parse_args(["run", "--config", "c.yaml", "--no-color"]).no_color
    assert not parser.parse_args(["run", "--config", "c.yaml"]).no_color


def test_the_verdict_summary_fits_80_columns_with_the_verdict_first() -> None:
    from invarlock.certification.evaluation.gate import DEFAULT_BOOTSTRAP, DEFAULT_CONFIDENCE, GatePolicy
    from invarlock.cli.certify import summary

    rule = GatePolicy(1.1, DEFAULT_CONFIDENCE, DEFAULT_BOOTSTRAP).rule
    long_reason = "the subject's vocabulary grew by 12 tokens, which were not scored; " * 2
    document = {
        "verdict": "FAIL",
        "stats": {
            "ci": [1.15, 1.25],
            "ratio": 1.2,
            "confidence": DEFAULT_CONFIDENCE,
            "baseline_ppl": 10.0,
            "subject_ppl": 12.0,
            "windows": 64,
            "tokens": 8128,
        },
        "gate": {"rule": rule},
        "reasons": ["the first reason is the verdict's", long_reason],
    }
    text = summary(document)
    lines = text.splitlines()
    assert lines[0] == "FAIL: ppl ratio 1.2000 (95% CI 1.1500–1.2500)"
    assert max(len(line) for line in lines) <= 80
    flat = " ".join(text.split())
    assert f"gate: {' '.join(rule.split())}" in flat and " ".join(long_reason.split()) in flat
    assert all(line.startswith("  ") for line in lines[1:])


# -- certify --help ----------------------------------------------------------------------------------


def test_certify_help_groups_every_option_and_its_examples_parse(capsys: pytest.CaptureFixture[str]) -> None:
    from invarlock.cli.certify import HELP_EXAMPLES, HELP_GROUPS

    parser = build_parser()
    certify = parser._subparsers._group_actions[0].choices["certify"]  # type: ignore[union-attr]
    options = {name for action in certify._actions for name in action.option_strings if name.startswith("--")}
    grouped = [name for names in HELP_GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(options - {"--help"}), "a new certify option needs a help group"
    with pytest.raises(SystemExit):
        main(["certify", "--help"])
    text = capsys.readouterr().out
    for title in HELP_GROUPS:
        assert f"\n{title}:\n" in text
    assert text.rstrip().endswith(HELP_EXAMPLES[-1])
    assert max(len(line) for line in text.splitlines()) <= 80
    for example in HELP_EXAMPLES:
        words = example.split()
        assert words[:2] == ["invarlock", "certify"]
        parser.parse_args(words[1:])  # every example is a valid command line


# -- help, python -m -------------------------------------------------------------------------------


def test_top_level_help_lists_every_environment_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    section = text.split("environment variables:", 1)[1]
    for name in (ALLOW_NETWORK_ENV, DISABLE_ENV, CACHE_DIR_ENV):
        assert f"  {name}  " in section or f"  {name} " in section
    assert f"  {NO_COLOR_ENV}  " in section or f"  {NO_COLOR_ENV} " in section
    assert [name for name, _ in ENVIRONMENT_VARIABLES] == [
        ALLOW_NETWORK_ENV,
        DISABLE_ENV,
        CACHE_DIR_ENV,
        NO_COLOR_ENV,
        CI_ENV,
    ]
    assert max(len(line) for line in text.splitlines()) <= 80


def test_python_dash_m_invarlock() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "invarlock", "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"invarlock-core {invarlock.__version__}"
    done = subprocess.run(
        [sys.executable, "-m", "invarlock", "evn"], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stderr.strip()) == (
        2,
        "invarlock: error: unknown command evn; did you mean env?",
    )


# -- invarlock env ---------------------------------------------------------------------------------


def env_json(*extra: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = subprocess.run(
        command("env", "--json", *extra), capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_env_json_matches_its_schema_and_the_machine() -> None:
    jsonschema.Draft202012Validator.check_schema(ENV_SCHEMA_DOC)
    assert ENV_SCHEMA_DOC["$id"] == ENV_SCHEMA == ENV_SCHEMA_DOC["properties"]["schema"]["const"]
    report = env_json(env={k: v for k, v in os.environ.items() if k != ALLOW_NETWORK_ENV})
    jsonschema.validate(report, ENV_SCHEMA_DOC)
    assert report["invarlock_core"] == invarlock.__version__
    # the console script may name the venv's python3 where pytest runs its python: one interpreter
    assert os.path.realpath(report["python"]["executable"]) == os.path.realpath(sys.executable)
    for name, installed in report["backends"].items():
        try:
            expected: str | None = version(name)
        except PackageNotFoundError:
            expected = None
        assert installed == expected, name
    assert {"torch", "transformers"} <= set(report["backends"])
    listed = [(item["name"], item["status"], item["install"]) for item in adapters_listing()["adapters"]]
    assert [(item["name"], item["status"], item["install"]) for item in report["adapters"]] == listed
    assert report["network"] == {"allowed": False, "variable": ALLOW_NETWORK_ENV}
    assert report["torch"]["probed"] is False
    assert set(report["variables"]) == {name for name, _ in ENVIRONMENT_VARIABLES}


def test_env_lists_the_backends_installed_adapters_declare(site: Any) -> None:
    site.add_distribution(
        "acme-engine",
        "3.1",
        plugins={
            "engine": "from invarlock import hookimpl\n"
            "from invarlock.adapters import Adapter\n"
            "from invarlock.types import AdapterSpec, Role\n"
            "class EngineAdapter(Adapter):\n    name = 'acme_engine'\n"
            "@hookimpl\ndef invarlock_register_adapters():\n"
            "    return [AdapterSpec('acme_engine', Role.CAUSAL, EngineAdapter,\n"
            "                        backend=('acme-absent-lib',))]\n"
        },
    )
    report = env_json(env=site.env)
    assert report["backends"]["acme-absent-lib"] is None
    assert {
        "name": "engine",
        "distribution": "acme-engine",
        "version": "3.1",
        "status": "loaded",
        "error": None,
    } in (report["plugins"])
    assert "acme_engine" in [item["name"] for item in report["adapters"]]


def test_env_text_of_a_broken_plugin_fits_80_columns(site: Any) -> None:
    reason = "the acme engine refuses to load here for a reason explained at length " * 3
    site.add_distribution("acme-broken", "0.3", plugins={"broken": f"raise ImportError({reason!r})\n"})
    done = subprocess.run(command("env"), capture_output=True, text=True, env=site.env, check=False)
    assert done.returncode == 0, done.stderr
    assert max(len(line) for line in done.stdout.splitlines()) <= 80, done.stdout
    flat = " ".join(done.stdout.split())
    assert "broken acme-broken 0.3 error" in flat
    assert " ".join(reason.split()) in flat


def test_env_does_not_import_torch() -> None:
    code = (
        "import contextlib, io, json, sys\n"
        "from invarlock.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['env'])\n"
        "    main(['env', '--json'])\n"
        "heavy = ('torch', 'transformers', 'numpy', 'rich')\n"
        "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_env_text_is_a_block_for_a_bug_report(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ALLOW_NETWORK_ENV, "1")
    monkeypatch.setenv(CACHE_DIR_ENV, "/somewhere/cache")
    assert main(["env"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0] == f"invarlock-core {invarlock.__version__}"
    import platform

    assert f"python         {platform.python_version()} " in text
    assert "network        on" in lines
    assert f"  {CACHE_DIR_ENV:<26} /somewhere/cache" in lines
    for item in adapters_listing()["adapters"]:
        assert any(line.split()[:2] == [item["name"], item["status"]] for line in lines), item["name"]
    assert max(len(line) for line in lines) <= 80


@pytest.mark.skipif(not torch_installed(), reason="torch is not installed in this environment")
def test_env_torch_reports_what_torch_says() -> None:
    import torch

    report = env_json("--torch")
    jsonschema.validate(report, ENV_SCHEMA_DOC)
    section = report["torch"]
    assert section["probed"] is True and section["import_error"] is None
    assert section["cuda_available"] == torch.cuda.is_available()
    assert section["cuda_version"] == torch.version.cuda
    assert section["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
