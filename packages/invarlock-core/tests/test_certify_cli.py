"""The certify, run and describe commands without any adapter backend: start-up stays light, and
every usage error is one sentence with exit code 2 and no file written."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from invarlock.cli import main
from invarlock.manager import DISABLE_ENV, reset_plugin_manager
from invarlock.network import path_shaped


@pytest.fixture(autouse=True)
def without_adapters(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Whatever is installed, these tests see no invarlock-hf (as in the core-only test session)."""
    monkeypatch.setenv(DISABLE_ENV, "invarlock-hf")
    reset_plugin_manager()
    yield
    monkeypatch.delenv(DISABLE_ENV)
    reset_plugin_manager()


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("invarlock: error [") and err.count("\n") == 1, err
    return err


def test_new_commands_import_no_backend() -> None:
    code = (
        "import sys; from invarlock.cli import build_parser; p = build_parser(); "
        "p.parse_args(['certify', '--baseline', 'a', '--subject', 'b']); "
        "p.parse_args(['run', '--config', 'c']); "
        "p.parse_args(['describe', 'm']); "
        "print(sorted(m for m in ('torch', 'transformers', 'numpy', 'yaml') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.skipif(
    importlib.util.find_spec("invarlock_hf") is not None,
    reason="invarlock-hf is installed here: hidden by INVARLOCK_DISABLE_PLUGINS, the error says that instead",
)
def test_certify_without_an_adapter_names_the_pip_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for side in ("base", "edited"):
        (tmp_path / side).mkdir()
    out = tmp_path / "out"
    code = main(
        [
            "certify",
            "--baseline",
            str(tmp_path / "base"),
            "--subject",
            str(tmp_path / "edited"),
            "--out",
            str(out),
        ]
    )
    assert code == 2
    assert "pip install invarlock-hf" in error_line(capsys)
    assert not out.exists()


def test_missing_paths_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(
        [
            "certify",
            "--baseline",
            str(tmp_path / "none"),
            "--subject",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    assert "[model_not_found]: baseline path" in error_line(capsys)
    assert main(["describe", str(tmp_path / "none")]) == 2
    assert "model path" in error_line(capsys)


def test_bad_gate_options_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for value in ("0.9", "nan", "inf", "-inf"):
        assert main(["certify", "--baseline", "a", "--subject", "b", f"--max-ratio={value}"]) == 2
        assert "[argument_invalid]: --max-ratio must be a finite number of at least 1.0" in error_line(capsys)
    assert main(["certify", "--baseline", "a", "--subject", "b", "--confidence", "nan"]) == 2
    assert "[argument_invalid]: --confidence" in error_line(capsys)
    with pytest.raises(SystemExit) as caught:
        main(["certify", "--baseline", "a", "--subject", "b", "--windows", "0"])
    assert caught.value.code == 2


def test_run_config_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("model:\n  id: m\n  devise: cpu\n")
    assert main(["run", "--config", str(config)]) == 2
    assert "unknown key 'model.devise' (did you mean model.device?)" in error_line(capsys)
    assert not (tmp_path / "runs").exists()


def test_run_refuses_adapterless_model_before_loading(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        json.dumps(
            {"model": {"id": str(tmp_path), "adapter": "hf_causal"}, "output": {"dir": str(tmp_path / "r")}}
        )
    )
    assert main(["run", "--config", str(config)]) == 2
    assert "adapter hf_causal is unavailable" in error_line(capsys)
    assert not (tmp_path / "r").exists()


def test_too_few_windows_are_refused_before_anything_is_loaded(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    code = main(["certify", "--baseline", "a", "--subject", "b", "--windows", "3", "--out", str(out)])
    assert code == 2
    line = error_line(capsys)
    assert "[insufficient_evidence]: --windows 3 asks for fewer windows than the 32" in line
    assert "--allow-inconclusive" in line
    assert not out.exists()
    config = tmp_path / "run.yaml"
    config.write_text(f"model:\n  id: m\ndataset:\n  windows: 8\noutput:\n  dir: {tmp_path / 'r'}\n")
    assert main(["run", "--config", str(config)]) == 2
    assert "dataset.windows 8 asks for fewer windows" in error_line(capsys)
    assert not (tmp_path / "r").exists()


def test_unusable_out_is_refused_before_anything_is_loaded(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "base").mkdir()
    taken = tmp_path / "taken.json"
    taken.write_text("{}")
    for out, message in ((taken, "is an existing file"), (taken / "sub", "cannot be created")):
        code = main(["certify", "--baseline", str(tmp_path / "base"), "--subject", "b", "--out", str(out)])
        assert code == 2
        assert f"[output_unwritable]: --out {out} {message}" in error_line(capsys)
    assert taken.read_text() == "{}"
    config = tmp_path / "run.yaml"
    config.write_text(f"model:\n  id: m\noutput:\n  dir: {taken}\n")
    assert main(["run", "--config", str(config)]) == 2
    assert "[output_unwritable]: output.dir" in error_line(capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any directory, so none is unwritable")
def test_unwritable_out_directory_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert main(["certify", "--baseline", str(tmp_path), "--subject", "b", "--out", str(locked / "c")]) == 2
    assert "[output_unwritable]" in error_line(capsys) and not (locked / "c").exists()


def test_paths_that_are_not_checkpoint_directories_are_refused_as_such(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("INVARLOCK_ALLOW_NETWORK", raising=False)
    (tmp_path / "base").mkdir()
    out = tmp_path / "out"
    for subject, message in (
        (
            "subjects/rtn8",
            "[model_not_found]: subject subjects/rtn8 is not a directory here, nor a hub id in",
        ),
        ("./missing", "[model_not_found]: subject path ./missing does not exist"),
    ):
        assert main(["certify", "--baseline", "base", "--subject", subject, "--out", str(out)]) == 2
        line = error_line(capsys)
        assert message in line
        assert "set INVARLOCK_ALLOW_NETWORK=1" not in line
    assert not out.exists()


def test_a_wrong_relative_path_under_a_local_directory_is_a_missing_path_not_a_hub_id(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``models/base`` beside an existing ``models/`` is what the user meant as a path: refused as
    ``model_not_found`` naming the absolute path, with or without the network."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base").mkdir()
    (tmp_path / "models").mkdir()
    out = tmp_path / "out"
    for network in ("0", "1"):
        monkeypatch.setenv("INVARLOCK_ALLOW_NETWORK", network)
        for subject, missing in (("models/base", "base"), ("my models/base", "my models")):
            assert main(["certify", "--baseline", "base", "--subject", subject, "--out", str(out)]) == 2
            line = error_line(capsys)
            assert f"[model_not_found]: subject path {subject} does not exist" in line
            assert f"({tmp_path / subject}: " in line and f"has no {missing}" in line
            assert "INVARLOCK_ALLOW_NETWORK" not in line
    assert not out.exists()


@pytest.mark.parametrize(
    ("model_id", "is_path"),
    [
        ("org/name", False),  # no local org/: a hub id
        ("gpt2", False),
        ("models/base", True),  # models/ is here
        ("./models/base", True),
        ("../base", True),
        ("~/base", True),
        ("/abs/base", True),
        ("a/b/c", True),
        ("org/my model", True),  # no hub id holds a space
        ("org--x/name", True),
    ],
)
def test_what_is_a_path_follows_what_the_user_meant(
    model_id: str, is_path: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    assert path_shaped(model_id) is is_path
