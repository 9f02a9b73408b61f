"""Whether an adapter can run here, read from installed distribution metadata only.

Nothing here imports a backend: version bounds come from the providing distribution's own
``Requires-Dist`` (its pyproject), and installed versions from ``importlib.metadata``.
"""

from __future__ import annotations

import enum
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, requires, version

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from invarlock.types import AdapterSpec


class Status(str, enum.Enum):
    READY = "ready"
    NEEDS_EXTRA = "needs_extra"
    UNSUPPORTED = "unsupported"
    ERROR = "error"
    DISABLED = "disabled"


@dataclass(frozen=True)
class Readiness:
    status: Status
    reason: str = ""
    missing: tuple[str, ...] = ()
    """Requirements that are not met, as PEP 508 strings."""
    install: str | None = None
    """The exact command that fixes a ``needs_extra`` status."""
    backend_version: str | None = None


def installed_version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def platform_supported(platforms: tuple[str, ...]) -> bool:
    return not platforms or any(sys.platform.startswith(p) for p in platforms)


def _declared_requirements(distribution: str) -> dict[str, Requirement]:
    """The distribution's unconditional requirements (extras left out), by canonical name."""
    declared: dict[str, Requirement] = {}
    for line in requires(distribution) or []:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker is not None and "extra" in str(requirement.marker):
            continue
        declared[canonicalize_name(requirement.name)] = requirement
    return declared


def check_backend(spec: AdapterSpec) -> Readiness:
    """Readiness of an installed adapter: platform, then each backend distribution."""
    platform_list = ", ".join(spec.platforms)
    if not platform_supported(spec.platforms):
        return Readiness(
            Status.UNSUPPORTED,
            f"{spec.name} runs on {platform_list} only (this is {sys.platform})",
        )
    declared = _declared_requirements(spec.distribution) if spec.distribution else {}
    missing: list[str] = []
    reasons: list[str] = []
    for backend in spec.backend:
        requirement = declared.get(canonicalize_name(backend)) or Requirement(backend)
        if requirement.marker is not None and not requirement.marker.evaluate():
            return Readiness(
                Status.UNSUPPORTED,
                f"{backend} is not available on this platform ({requirement.marker})",
            )
        have = installed_version(backend)
        wanted = f"{requirement.name}{requirement.specifier}"
        if have is None:
            reasons.append(f"{backend} is not installed")
        elif requirement.specifier and not requirement.specifier.contains(have, prereleases=True):
            reasons.append(f"{backend} {have} is installed but {wanted} is required")
        else:
            continue
        missing.append(wanted)
        for legacy, replacement in spec.superseded_backends.items():
            legacy_version = installed_version(legacy)
            if legacy_version and canonicalize_name(replacement) == canonicalize_name(backend):
                reasons.append(
                    f"{legacy} {legacy_version} is installed but no longer works with current "
                    f"torch and transformers; {spec.name} uses {replacement} instead"
                )
    backend_version = installed_version(spec.backend[0]) if spec.backend else None
    if missing:
        install = "pip install " + " ".join(f'"{m}"' if any(c in m for c in "<>=!~") else m for m in missing)
        return Readiness(
            Status.NEEDS_EXTRA, "; ".join(reasons), tuple(missing), install, backend_version
        )
    return Readiness(Status.READY, backend_version=backend_version)
