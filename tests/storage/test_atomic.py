"""Atomic writes: the old file or the whole new one, never part; one temporary name; the cleaner
removes killed writers' temporaries and nothing else, and only where no writer is live."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nsynth_prep.errors import LockedError
from nsynth_prep.storage.atomic import TEMPORARY, atomic_path, is_temporary, remove_stale, tmp_name, tmp_path
from nsynth_prep.storage.store import Remote, write_atomic


def test_tmp_name_is_hidden_names_the_file_and_the_writer_and_is_unique() -> None:
    name = tmp_name("last.pt")
    assert re.fullmatch(rf"\.last\.pt\.{os.getpid()}\.[0-9a-f]{{8}}\.tmp", name)
    assert TEMPORARY.match(name) and is_temporary(name)
    assert len({tmp_name("last.pt") for _ in range(100)}) == 100  # two threads of one process never collide
    assert tmp_path(Path("run/figures/x.png")).parent == Path("run/figures")


def test_the_block_succeeds_the_file_is_replaced_and_no_temporary_is_left(tmp_path: Path) -> None:
    final = tmp_path / "history.csv"
    final.write_text("old")
    with atomic_path(final) as tmp:
        assert tmp.parent == tmp_path and is_temporary(tmp.name)
        tmp.write_text("new, whole")
        assert final.read_text() == "old"  # nothing under the final name until the block is done
    assert final.read_text() == "new, whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv"]


@pytest.mark.parametrize("existed", [True, False])
def test_the_block_raises_the_old_file_is_untouched_and_the_temporary_removed(tmp_path: Path, existed: bool) -> None:
    final = tmp_path / "best.pt"
    if existed:
        final.write_bytes(b"old checkpoint")
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_path(final) as tmp:
        tmp.write_bytes(b"half a chec")
        raise RuntimeError("disk on fire")
    assert (final.read_bytes() == b"old checkpoint") if existed else not final.exists()
    assert [p.name for p in tmp_path.iterdir()] == (["best.pt"] if existed else [])


KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from nsynth_prep.storage.atomic import atomic_path
with atomic_path(Path(sys.argv[1])) as tmp, open(tmp, "wb") as f:
    f.write(b"half of the new")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # kill -9 in the middle of the write
"""


def test_a_killed_writer_never_leaves_half_a_file_under_the_final_name(tmp_path: Path) -> None:
    final = tmp_path / "metrics.json"
    final.write_text("old, whole")
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(final)], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True)
    assert proc.returncode == -9
    assert final.read_text() == "old, whole"
    left = [p for p in tmp_path.iterdir() if p != final]
    assert len(left) == 1 and TEMPORARY.match(left[0].name) and left[0].read_bytes() == b"half of the new"
    assert remove_stale(tmp_path) == left
    assert sorted(tmp_path.iterdir()) == [final]


def test_the_cleaner_removes_temporaries_only(tmp_path: Path) -> None:
    stale = [tmp_path / tmp_name("last.pt"),
             tmp_path / ".best.pt.12345.tmp",  # a run folder of an older nsynth
             tmp_path / "keyboard_acoustic_004-060-025.wav.tmp-4242"]  # an older prep render
    kept = [tmp_path / "last.pt", tmp_path / "notes.tmp", tmp_path / ".hidden", tmp_path / ".lock",
            tmp_path / "block-00000.pooled.npy", tmp_path / "x.tmp.npy", tmp_path / ".x.tmp",
            tmp_path / ".x.12.tmp.bak", tmp_path / "x.tmp-abc"]
    for path in stale + kept:
        path.write_bytes(b"x")
    (tmp_path / ".folder.1.tmp").mkdir()  # a folder is never a temporary file
    below = tmp_path / "figures" / tmp_name("learning_curves.png")
    below.parent.mkdir()
    below.write_bytes(b"x")
    assert remove_stale(tmp_path) == sorted(stale)
    assert all(p.exists() for p in kept) and (tmp_path / ".folder.1.tmp").is_dir() and below.exists()
    assert remove_stale(tmp_path, recursive=True) == [below]
    assert all(p.exists() for p in kept)
    assert remove_stale(tmp_path / "absent") == []


def test_a_live_writers_temporary_is_not_removed_by_a_second_writer(tmp_path: Path) -> None:
    """The cleaner runs only under the folder's writer lock: a second writer is refused before it
    cleans, so the temporary of the live one survives, and becomes its file."""
    from nsynth_train import run_dir

    out = tmp_path / "run"
    with run_dir.locked(out), run_dir.atomic(out / "history.csv") as tmp:
        tmp.write_text("epoch\n")
        with pytest.raises(LockedError, match="is in use by"), run_dir.locked(out):
            pass
        assert tmp.read_text() == "epoch\n"
    assert (out / "history.csv").read_text() == "epoch\n"
    assert not [p for p in out.iterdir() if is_temporary(p.name)]


@pytest.mark.parametrize("url", [False, True])
def test_write_atomic_local_and_file_url_leave_only_the_file(tmp_path: Path, url: bool) -> None:
    """The fsspec path (file://) keeps its own write but takes the same temporary name."""
    final = tmp_path / "done" / "0.json"
    final.parent.mkdir()
    where = Remote(f"file://{final}") if url else final
    write_atomic(where, b"{}")
    write_atomic(where, b'{"again": 1}')
    assert final.read_bytes() == b'{"again": 1}'
    assert [p.name for p in final.parent.iterdir()] == ["0.json"]
