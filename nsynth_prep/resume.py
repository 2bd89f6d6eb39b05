"""What a build finds where it is about to write, and whether it may go on.

At ``<cache>/<split>.zarr`` there may be nothing, a complete cache (to extend with a feature, or
up to date), an interrupted build (to resume), or the remains of a build killed before it had
recorded its plan of rows (to start over). A cache, complete or not, is only ever continued
from the same source content and the same row options: anything else would mix the rows of two
datasets. A refusal names what differs (which files, size or content, which options) and says
what to do.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import cache, fingerprint
from .errors import CacheError
from .fingerprint import Fingerprint

log = logging.getLogger(__name__)

SOURCE_JSON = "source.json"  # in the work folder: the source an interrupted build was reading


@dataclass
class Existing:
    """A cache whose attrs record a plan of rows (complete or being built)."""

    path: Path
    meta: dict[str, Any]
    files: Fingerprint | None  # the per-file table stored with it (None: built by an older nsynth)

    @property
    def complete(self) -> bool:
        return self.meta["state"] == "complete"


def find_existing(path: Path, work: Path) -> Existing | None:
    """The cache at ``path``; None when there is nothing to continue (no cache, or the remains of
    a build killed before its plan was recorded, which count as never started).

    Raises
    ------
    CacheError
        Something that is not ours to overwrite: a folder that is not a cache, a cache of another
        format version, a complete cache with damaged attrs.
    """
    if not path.exists():
        return None
    started = work.exists()  # a build of this split was under way: the work folder goes last
    if not (path / "zarr.json").exists():
        if started or not any(path.iterdir()):
            return None
        raise CacheError(f"{path}: exists but is not a cache (no zarr.json); remove it or choose another --cache")
    try:
        group = cache.open_group(path)
        m = cache.meta(group)
    except CacheError as exc:
        if started:
            log.warning("%s; starting the interrupted build over", exc)
            return None
        raise
    if m.get("format_version") != cache.FORMAT_VERSION:
        raise CacheError(f"{path}: a cache of format version {m.get('format_version')}, not "
                         f"{cache.FORMAT_VERSION}; remove it (or choose another --cache) to build it with this nsynth")
    problems = cache.meta_problems(m)
    if problems:
        if m.get("state") == "complete":
            raise cache.damaged(path, "its attrs (zarr.json) are incomplete: " + "; ".join(problems[:3]))
        log.info("%s: the interrupted build had not recorded its plan (%s); starting over", path, problems[0])
        return None
    cols = cache.read_source_files(group)
    kind = str(m["build"]["source"].get("format"))
    return Existing(path, m, Fingerprint.from_columns(kind, cols) if cols else None)


def check_existing(existing: Existing, work: Path, src_path: Path, src_format: str, fp: Fingerprint,
                   rows: dict[str, Any]) -> str | None:
    """Refuse to continue ``existing`` from another source or with other row options.

    Returns
    -------
    None, ``"refresh"`` or ``"upgrade"``
        ``refresh``: the same content, but files were read again (their times changed, e.g. a
        regenerated corpus): store the new table so the next check is a ``stat`` again.
        ``upgrade``: a cache fingerprinted by an older nsynth (sizes and mtimes only) that still
        matches: store this fingerprint.
    """
    m = existing.meta
    recorded = m["build"]["source"]
    old = cache.source_fingerprint(m)
    diffs: list[str] = []
    action = None
    if recorded.get("format") != src_format:
        diffs.append(f"it was built from a {recorded.get('format')} source, this is {src_format}")
    elif old.get("scheme") is None:  # scheme 1: {file name: [size, mtime]}
        if recorded.get("path") == str(src_path.resolve()) and fingerprint.legacy_same(src_path, src_format, old):
            action = "upgrade"
        else:
            diffs.append("it was fingerprinted by an older nsynth (sizes and modification times only), and "
                         "those changed")
    else:
        moved = recorded.get("path") != str(src_path.resolve())
        what = f"{src_path} is another source" if moved else "the source changed"
        changed = fingerprint.differences(old, existing.files, fp)
        if changed:
            diffs.append(f"{what}: {'; '.join(changed)}")
        if not diffs and fp.read_now:
            action = "refresh"
    for key, now in rows.items():
        then = m["build"].get(key)
        if then != now:
            diffs.append(f"--{key.replace('_', '-')} was {then!r}, now {now!r}")
    if diffs:
        path = existing.path
        if existing.complete:
            raise CacheError(f"{path} was built from {recorded.get('path')} with other data or options: "
                             f"{'; '.join(diffs)}. A cache is never mixed or overwritten: remove it (or choose "
                             "another --cache) to build this source with these options")
        raise CacheError(f"{path} is an interrupted build from {recorded.get('path')} with other data or options: "
                         f"{'; '.join(diffs)}. Its written chunks must not be mixed with other data: restore the "
                         f"source and options and run again to finish it, or remove {path} and {work} to start over")
    if recorded.get("path") != str(src_path.resolve()):
        log.info("%s: built from %s; the same content is now at %s", existing.path, recorded.get("path"),
                 src_path.resolve())
    return action


def check_work(work: Path, source_info: dict[str, Any], fp: Fingerprint) -> bool:
    """Whether the work folder of an interrupted build (before its cache was created: a
    ``.tar.gz`` being spooled) may be resumed with this source.

    Returns False when it holds nothing to resume from this source (an older nsynth's folder,
    or only the done marks of a cache that is gone), to be cleared.

    Raises
    ------
    CacheError
        It holds data read from a source that has changed since.
    """
    try:
        recorded = json.loads((work / SOURCE_JSON).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, dict) or recorded.get("format") != source_info["format"]:
        return False
    old = recorded.get("fingerprint") or {}
    diffs = fingerprint.differences(old, None, fp)
    if diffs and not (work / "spool").exists():
        return False  # nothing read from the source is kept there: clear it
    if diffs:
        raise CacheError(f"{work}: an interrupted build from {recorded.get('path')} holds data read before the "
                         f"source changed ({'; '.join(diffs)}); restore the source and run again to finish it, "
                         f"or remove {work} to start over")
    return True
