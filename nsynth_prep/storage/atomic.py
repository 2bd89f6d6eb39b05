"""Writing a local file whole or not at all: a temporary file beside it, renamed over it on success.

Every file nsynth replaces in place (run files, checkpoints, figures, an exported ``.h5``, a
render's WAVs and state, a build's done marks, the blocks of a ``.tar.gz`` spool) is written
under one temporary name, :func:`tmp_name`::

    .<name>.<pid>.<token>.tmp        e.g. .last.pt.4242.9f86d081.tmp

- the leading dot hides it from the listings that find files by name (``*.wav``,
  ``*.tfrecord``, ``figures/``) and from a plain ``ls``;
- ``.tmp`` at the end is what most of the older writers used, and what the run-folder cleaner
  has always looked for (``.*.tmp``);
- the pid says which process left it;
- the random token makes it unique to one write: two threads of one process (a lease's
  heartbeat) or two hosts sharing a folder may write the same file at once.

The rename is atomic on one filesystem, so a reader sees the old file or the whole new one,
never part of it. Nothing is fsynced (no writer did before): a crash of the machine itself
can still lose the last writes, a killed process cannot leave half a file.

A killed writer leaves its temporary behind; :func:`remove_stale` removes those (and the
temporary names of older nsynth versions) when the next writer takes the folder's lock.

(One exception: the archives and TFRecord files that ``prep synth`` and ``prep render`` stream
for minutes keep a fixed name in ``.partial/``, so that a rerun overwrites a killed run's part;
see :mod:`nsynth_prep.corpus.layouts`. zarr's own ``<chunk>.<uuid>.partial`` files are zarr's.)
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

TEMPORARY = re.compile(r"^\..+\.\d+\.[0-9a-f]{8}\.tmp$")  # what tmp_name makes
# Temporaries that older nsynth versions left, still removed by remove_stale:
OLD_TEMPORARIES = (
    re.compile(r"^\..+\.\d+\.tmp$"),  # .<name>.<pid>.tmp: run files, checkpoints, figures
    re.compile(r"^.+\.tmp-\d+$"),  # <name>.tmp-<pid>: prep render's WAVs and state, examples.json
)


def tmp_name(name: str) -> str:
    """The temporary name under which the file ``name`` is written: ``.<name>.<pid>.<token>.tmp``."""
    return f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def tmp_path(path: Path) -> Path:
    """Where ``path`` is written before its rename: :func:`tmp_name` in the same folder."""
    return path.with_name(tmp_name(path.name))


def is_temporary(name: str) -> bool:
    """Whether a file name is one of :func:`tmp_name`'s (or of an older nsynth's temporaries)."""
    return bool(TEMPORARY.match(name)) or any(p.match(name) for p in OLD_TEMPORARIES)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary name beside ``path`` to write; rename it to ``path`` when the block succeeds.

    If the block raises, the temporary file is removed and ``path`` keeps its old content (or
    stays absent). Errors pass through as they are: callers that want one line for a full disk
    wrap this in :func:`.store.storage_errors`.

    Examples
    --------
    >>> with atomic_path(run / "history.csv") as tmp:  # doctest: +SKIP
    ...     tmp.write_text(text)
    """
    path = Path(path)
    tmp = tmp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def remove_stale(folder: Path, recursive: bool = False) -> list[Path]:
    """Delete the temporary files (:func:`is_temporary`) that killed writers left in ``folder``
    (and in every folder below it, with ``recursive``); returns them. Other files are left alone.

    Call it holding the writer lock of ``folder``: a live writer's temporary has the same name
    as a dead one's, and only the lock says that no writer is live.
    """
    folder = Path(folder)
    found = sorted(p for p in (folder.rglob("*") if recursive else folder.glob("*"))
                   if is_temporary(p.name) and p.is_file())
    for path in found:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return found
