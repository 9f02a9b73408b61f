"""Offline by default: the hub is in offline mode inside loading unless INVARLOCK_ALLOW_NETWORK=1.

huggingface_hub and transformers copy the offline flag into module constants when imported; the
context manager switches those copies too. They are not installed in core's test environment, so
modules with the same names and attributes stand in for them here.
"""

from __future__ import annotations

import os
import sys
import types

import pytest

from invarlock.errors import NetworkDisabledError
from invarlock.network import hub_offline_unless_allowed, network_allowed, not_available_offline

OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in (*OFFLINE_ENV, "INVARLOCK_ALLOW_NETWORK"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


@pytest.fixture
def hub_modules(monkeypatch: pytest.MonkeyPatch) -> tuple[types.ModuleType, types.ModuleType]:
    constants = types.ModuleType("huggingface_hub.constants")
    constants.HF_HUB_OFFLINE = False  # type: ignore[attr-defined]
    transformers_hub = types.ModuleType("transformers.utils.hub")
    transformers_hub._is_offline_mode = False  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "huggingface_hub.constants", constants)
    monkeypatch.setitem(sys.modules, "transformers.utils.hub", transformers_hub)
    return constants, transformers_hub


def test_offline_inside_and_environment_restored(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TRANSFORMERS_OFFLINE", "0")
    with hub_offline_unless_allowed() as allowed:
        assert allowed is False
        assert all(os.environ[key] == "1" for key in OFFLINE_ENV)
    assert "HF_HUB_OFFLINE" not in os.environ
    assert os.environ["TRANSFORMERS_OFFLINE"] == "0"


def test_module_constants_follow_and_are_put_back(clean_env: pytest.MonkeyPatch, hub_modules: tuple) -> None:
    constants, transformers_hub = hub_modules
    with hub_offline_unless_allowed():
        assert constants.HF_HUB_OFFLINE is True
        assert transformers_hub._is_offline_mode is True
    assert constants.HF_HUB_OFFLINE is False
    assert transformers_hub._is_offline_mode is False


def test_an_offline_environment_stays_offline_afterwards(
    clean_env: pytest.MonkeyPatch, hub_modules: tuple
) -> None:
    clean_env.setenv("HF_HUB_OFFLINE", "1")
    constants, _ = hub_modules
    with hub_offline_unless_allowed():
        pass
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert constants.HF_HUB_OFFLINE is True


def test_restored_when_the_body_raises(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError), hub_offline_unless_allowed():
        raise RuntimeError("load failed")
    assert not any(key in os.environ for key in OFFLINE_ENV)


def test_nested_use_keeps_the_outer_offline(clean_env: pytest.MonkeyPatch) -> None:
    with hub_offline_unless_allowed():
        with hub_offline_unless_allowed():
            pass
        assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert "HF_HUB_OFFLINE" not in os.environ


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_allowed_network_changes_nothing(
    clean_env: pytest.MonkeyPatch, hub_modules: tuple, value: str
) -> None:
    clean_env.setenv("INVARLOCK_ALLOW_NETWORK", value)
    constants, _ = hub_modules
    assert network_allowed()
    with hub_offline_unless_allowed() as allowed:
        assert allowed is True
        assert "HF_HUB_OFFLINE" not in os.environ
        assert constants.HF_HUB_OFFLINE is False


def test_the_offline_error_says_what_to_do() -> None:
    error = not_available_offline("org/model")
    assert isinstance(error, NetworkDisabledError)
    assert error.code == "network_disabled"
    assert "org/model" in str(error)
    assert "INVARLOCK_ALLOW_NETWORK=1" in str(error)
