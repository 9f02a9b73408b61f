"""The progress display, drawn on a real pseudo-terminal: rate and time left on counted steps,
nothing in CI or off a terminal, and Ctrl-C that knows what it interrupted."""

from __future__ import annotations

import io
import os
import re
import select
from collections.abc import Iterator
from typing import Any

import pytest

from invarlock.certification.progress import CI_ENV, Interrupted, Progress

pytestmark = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal (POSIX)")


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, int]]:
    """(a text stream on a pseudo-terminal 80 columns wide, the reading end's fd)."""
    monkeypatch.delenv(CI_ENV, raising=False)
    monkeypatch.setenv("COLUMNS", "80")
    leader, follower = os.openpty()
    stream = open(follower, "w", encoding="utf-8", closefd=True)  # noqa: SIM115 - closed below
    try:
        yield stream, leader
    finally:
        stream.close()
        os.close(leader)


def shown(leader: int) -> str:
    """Everything drawn so far (a terminal may hand it over in several reads)."""
    data = b""
    while select.select([leader], [], [], 0.2)[0]:
        data += os.read(leader, 65536)
    return data.decode()


def test_a_counted_step_shows_its_rate_and_time_left(terminal: tuple[Any, int]) -> None:
    stream, leader = terminal
    progress = Progress(stream=stream)
    progress.start("scoring subject", 64)
    progress.advance(16)
    line = shown(leader).split("\r")[-1]
    assert line.startswith("scoring subject [####............] 16/64 windows ")
    assert re.search(r" windows/s ETA \d+:\d\d\x1b\[K$", line), line
    progress.finish()
    assert "scoring subject 16/64 windows done in " in shown(leader)


def test_hashing_counts_megabytes(terminal: tuple[Any, int]) -> None:
    stream, leader = terminal
    progress = Progress(stream=stream)
    progress.start("hashing subject files, proving weights", 8_000_000, unit="MB")
    progress.advance(2_000_000)
    line = shown(leader).split("\r")[-1]
    assert re.search(r" 2\.0/8\.0 MB [\d.]+ MB/s ETA \d+:\d\d\x1b\[K$", line), line


def test_lines_are_cut_to_the_terminal_width(terminal: tuple[Any, int]) -> None:
    stream, leader = terminal
    progress = Progress(stream=stream)
    progress.step("loading " + "a-very-long-model-path/" * 8)
    progress.start("scoring " + "x" * 100, 10)
    progress.advance(3)
    for line in shown(leader).replace("\n", "\r").split("\r"):
        assert len(line.replace("\x1b[K", "")) <= 79


@pytest.mark.parametrize("ci", ["true", "1"])
def test_quiet_in_ci(terminal: tuple[Any, int], monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    stream, leader = terminal
    monkeypatch.setenv(CI_ENV, ci)
    progress = Progress(stream=stream)
    progress.start("scoring subject", 4)
    progress.advance(2)
    progress.finish()
    stream.write("end")
    stream.flush()
    assert shown(leader) == "end"


def test_quiet_off_a_terminal_and_when_disabled(terminal: tuple[Any, int]) -> None:
    pipe = io.StringIO()
    for progress in (Progress(stream=pipe), Progress(enabled=False, stream=terminal[0])):
        progress.start("scoring subject", 4)
        progress.advance(2)
        progress.finish()
    assert pipe.getvalue() == ""


def test_ctrl_c_says_what_it_interrupted(terminal: tuple[Any, int]) -> None:
    """Also off a terminal (``--json``, a pipe): the message does not depend on the display."""
    for stream in (terminal[0], io.StringIO()):
        with pytest.raises(Interrupted) as caught, Progress(stream=stream) as progress:
            progress.start("scoring subject", 64)
            progress.advance(16)
            raise KeyboardInterrupt
        assert caught.value.activity == "scoring subject (16/64 windows)"
        assert isinstance(caught.value, KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt) as between, Progress(stream=terminal[0]) as progress:
        progress.step("loading tokenizers")
        progress.finish()
        raise KeyboardInterrupt
    assert not isinstance(between.value, Interrupted)


def test_a_step_that_fails_is_not_reported_done(terminal: tuple[Any, int]) -> None:
    stream, leader = terminal
    with pytest.raises(ValueError), Progress(stream=stream) as progress:
        progress.step("loading baseline with hf_causal")
        raise ValueError("no such file")
    assert "done" not in shown(leader)
