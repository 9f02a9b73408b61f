"""Ctrl-C while certify scores the demo model, at a real terminal: one line saying what was
interrupted, exit 130, no traceback, no certificate left behind."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("invarlock_hf", reason="certify needs invarlock-hf to load the demo model")

REPO = Path(__file__).resolve().parents[1]
DEMO_MODEL = REPO / "demo" / "model"


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal (POSIX)")
def test_ctrl_c_while_scoring_exits_130_with_one_line(tmp_path: Path) -> None:
    out = tmp_path / "certificate"
    leader, follower = os.openpty()  # the progress display is drawn only on a terminal
    env = {k: v for k, v in os.environ.items() if k != "CI"}  # CI turns the progress display off
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TERM="xterm")
    command = [sys.executable, "-m", "invarlock", "certify", "--baseline", str(DEMO_MODEL)]
    # one window a forward pass: scoring takes long enough to be interrupted in the middle
    command += ["--subject", str(DEMO_MODEL), "--windows", "32", "--batch-size", "1", "--out", str(out)]
    # SIGINT back to its default in the child: a test run started in the background by a
    # non-interactive shell inherits it ignored, which a user's terminal never does.
    process = subprocess.Popen(
        command,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.close(follower)
    shown, interrupted = b"", False
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # the command exited and closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            if not interrupted and re.search(rb"scoring baseline( \[[#.]+\])? [1-9]", shown):
                process.send_signal(signal.SIGINT)
                interrupted = True
            if process.poll() is not None and not ready:
                break
        assert interrupted, shown.decode(errors="replace")
        assert process.wait(timeout=60) == 130
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)
    text = shown.decode(errors="replace")
    assert "Traceback" not in text
    message = r"invarlock: interrupted while scoring baseline \((\d+)/32 windows\); nothing written"
    said = re.findall(message, text)
    assert len(said) == 1 and 0 < int(said[0]) < 32, text
    assert text.rstrip().endswith("nothing written"), text
    assert not out.exists() or not any(out.iterdir()), "an interrupted certify writes nothing"
