"""Offline first: the Hugging Face hub is reachable only when ``INVARLOCK_ALLOW_NETWORK=1``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

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


def _set_hub_constant(offline: bool) -> None:
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = offline  # type: ignore[attr-defined]
