"""The writer lock: a second live writer is refused, a killed holder's lock is taken over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nsynth_prep.errors import LockedError, StorageError
from nsynth_prep.storage.lock import exclusive
from nsynth_prep.storage.store import storage_errors

HOLD = """
import sys, time
from pathlib import Path
from nsynth_prep.storage.lock import exclusive
with exclusive(Path(sys.argv[1]), "the test artifact"):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(lock: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()


def test_second_writer_is_refused_naming_the_holder(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    proc = _holder(lock)
    try:
        with pytest.raises(LockedError, match=f"pid {proc.pid}"), exclusive(lock, "the test artifact"):
            pass
    finally:
        _stop(proc)


def test_lock_of_a_killed_holder_is_taken_over(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    proc = _holder(lock)
    os.kill(proc.pid, signal.SIGKILL)
    _stop(proc)
    with exclusive(lock, "the test artifact"):
        assert str(os.getpid()) in lock.read_text()


def test_wait_blocks_until_the_holder_is_done(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    proc = _holder(lock)
    start = time.monotonic()
    killer = subprocess.Popen(["sh", "-c", f"sleep 1; kill {proc.pid}"])
    with exclusive(lock, "the test artifact", wait=True):
        assert time.monotonic() - start >= 0.9
    killer.wait()
    _stop(proc)


def test_read_only_folder_is_one_storage_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root writes through permissions: simulate the kernel's answer instead
        with pytest.raises(StorageError, match="read-only file system"), storage_errors("cache"):
            raise OSError(30, "Read-only file system", str(tmp_path / "f"))
        return
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(StorageError), exclusive(tmp_path / "sub" / "x.lock", "it"):
            pass
    finally:
        tmp_path.chmod(0o700)
