"""A one-line progress display on stderr, shown only on a terminal (quiet in CI, pipes and --json).

Counted steps show their rate and the time left ("scoring subject [####............] 16/64
windows 9.8 windows/s ETA 0:05"; hashing in MB and MB/s). The line is cut to the terminal's width, so
it never wraps. Whatever is shown, the display keeps what is being done, so Ctrl-C can say what
it interrupted (:class:`Interrupted`).

Hand-written rather than rich's ``Progress``: one line, redrawn from the caller's thread (hashing
advances it from worker threads, under a lock), no refresh thread to stop on Ctrl-C, and the same
code whether or not rich is installed (a core-only install has no rich).
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from types import TracebackType
from typing import TextIO

_BAR = 16
_MB = 1_000_000
CI_ENV = "CI"
"""Set (to anything but ``0``/``false``) by CI services: no progress display there."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what was being done when it came: ``scoring subject (16/64 windows)``."""

    def __init__(self, activity: str) -> None:
        super().__init__(activity)
        self.activity = activity


def in_ci() -> bool:
    return os.environ.get(CI_ENV, "").strip().lower() not in ("", "0", "false", "no")


class Progress:
    """``with Progress(enabled) as p: p.start("scoring baseline", 64); p.advance(8) ...``."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = enabled and bool(isatty and isatty()) and not in_ci()
        self.label = ""
        self.unit = ""
        self.total = 0
        self.done = 0
        self._started = 0.0
        self._drawn = -1
        self._bar = True
        self._lock = threading.Lock()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if error is None:
            self.finish()
            return
        activity = self.activity()  # a step that failed is not "done": its line is cleared
        self._clear()
        self.label = ""
        if isinstance(error, KeyboardInterrupt) and not isinstance(error, Interrupted) and activity:
            raise Interrupted(activity) from None

    def step(self, label: str) -> None:
        """A stage without a count (importing, loading, describing)."""
        self.finish()
        self.label, self.unit, self.total, self.done = label, "", 0, 0
        self._started = time.monotonic()
        self._write(f"{label}...")

    def start(self, label: str, total: int, unit: str = "windows") -> None:
        """A counted stage: ``total`` windows, or with ``unit="MB"`` a number of bytes."""
        self.finish()
        self.label, self.unit, self.total, self.done = label, unit, total, 0
        self._started = time.monotonic()
        # The bar only where the widest line this step can draw still fits: it never comes and goes.
        widest = f"{label} [{'#' * _BAR}] {self._count(total)} 9999.9 {unit}/s ETA 99:59"
        self._bar = len(widest) < _columns(self.stream)
        self._draw(force=True)

    def advance(self, n: int = 1) -> None:
        """``n`` more done; safe to call from several threads."""
        with self._lock:
            self.done = min(self.total, self.done + n)
            self._draw()

    def finish(self) -> None:
        if self.label:
            elapsed = time.monotonic() - self._started
            count = f" {self._count()}" if self.total else ""
            self._write(f"{self.label}{count} done in {elapsed:.1f} s", end="\n")
        self.label = ""

    def activity(self) -> str:
        """What is being done, in words: ``scoring subject (16/64 windows)``; empty between steps."""
        if not self.label:
            return ""
        return f"{self.label} ({self._count()})" if self.total else self.label

    def _count(self, done: int | None = None) -> str:
        done = self.done if done is None else done
        if self.unit == "MB":
            return f"{done / _MB:.1f}/{self.total / _MB:.1f} MB"
        return f"{done}/{self.total} {self.unit}"

    def _rate(self) -> str:
        """``9.8 windows/s ETA 0:05`` once something is done; empty before."""
        elapsed = time.monotonic() - self._started
        if not self.done or elapsed <= 0:
            return ""
        per_second = self.done / elapsed
        rate = f"{per_second / _MB:.1f} MB/s" if self.unit == "MB" else f"{per_second:.1f} {self.unit}/s"
        left = (self.total - self.done) / per_second
        return f"{rate} ETA {_clock(left)}"

    def _draw(self, force: bool = False) -> None:
        if not self.enabled or not self.total:
            return
        # Hashing advances once a tensor: redrawn once a percent, not thousands of times.
        shown = self.done * 100 // self.total if self.unit == "MB" else self.done
        if shown == self._drawn and not force:
            return
        self._drawn = shown
        filled = _BAR * self.done // self.total
        bar = f" [{'#' * filled}{'.' * (_BAR - filled)}]" if self._bar else ""
        self._write(f"{self.label}{bar} {self._count()} {self._rate()}".rstrip())

    def _write(self, text: str, end: str = "") -> None:
        if not self.enabled:
            return
        width = _columns(self.stream) - 1  # the last column would wrap on some terminals
        self.stream.write(f"\r{text[:width]}\x1b[K{end}")
        self.stream.flush()

    def _clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _columns(stream: TextIO) -> int:
    """The width of the terminal ``stream`` is drawn on (``COLUMNS`` first, as for every tool)."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        columns = 0
    if os.environ.get("COLUMNS", "").isdigit() or not columns:
        return shutil.get_terminal_size().columns
    return columns


def _clock(seconds: float) -> str:
    """``0:05``, ``12:40``, ``1:02:03``."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
