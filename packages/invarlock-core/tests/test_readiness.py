"""Readiness comes from installed distribution metadata: declared bounds, installed versions, markers."""

from __future__ import annotations

import sys
from types import MappingProxyType
from typing import Any

from invarlock.adapters import Adapter
from invarlock.readiness import Status, check_backend
from invarlock.types import AdapterSpec, Role


def spec(backend: tuple[str, ...], distribution: str = "invarlock-provider", **fields: Any) -> AdapterSpec:
    return AdapterSpec("probe", Role.CAUSAL, Adapter, backend=backend, distribution=distribution, **fields)


def test_ready_when_every_backend_meets_the_declared_bound(site: Any) -> None:
    site.add_distribution("invarlock-provider", requires=["fakeengine>=2.0"])
    site.add_distribution("fakeengine", "2.1")
    readiness = check_backend(spec(("fakeengine",)))
    assert readiness.status is Status.READY
    assert readiness.backend_version == "2.1"
    assert readiness.install is None


def test_missing_backend_needs_extra_with_the_exact_pip_command(site: Any) -> None:
    site.add_distribution("invarlock-provider", requires=["absentengine>=1.2,<3", "fakeengine"])
    site.add_distribution("fakeengine", "0.1")
    readiness = check_backend(spec(("absentengine", "fakeengine")))
    assert readiness.status is Status.NEEDS_EXTRA
    assert readiness.missing == ("absentengine<3,>=1.2",)
    assert readiness.install == 'pip install "absentengine<3,>=1.2"'
    assert readiness.reason == "absentengine is not installed"


def test_backend_without_a_declared_bound_installs_by_name(site: Any) -> None:
    site.add_distribution("invarlock-provider")
    readiness = check_backend(spec(("absentengine",)))
    assert readiness.install == "pip install absentengine"


def test_backend_too_old_names_installed_and_required_versions(site: Any) -> None:
    site.add_distribution("invarlock-provider", requires=["fakeengine>=2.0"])
    site.add_distribution("fakeengine", "1.0")
    readiness = check_backend(spec(("fakeengine",)))
    assert readiness.status is Status.NEEDS_EXTRA
    assert readiness.reason == "fakeengine 1.0 is installed but fakeengine>=2.0 is required"
    assert readiness.install == 'pip install "fakeengine>=2.0"'
    assert readiness.backend_version == "1.0"


def test_requirements_of_extras_do_not_count(site: Any) -> None:
    site.add_distribution("invarlock-provider", requires=['fakeengine>=9; extra == "test"'])
    site.add_distribution("fakeengine", "1.0")
    assert check_backend(spec(("fakeengine",))).status is Status.READY


def test_unsupported_platform_from_the_spec() -> None:
    readiness = check_backend(spec(("fakeengine",), platforms=("plan9",)))
    assert readiness.status is Status.UNSUPPORTED
    assert readiness.reason == f"probe runs on plan9 only (this is {sys.platform})"
    assert readiness.install is None


def test_unsupported_platform_from_the_requirement_marker(site: Any) -> None:
    site.add_distribution("invarlock-provider", requires=['fakeengine>=1; sys_platform == "plan9"'])
    readiness = check_backend(spec(("fakeengine",)))
    assert readiness.status is Status.UNSUPPORTED
    assert 'sys_platform == "plan9"' in readiness.reason


def test_the_requirement_line_whose_marker_holds_is_used(site: Any) -> None:
    site.add_distribution(
        "invarlock-provider",
        requires=[
            'fakeengine>=5; sys_platform == "plan9"',
            f'fakeengine>=2; sys_platform == "{sys.platform}"',
        ],
    )
    site.add_distribution("fakeengine", "2.5")
    assert check_backend(spec(("fakeengine",))).status is Status.READY


def test_superseded_legacy_backend_is_explained(site: Any) -> None:
    site.add_distribution("invarlock-provider", requires=["newquant>=7.3"])
    site.add_distribution("oldquant", "0.7.1")
    readiness = check_backend(
        spec(("newquant",), superseded_backends=MappingProxyType({"oldquant": "newquant"}))
    )
    assert readiness.status is Status.NEEDS_EXTRA
    assert readiness.install == 'pip install "newquant>=7.3"'
    assert "oldquant 0.7.1 is installed but no longer works" in readiness.reason
    assert "probe uses newquant instead" in readiness.reason


def test_installed_needs_extra_adapter_in_the_listing(site: Any, listing: Any) -> None:
    plugin = """
from invarlock import hookimpl
from invarlock.adapters import Adapter
from invarlock.types import AdapterSpec, Role

class Engine(Adapter):
    name = "engine_adapter"

@hookimpl
def invarlock_register_adapters():
    return [AdapterSpec("engine_adapter", Role.SEQ2SEQ, Engine, backend=("absentengine",), notes="n")]
"""
    site.add_distribution("acme-engine", "3.1", plugins={"engine": plugin}, requires=["absentengine>=4"])
    items = {item["name"]: item for item in listing(env=site.env)["adapters"]}
    item = items["engine_adapter"]
    assert item["status"] == "needs_extra"
    assert item["missing"] == ["absentengine>=4"]
    assert item["install"] == 'pip install "absentengine>=4"'
    assert (item["distribution"], item["version"], item["origin"]) == ("acme-engine", "3.1", "third-party")
