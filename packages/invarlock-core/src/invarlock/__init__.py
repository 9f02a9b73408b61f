"""InvarLock core: adapter hookspecs, the plugin manager, the describe contract and the CLI.

Third-party adapters write ``from invarlock import hookimpl``. Nothing here imports torch or
transformers: those are imported by the adapter packages, inside the functions that need them.
"""

from importlib.metadata import PackageNotFoundError, version

import pluggy

PROJECT_NAME = "invarlock"
"""The pluggy project name, hook marker name and entry-point group: one name everywhere."""

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

try:
    __version__ = version("invarlock-core")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["PROJECT_NAME", "__version__", "hookimpl", "hookspec"]
