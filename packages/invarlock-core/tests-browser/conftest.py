"""The HTML certificate in a real browser: Debian's headless Chromium, and poppler's pdftoppm and
pdftotext for the printed page. Run by the ``browser`` nox session.

Where Chromium or poppler-utils is missing the tests skip with the reason, except when
``INVARLOCK_REQUIRE_BROWSER=1`` (CI's .ci/run sets it): then they fail, so CI never skips them.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "docs" / "examples"
sys.path.insert(0, str(REPO / "tools"))

import chromium  # noqa: E402  (tools/chromium.py: the flags and the runner, shared with the docs' screenshots)

REQUIRE = os.environ.get("INVARLOCK_REQUIRE_BROWSER") == "1"


@pytest.fixture(scope="session")
def browser() -> None:
    """Skips (or, with INVARLOCK_REQUIRE_BROWSER=1, fails) where the browser tools are missing."""
    missing = chromium.missing_tools()
    if missing:
        reason = f"needs {' and '.join(missing)} (apt-get install {' '.join(missing)})"
        if REQUIRE:
            pytest.fail(
                f"INVARLOCK_REQUIRE_BROWSER=1 but this machine lacks {' and '.join(missing)}: {reason}"
            )
        pytest.skip(reason)


@pytest.fixture(scope="session")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo's PASS and FAIL certificates (docs/examples/, written by a real certify), rendered."""
    from invarlock.certification.certificate.html import render_html

    directory = tmp_path_factory.mktemp("pages")
    rendered = {}
    for verdict, stem in chromium.CERTIFICATES.items():
        certificate: dict[str, Any] = json.loads((EXAMPLES / f"{stem}.json").read_text())
        assert certificate["verdict"] == verdict.upper()
        rendered[verdict] = directory / f"{verdict}.html"
        rendered[verdict].write_text(render_html(certificate), encoding="utf-8")
    return rendered
