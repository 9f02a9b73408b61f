"""What a certificate or report records about where it was made: the environment and the plugins."""

from __future__ import annotations

import platform
import sys
from typing import Any

from invarlock import __version__
from invarlock.listing import adapters_listing, plugins_listing


def environment() -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "invarlock_core": __version__,
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        env["torch"] = torch.__version__
        env["cuda"] = torch.version.cuda if torch.cuda.is_available() else None
    transformers = sys.modules.get("transformers")
    if transformers is not None:
        env["transformers"] = transformers.__version__
    return env


def plugins_block() -> dict[str, Any]:
    """Every discovered adapter (distribution, version, status): the ``plugins adapters`` listing."""
    return {"adapters": adapters_listing()["adapters"], "plugins": plugins_listing()["plugins"]}
