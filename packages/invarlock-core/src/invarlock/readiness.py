"""Whether an adapter can run here, read from installed distribution metadata only.

Nothing here imports a backend: version bounds come from the providing distribution's own
``Requires-Dist`` (its pyproject), and installed versions from ``importlib.metadata``.
"""

from __future__ import annotations

import enum
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution, requires, version

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion

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


def installed_version(name: str) -> str | None:
    try:
        found = distribution(name)
    except PackageNotFoundError:
        return None
    # Read the Version header directly: importlib's email parsing of a whole METADATA file
    # (transformers' holds its README) costs milliseconds on every load_model.
    text = found.read_text("METADATA") or found.read_text("PKG-INFO") or ""
    for line in text.split("\n\n", 1)[0].splitlines():
        if line.startswith("Version:"):
            return line.partition(":")[2].strip()
    return version(name)


def pip_install(requirements: list[str] | tuple[str, ...]) -> str:
    """The pip command that installs ``requirements``, quoted for a POSIX shell where needed."""
    return "pip install " + " ".join(f'"{r}"' if any(c in r for c in "<>=!~;") else r for r in requirements)


def platform_supported(platforms: tuple[str, ...]) -> bool:
    return not platforms or any(sys.platform.startswith(p) for p in platforms)


def _declared_requirements(distribution: str) -> dict[str, Requirement]:
    """The distribution's requirements outside extras, by canonical name.

    A backend declared twice under different markers (``torch>=2.2; python_version < "3.13"``)
    keeps the line whose marker holds here; a backend whose every line is excluded by its marker
    keeps the first, so the caller can report the platform as unsupported. A distribution that is
    not installed (an in-process plugin) declares nothing.
    """
    try:
        lines = requires(distribution) or []
    except PackageNotFoundError:
        return {}
    declared: dict[str, Requirement] = {}
    for line in lines:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker is not None and "extra" in str(requirement.marker):
            continue
        key = canonicalize_name(requirement.name)
        previous = declared.get(key)
        if previous is None or not _marker_holds(previous):
            declared[key] = requirement
    return declared


def _marker_holds(requirement: Requirement) -> bool:
    return requirement.marker is None or requirement.marker.evaluate()


def _satisfies(installed: str, requirement: Requirement) -> bool:
    try:
        return requirement.specifier.contains(installed, prereleases=True)
    except InvalidVersion:  # a version string pip itself would not accept
        return False


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
        if not _marker_holds(requirement):
            return Readiness(
                Status.UNSUPPORTED,
                f"{spec.name} needs {backend}, which {spec.distribution} supports only where "
                f"{requirement.marker} (this is {sys.platform})",
            )
        have = installed_version(backend)
        wanted = f"{requirement.name}{requirement.specifier}"
        if have is None:
            reasons.append(f"{backend} is not installed")
        elif requirement.specifier and not _satisfies(have, requirement):
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
        return Readiness(
            Status.NEEDS_EXTRA, "; ".join(reasons), tuple(missing), pip_install(missing), backend_version
        )
    return Readiness(Status.READY, backend_version=backend_version)
