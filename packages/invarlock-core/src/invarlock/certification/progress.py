"""A one-line progress display on stderr, shown only on a terminal (quiet in CI, pipes and --json)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

_WIDTH = 24


class Progress:
    """``with Progress(enabled) as p: p.start("scoring baseline", 64); p.advance(8) ...``."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.label = ""
        self.total = 0
        self.done = 0
        self._started = 0.0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def step(self, label: str) -> None:
        """A stage without a count (loading, describing)."""
        self.finish()
        if self.enabled:
            self.stream.write(f"\r{label}...\x1b[K")
            self.stream.flush()
            self.label, self.total, self.done = label, 0, 0
            self._started = time.monotonic()

    def start(self, label: str, total: int) -> None:
        self.finish()
        self.label, self.total, self.done = label, total, 0
        self._started = time.monotonic()
        self._draw()

    def advance(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + n)
        self._draw()

    def finish(self) -> None:
        if self.enabled and self.label:
            elapsed = time.monotonic() - self._started
            count = f" {self.done}/{self.total}" if self.total else ""
            self.stream.write(f"\r{self.label}{count} done in {elapsed:.1f}s\x1b[K\n")
            self.stream.flush()
        self.label = ""

    def _draw(self) -> None:
        if not self.enabled or not self.total:
            return
        filled = _WIDTH * self.done // self.total
        bar = "#" * filled + "." * (_WIDTH - filled)
        self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total}\x1b[K")
        self.stream.flush()
