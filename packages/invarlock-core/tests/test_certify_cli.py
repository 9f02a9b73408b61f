"""The certify, run and describe commands without any adapter backend: start-up stays light, and
every usage error is one sentence with exit code 2 and no file written."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from invarlock.cli import main
from invarlock.manager import DISABLE_ENV, reset_plugin_manager


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
    assert main(["certify", "--baseline", "a", "--subject", "b", "--max-ratio", "0.9"]) == 2
    assert "--max-ratio must be at least 1.0" in error_line(capsys)
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
