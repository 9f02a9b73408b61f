"""Every test gets its own baseline cache directory: a certify in one test never hits an entry
another test stored (the cache tests in test_certify.py share one within a test on purpose)."""

from __future__ import annotations

from pathlib import Path

import pytest

from invarlock.certification.cache import CACHE_ENV


@pytest.fixture(autouse=True)
def baseline_cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path_factory.mktemp("baseline-cache")
    monkeypatch.setenv(CACHE_ENV, str(directory))
    return directory
