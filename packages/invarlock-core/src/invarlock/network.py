"""Offline first: the Hugging Face hub is reachable only when ``INVARLOCK_ALLOW_NETWORK=1``."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from invarlock.errors import ModelNotFoundError, NetworkDisabledError

ALLOW_NETWORK_ENV = "INVARLOCK_ALLOW_NETWORK"
_OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def network_allowed() -> bool:
    return os.environ.get(ALLOW_NETWORK_ENV, "").strip().lower() in {"1", "true", "yes"}


@contextmanager
def hub_offline_unless_allowed() -> Iterator[bool]:
    """Run the body with the hub in offline mode unless the network is allowed.

    huggingface_hub reads ``HF_HUB_OFFLINE`` once at import, so its constant is switched along
    with the environment, and both are put back afterwards (also when the hub was first imported
    inside the body). Yields whether the network is allowed.
    """
    if network_allowed():
        yield True
        return
    saved_env = {key: os.environ.get(key) for key in _OFFLINE_ENV}
    os.environ.update({key: "1" for key in _OFFLINE_ENV})
    _set_hub_constant(True)
    try:
        yield False
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _set_hub_constant(_env_says_offline())


def _env_says_offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


# Module-level copies of the offline flag, taken when each library is imported. transformers 4.x
# forces local_files_only from its own copy; datasets keeps its own too.
_OFFLINE_FLAGS = (
    ("huggingface_hub.constants", "HF_HUB_OFFLINE"),
    ("transformers.utils.hub", "_is_offline_mode"),
    ("datasets.config", "HF_HUB_OFFLINE"),
    ("datasets.config", "HF_DATASETS_OFFLINE"),
)


def _set_hub_constant(offline: bool) -> None:
    for module_name, attr in _OFFLINE_FLAGS:
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, attr):
            setattr(module, attr, offline)


def not_available_offline(model_id: str) -> NetworkDisabledError:
    """The error for a model id that is neither a local path nor in the Hugging Face cache."""
    return NetworkDisabledError(
        f"{model_id} is not a local path and is not in the Hugging Face cache, and network access is "
        f"off; check the path, or set {ALLOW_NETWORK_ENV}=1 to download it"
    )


_HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")
"""What the hub accepts as a repository id: ``name`` or ``org/name``, of letters, digits, ``-_.``."""


def path_shaped(model_id: str) -> bool:
    """Whether ``model_id`` can only mean a local path, never a hub id (``org/name``): absolute,
    starting with ``.`` or ``~``, holding more than one ``/`` or the OS's own separator, not
    spelled as a hub id can be (a space, ``--``, ``..``), or ``org/name`` where ``org`` is a
    local directory (``models/base`` beside ``models/``)."""
    return (
        Path(model_id).expanduser().is_absolute()
        or model_id.startswith((".", "~"))
        or model_id.count("/") > 1
        or (os.sep != "/" and os.sep in model_id)
        or not _HUB_ID.fullmatch(model_id)
        or "--" in model_id
        or ".." in model_id
        or ("/" in model_id and Path(model_id.split("/", 1)[0]).is_dir())
    )


def check_model_path(model_id: str, what: str = "model") -> None:
    """Refuse a path-shaped ``model_id`` that does not exist (``ModelNotFoundError``, naming the
    absolute path it resolved to and the deepest part of it that exists); a hub id is left to the
    adapter, which answers offline with :func:`not_available_offline`."""
    path = Path(model_id).expanduser()
    if not path_shaped(model_id) or path.exists():
        return
    resolved = Path(os.path.abspath(path))
    existing = resolved.parent
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    missing = resolved.relative_to(existing).parts[0]
    raise ModelNotFoundError(
        f"{what} path {model_id} does not exist ({resolved}: {existing} has no {missing}); "
        "pass an existing checkpoint directory or a hub id"
    )
