"""Faults and races around snapshots: files changed underneath a restore, failed writes, killed writers.

Each case is met as a user meets it (a temp-dir cleaner, a second run, a full or read-only disk, a
killed process) and asserts the exact error code, a one-line message, and what the model holds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch

import invarlock_torch.chunked
import invarlock_torch.layout
from invarlock.errors import (
    InvarlockError,
    SnapshotCorruptError,
    SnapshotMismatchError,
    SnapshotPartiallyRestoredError,
    SnapshotWriteError,
)
from invarlock.testing import differing_tensors, mutate_weights
from invarlock_torch import restore_chunked_snapshot, restore_snapshot, take_snapshot, write_chunked_snapshot

SMALL_SHARDS = 2048
PARTIAL = "partially restored: restore again from a good snapshot"


def one_line(error: InvarlockError, code: str) -> str:
    message = str(error)
    assert error.code == code
    assert "\n" not in message, message
    return message


def shard_files(path: Path) -> list[Path]:
    return sorted(path.glob("shard-*.safetensors"))


def snapshot_written_earlier(model: Any, tmp_path: Path) -> Path:
    """A multi-shard snapshot whose files were last modified an hour ago, as a snapshot taken earlier
    in a run is (so an in-place change now moves their modification time at any clock granularity)."""
    path = write_chunked_snapshot(model, tmp_path, shard_bytes=SMALL_SHARDS)
    earlier = time.time() - 3600
    for shard in shard_files(path):
        os.utime(shard, (earlier, earlier))
    return path


@pytest.fixture
def after_verification(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], None]], None]:
    """``after_verification(action)``: run ``action`` once, when the next restore has verified its
    last shard and not yet written anything (when a temp-dir cleaner or a second run could strike)."""

    def install(action: Callable[[], None]) -> None:
        real = invarlock_torch.chunked._OpenShard.verify
        pending = [action]

        def verify(shard: Any, manifest: Any, pool: Any) -> None:
            real(shard, manifest, pool)
            if shard.record is manifest.shards[-1]:
                while pending:  # once: the next restore runs undisturbed
                    pending.pop()()

        monkeypatch.setattr(invarlock_torch.chunked._OpenShard, "verify", verify)

    return install


@pytest.fixture
def once_writing(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], None]], None]:
    """``once_writing(action)``: run ``action`` once, when the next restore starts writing (re-tying
    comes first, then the shards in turn)."""

    def install(action: Callable[[], None]) -> None:
        real = invarlock_torch.layout.RestorePlan.retie
        pending = [action]

        def retie(plan: Any) -> None:
            real(plan)
            while pending:
                pending.pop()()

        monkeypatch.setattr(invarlock_torch.layout.RestorePlan, "retie", retie)

    return install


# -- a chunked restore writes only bytes it verified -------------------------------------------------


def test_shards_removed_after_verification_are_still_restored_exactly(
    model: Any, tmp_path: Path, full_state: Any, assert_restored: Any, after_verification: Any
) -> None:
    before = full_state(model)
    path = write_chunked_snapshot(model, tmp_path, shard_bytes=SMALL_SHARDS)
    mutate_weights(model)
    after_verification(lambda: [shard.unlink() for shard in shard_files(path)])
    restore_chunked_snapshot(model, path)
    assert_restored(before, model)


def test_shards_replaced_by_rename_after_verification_are_restored_as_verified(
    model: Any, tmp_path: Path, full_state: Any, assert_restored: Any, after_verification: Any
) -> None:
    before = full_state(model)
    path = write_chunked_snapshot(model, tmp_path, shard_bytes=SMALL_SHARDS)
    mutate_weights(model)

    def replace_all() -> None:
        for shard in shard_files(path):
            forged = shard.with_suffix(".forged")
            forged.write_bytes(bytes(len(shard.read_bytes())))
            os.replace(forged, shard)

    after_verification(replace_all)
    restore_chunked_snapshot(model, path)
    assert_restored(before, model)


def test_shard_rewritten_in_place_before_the_first_write_is_refused_untouched(
    model: Any, tmp_path: Path, full_state: Any, after_verification: Any
) -> None:
    path = snapshot_written_earlier(model, tmp_path)
    mutate_weights(model)
    edited = full_state(model)
    last = shard_files(path)[-1]  # the shard copied first

    def rewrite() -> None:
        with last.open("r+b") as file:
            file.seek(-4, os.SEEK_END)
            file.write(b"\xff\xff\xff\xff")

    after_verification(rewrite)
    with pytest.raises(SnapshotCorruptError) as caught:
        restore_chunked_snapshot(model, path)
    message = one_line(caught.value, "snapshot_corrupt")
    assert "changed on disk" in message and "untouched" in message and last.name in message
    assert not differing_tensors(edited, full_state(model)), "a refused restore changed the model"


@pytest.mark.parametrize("damage", ["rewrite a byte", "truncate"])
def test_shard_changed_in_place_once_writing_began_is_a_partial_restore(
    model: Any, tmp_path: Path, full_state: Any, assert_restored: Any, once_writing: Any, damage: str
) -> None:
    before = full_state(model)
    path = snapshot_written_earlier(model, tmp_path)
    first = shard_files(path)[0]
    good = first.read_bytes()
    mutate_weights(model)
    edited = full_state(model)

    def change() -> None:
        with first.open("r+b") as file:
            if damage == "truncate":
                file.truncate(len(good) - 3)
            else:
                file.seek(-1, os.SEEK_END)
                file.write(bytes([good[-1] ^ 0xFF]))

    once_writing(change)
    with pytest.raises(SnapshotPartiallyRestoredError) as caught:
        restore_chunked_snapshot(model, path)
    message = one_line(caught.value, "snapshot_partially_restored")
    assert PARTIAL in message and first.name in message and "untouched" not in message
    # No byte that failed verification reached the model: each tensor holds its edited or its
    # snapshot value, and the tensors of the changed shard are still edited.
    now = full_state(model)
    assert all(
        torch.equal(now[n].view(torch.uint8), edited[n].view(torch.uint8))
        or torch.equal(now[n].view(torch.uint8), before[n].view(torch.uint8))
        for n in now
    )
    assert differing_tensors(edited, now), "nothing was written at all"
    # As the message says: restore again from a good snapshot.
    first.write_bytes(good)
    restore_chunked_snapshot(model, path)
    assert_restored(before, model)


# -- in-memory restore checks the snapshot's own tensors first ----------------------------------------


@pytest.mark.parametrize("change", ["resize the last", "replace the last with another dtype"])
def test_snapshot_object_whose_tensors_changed_is_refused_before_any_write(
    model: Any, full_state: Any, change: str
) -> None:
    snapshot = take_snapshot(model)
    if change == "resize the last":
        snapshot.tensors[-1].resize_(1)
    else:
        snapshot.tensors[-1].data = snapshot.tensors[-1].to(torch.float16)
    mutate_weights(model)
    edited = full_state(model)
    with pytest.raises(SnapshotMismatchError) as caught:
        restore_snapshot(model, snapshot)
    message = one_line(caught.value, "snapshot_mismatch")
    assert "changed since it was taken" in message and "untouched" in message
    assert not differing_tensors(edited, full_state(model)), "a refused restore changed the model"


# -- chunked writes that fail on disk ------------------------------------------------------------------


def assert_write_refused(model: Any, target: Path, named: Path, reason: str) -> None:
    with pytest.raises(SnapshotWriteError) as caught:
        write_chunked_snapshot(model, target)
    message = one_line(caught.value, "snapshot_write_failed")
    assert str(named) in message and reason in message and "bytes" in message, message


def test_a_file_as_target_is_one_error_naming_it(model: Any, tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("not a directory")
    assert_write_refused(model, target, target, "File exists")
    assert_write_refused(model, target / "below", target / "below", "Not a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


@pytest.mark.parametrize(
    ("failure", "reason"), [(28, "No space left on device"), (30, "Read-only file system")]
)
def test_an_os_failure_mid_write_is_one_error_and_leaves_nothing(
    model: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: int, reason: str
) -> None:
    real_save_file = safetensors.torch.save_file
    calls = []

    def save_then_fail(tensors: dict[str, torch.Tensor], filename: str, **kwargs: Any) -> None:
        calls.append(filename)
        if len(calls) == 2:
            raise OSError(failure, os.strerror(failure))
        real_save_file(tensors, filename, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", save_then_fail)
    with pytest.raises(SnapshotWriteError) as caught:
        write_chunked_snapshot(model, tmp_path, shard_bytes=SMALL_SHARDS)
    message = one_line(caught.value, "snapshot_write_failed")
    assert str(tmp_path) in message and reason in message
    assert list(tmp_path.iterdir()) == []


def _can_mount() -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux to mount a small tmpfs"
    return None


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs: too small for TinyNet's snapshot."""
    skip = _can_mount()
    if skip:
        pytest.skip(skip)
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "none", str(mount_point)], check=False)
    if done.returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def test_a_full_disk_is_refused_before_writing_naming_bytes_needed_and_free(
    small_filesystem: Path, make_model: Any
) -> None:
    model = make_model(hidden=64, vocab=512)  # about 0.2 MB of tensors
    with pytest.raises(SnapshotWriteError) as caught:
        write_chunked_snapshot(model, small_filesystem)
    message = one_line(caught.value, "snapshot_write_failed")
    assert str(small_filesystem) in message and "bytes" in message and "free" in message
    assert list(small_filesystem.iterdir()) == []


def test_a_read_only_disk_is_one_error(small_filesystem: Path, model: Any) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(small_filesystem)], check=True)
    assert_write_refused(model, small_filesystem, small_filesystem, "Read-only file system")


# -- durability and killed writers -------------------------------------------------------------------


def test_every_file_and_both_directories_are_fsynced_before_the_rename(
    model: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, str]] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(descriptor: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    def rename(source: Any, target: Any) -> None:
        events.append(("rename", str(target)))
        real_rename(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    path = write_chunked_snapshot(model, tmp_path, shard_bytes=SMALL_SHARDS)
    names = [Path(target).name for _, target in events]
    renamed = [kind for kind, _ in events].index("rename")
    synced_first = set(names[:renamed])
    assert {p.name for p in path.iterdir()} <= synced_first, "a file was not fsynced before the rename"
    assert any(n.endswith(".partial") for n in synced_first), "the staging directory was not fsynced"
    assert events[renamed + 1] == ("fsync", str(tmp_path)), "the parent directory was not fsynced after"


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time, torch, safetensors.torch
    from invarlock_torch import write_chunked_snapshot
    real = safetensors.torch.save_file
    def save_then_hang(tensors, filename, **kwargs):
        real(tensors, filename, **kwargs)
        print("WROTE", flush=True)
        time.sleep(600)
    safetensors.torch.save_file = save_then_hang
    write_chunked_snapshot(torch.nn.Linear(64, 64), sys.argv[1])
    """
)


def test_a_killed_writers_staging_directory_is_removed_by_the_next_write(model: Any, tmp_path: Path) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "WROTE"
        (staging,) = list(tmp_path.iterdir())
        assert staging.name.endswith(".partial")
        # While the writer lives, another write leaves its staging directory alone.
        live = write_chunked_snapshot(model, tmp_path)
        assert staging.exists()
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    path = write_chunked_snapshot(model, tmp_path)
    assert not staging.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, path.name])


def test_an_unlocked_young_staging_directory_is_left_alone(model: Any, tmp_path: Path) -> None:
    staging = tmp_path / ".invarlock-snapshot-abcdefgh.partial"
    staging.mkdir()
    (staging / "shard-00000.safetensors").write_bytes(b"half")
    write_chunked_snapshot(model, tmp_path)
    assert staging.exists()  # no lock file and young: its writer may be renaming it right now
    old = time.time() - 2 * 3600
    os.utime(staging, (old, old))
    write_chunked_snapshot(model, tmp_path)
    assert not staging.exists()
