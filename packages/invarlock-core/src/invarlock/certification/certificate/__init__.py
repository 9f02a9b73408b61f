"""Certificates and reports on disk: JSON, Markdown and a standalone HTML page.

Files are written to a temporary name next to their destination and renamed into place only
once all of them are complete, so an error never leaves a partial certificate behind. The JSON
schemas are ``docs/schemas/certificate.v1.json`` and ``docs/schemas/report.v1.json``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from invarlock.errors import OutputWriteError

CERTIFICATE_SCHEMA = "invarlock.certificate/v1"
REPORT_SCHEMA = "invarlock.report/v1"
CERTIFICATE_FILES = {"json": "certificate.json", "markdown": "certificate.md", "html": "certificate.html"}
REPORT_FILE = "evaluation.report.json"


def to_json(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_files_atomically(directory: Path, contents: Mapping[str, str]) -> dict[str, Path]:
    """Write ``{file name: text}`` into ``directory``: all files appear, or none does."""
    staged: dict[Path, Path] = {}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in contents.items():
            handle, temp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=directory)
            staged[Path(temp_name)] = directory / name
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
            os.chmod(temp_name, _file_mode())  # mkstemp creates 0600; results are ordinary files
        for temp, final in staged.items():
            os.replace(temp, final)
    except OSError as exc:
        raise OutputWriteError(
            f"cannot write into {directory} ({exc.strerror or exc}); choose another --out"
        ) from exc
    finally:
        for temp in staged:
            temp.unlink(missing_ok=True)
    return {name: directory / name for name in contents}


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_certificate(certificate: dict[str, Any], directory: str | Path) -> dict[str, Path]:
    """Write certificate.json, certificate.md and certificate.html into ``directory``.

    :returns: ``{"json": path, "markdown": path, "html": path}``.
    """
    from invarlock.certification.certificate.html import render_html
    from invarlock.certification.certificate.markdown import render_markdown

    directory = Path(directory)
    certificate["files"] = dict(CERTIFICATE_FILES)
    contents = {
        CERTIFICATE_FILES["json"]: to_json(certificate),
        CERTIFICATE_FILES["markdown"]: render_markdown(certificate),
        CERTIFICATE_FILES["html"]: render_html(certificate),
    }
    written = write_files_atomically(directory, contents)
    return {kind: written[name] for kind, name in CERTIFICATE_FILES.items()}


def write_report(report: dict[str, Any], directory: str | Path) -> Path:
    """Write ``evaluation.report.json`` into ``directory``."""
    return write_files_atomically(Path(directory), {REPORT_FILE: to_json(report)})[REPORT_FILE]
