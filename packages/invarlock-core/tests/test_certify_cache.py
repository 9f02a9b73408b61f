"""The baseline cache's store: where it lives, what a key covers, and that only whole, unaltered
entries are ever returned. Certify's use of it (miss, hit, misses on any change) is tested end to
end in tests-integration/test_certify.py; arrays round-trip there too (they need numpy)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from invarlock import paths
from invarlock.certification import cache
from invarlock.certification.cache import CACHE_ENV, BaselineCache, BaselineCacheWarning, cache_key

META = {"scores": [[0, 12.5, 47], [48, float("nan"), 47]], "description": {"role": "causal"}}


def test_the_cache_directory_follows_the_env_var_then_xdg_then_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert paths.cache_dir() == tmp_path / "home" / ".cache" / "invarlock"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    assert paths.cache_dir() == tmp_path / "home" / ".cache" / "invarlock"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.cache_dir() == tmp_path / "xdg" / "invarlock"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert paths.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert paths.cache_dir() == tmp_path / "home" / "Library" / "Caches" / "invarlock"


def test_a_key_changes_with_any_part() -> None:
    parts = {"baseline": "a" * 64, "dtype": "checkpoint", "windows": {"window_ids": [0, 48]}}
    key = cache_key(parts)
    assert key == cache_key(dict(reversed(parts.items())))  # order of the parts does not matter
    assert len(key) == 64
    changed = [
        {**parts, "baseline": "b" * 64},
        {**parts, "dtype": "bfloat16"},
        {**parts, "windows": {"window_ids": [0, 49]}},
        {**parts, "device": "cpu"},
    ]
    assert len({key, *map(cache_key, changed)}) == 5


def test_an_entry_round_trips(tmp_path: Path) -> None:
    store = BaselineCache(tmp_path)
    assert store.get("0" * 64).detail == "absent"
    path = store.put("0" * 64, META)
    assert path == tmp_path / "baselines" / "00" / f"{'0' * 64}.entry"
    found = store.get("0" * 64)
    assert found.detail == "found" and found.entry is not None
    assert found.entry.meta["description"] == META["description"]
    assert found.entry.meta["scores"][0] == [0, 12.5, 47]
    assert str(found.entry.meta["scores"][1][1]) == "nan"  # a non-finite score is kept, not refused
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left


def test_every_flipped_byte_and_every_truncation_is_refused(tmp_path: Path) -> None:
    key = "1" * 64
    data = cache.encode(key, META, {})
    for position in range(len(data)):
        damaged = bytearray(data)
        damaged[position] ^= 0x01
        with pytest.raises(cache.CorruptEntry):
            cache.decode(bytes(damaged), key)
    for length in range(len(data)):
        with pytest.raises(cache.CorruptEntry):
            cache.decode(data[:length], key)
    assert cache.decode(data, key).meta["description"] == META["description"]


def test_an_entry_under_another_key_is_refused(tmp_path: Path) -> None:
    store = BaselineCache(tmp_path)
    store.put("2" * 64, META)
    store.path("3" * 64).parent.mkdir(parents=True)
    store.path("2" * 64).rename(store.path("3" * 64))
    with pytest.warns(BaselineCacheWarning, match="not a format-1 entry for this key"):
        found = store.get("3" * 64)
    assert found.entry is None and found.detail.startswith("corrupt")


def test_a_corrupt_entry_is_warned_about_once(tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    store = BaselineCache(tmp_path)
    path = store.put("4" * 64, META)
    assert path is not None
    path.write_bytes(path.read_bytes()[:-1])
    assert store.get("4" * 64).entry is None
    assert store.get("4" * 64).entry is None
    assert len([w for w in recwarn if issubclass(w.category, BaselineCacheWarning)]) == 1
    store.put("4" * 64, META)  # the run that missed rewrites it
    assert store.get("4" * 64).detail == "found"


def test_an_unwritable_cache_is_warned_about_and_the_run_goes_on(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.warns(BaselineCacheWarning, match="could not be written"):
        assert BaselineCache(blocker).put("5" * 64, META) is None


def test_concurrent_writers_and_readers_only_ever_see_whole_entries(tmp_path: Path) -> None:
    store = BaselineCache(tmp_path)
    key = "6" * 64
    metas = [{"writer": n, "payload": "x" * 20000 * (n + 1)} for n in range(4)]
    seen: list[str] = []
    stop = threading.Event()

    def write(meta: dict[str, object]) -> None:
        for _ in range(25):
            store.put(key, meta)

    def read() -> None:
        while not stop.is_set():
            found = store.get(key)
            seen.append(found.detail)
            if found.entry is not None:
                assert found.entry.meta in metas

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(meta,)) for meta in metas]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    reader.join()
    assert set(seen) <= {"absent", "found"} and "found" in seen
    assert store.get(key).detail == "found"
    assert [p.name for p in store.path(key).parent.iterdir()] == [store.path(key).name]
