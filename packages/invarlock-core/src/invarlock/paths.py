"""Where InvarLock keeps what it caches (the quantizer listing, certify's baseline cache)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

CACHE_DIR_ENV = "INVARLOCK_CACHE_DIR"
"""Environment variable naming the cache directory, over the platform's convention."""


def cache_dir() -> Path:
    """``$INVARLOCK_CACHE_DIR``, else the platform's user cache directory: ``$XDG_CACHE_HOME/invarlock``
    or ``~/.cache/invarlock`` on Linux (a relative ``XDG_CACHE_HOME`` is ignored, as the XDG spec
    says), ``~/Library/Caches/invarlock`` on macOS, ``%LOCALAPPDATA%\\invarlock\\Cache`` on Windows."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        return (Path(local) if local else Path.home() / "AppData" / "Local") / "invarlock" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "invarlock"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache") / "invarlock"
