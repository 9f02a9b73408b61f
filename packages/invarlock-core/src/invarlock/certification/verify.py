"""``invarlock verify CERTIFICATE``: are these the checkpoints the certificate is about?

Each side's files are hashed again (:mod:`.identity`, one read of each byte, no model loaded) and
compared with the manifest the certificate recorded: every file's size and SHA-256, and the digest
over them. The certificate's own ``certificate_id`` is recomputed from its contents, so an edited
certificate is caught too. Sides default to the paths the certificate recorded (relative ones read
from the directory certify ran in); ``--baseline`` / ``--subject`` name other copies.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from invarlock.certification import identity
from invarlock.certification.certificate import CERTIFICATE_SCHEMA
from invarlock.errors import CertificateInvalidError, ModelNotFoundError

SIDES = ("baseline", "subject")


def load_certificate(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / "certificate.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CertificateInvalidError(
            f"certificate {path} does not exist; pass a certificate.json or the directory holding it"
        ) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CertificateInvalidError(
            f"{path} is not a readable JSON certificate ({exc}); pass certificate.json"
        ) from exc
    if not isinstance(document, dict) or document.get("schema") != CERTIFICATE_SCHEMA:
        raise CertificateInvalidError(
            f"{path} is not an InvarLock certificate ({CERTIFICATE_SCHEMA}); pass certificate.json"
        )
    for side in SIDES:
        block = document.get(side)
        if not isinstance(block, dict) or not isinstance(block.get("identity"), dict):
            raise CertificateInvalidError(
                f"{path} records no content identity for the {side} (written by an older invarlock); "
                "certify again to get a certificate that can be verified"
            )
    return document


def recorded_location(certificate: Mapping[str, Any], side: str) -> str:
    """Where the side was read from: its model id, a relative path taken from certify's directory."""
    model_id = str(certificate[side]["model_id"])
    if certificate[side]["identity"]["source"] == "hub-cache":
        return model_id
    path = Path(model_id).expanduser()
    cwd = (certificate.get("invocation") or {}).get("cwd")
    if not path.is_absolute() and cwd:
        path = Path(cwd) / path
    if not path.exists():
        raise ModelNotFoundError(
            f"the certificate's {side} {model_id} is not at {path} any more; pass --{side} with its location"
        )
    return str(path)


def compare_manifests(recorded: Mapping[str, Any], now: identity.Manifest) -> dict[str, Any]:
    """What differs between the recorded manifest and the files as they are now."""
    before = {f["path"]: f for f in recorded["files"]}
    after = {f.path: f for f in now.files}
    changed = sorted(
        p
        for p in before.keys() & after.keys()
        if before[p]["sha256"] != after[p].sha256 or before[p]["size"] != after[p].size
    )
    recorded_digest = identity.digest_of_listing(recorded["files"])
    return {
        "matches": now.digest == recorded["digest"] == recorded_digest,
        "digest_recorded": recorded["digest"],
        "digest_now": now.digest,
        "manifest_consistent": recorded_digest == recorded["digest"],
        "changed": changed,
        "missing": sorted(before.keys() - after.keys()),
        "added": sorted(after.keys() - before.keys()),
        "files": len(now.files),
        "bytes": now.total_bytes,
        "seconds": round(now.seconds, 4),
    }


def verify(certificate_path: str | Path, locations: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """Re-hash both sides and compare; ``locations`` overrides where a side's checkpoint is."""
    from invarlock.certification.certify import certificate_id

    certificate = load_certificate(certificate_path)
    locations = locations or {}
    sides: dict[str, Any] = {}
    for side in SIDES:
        recorded = certificate[side]["identity"]
        where = locations.get(side) or recorded_location(certificate, side)
        location = identity.locate(where, recorded.get("revision"))
        manifest = identity.read_checkpoint(location)
        sides[side] = {"path": where, "revision": location.revision, **compare_manifests(recorded, manifest)}
    id_matches = certificate_id(certificate) == certificate["certificate_id"]
    return {
        "certificate": str(certificate_path),
        "certificate_id": certificate["certificate_id"],
        "certificate_id_matches": id_matches,
        "verdict": certificate["verdict"],
        "sides": sides,
        "matches": id_matches and all(s["matches"] for s in sides.values()),
    }


def summary(result: Mapping[str, Any]) -> str:
    lines = []
    head = "MATCH" if result["matches"] else "MISMATCH"
    lines.append(
        f"{head}: certificate {result['certificate_id']} ({result['verdict']})"
        + ("" if result["matches"] else " is not about these files")
    )
    if not result["certificate_id_matches"]:
        lines.append(
            "  the certificate's contents do not give its certificate_id: it was edited after certify"
        )
    for side, info in result["sides"].items():
        state = "matches" if info["matches"] else "DIFFERS"
        lines.append(
            f"  {side} {info['path']}: {state} (sha256 {info['digest_now'][:16]}…, {info['files']} files, "
            f"hashed in {info['seconds']:.2f}s)"
        )
        for key, label in (("changed", "changed"), ("missing", "missing"), ("added", "added")):
            if info[key]:
                lines.append(f"    {label}: {', '.join(info[key])}")
        if not info["manifest_consistent"]:
            lines.append(
                "    the recorded manifest does not give its recorded digest: the certificate was edited"
            )
    return "\n".join(lines)
