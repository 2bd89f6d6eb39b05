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

from nsynth_prep.cache import format as cache
from nsynth_prep.errors import CacheError
from nsynth_prep.readers import fingerprint
from nsynth_prep.readers.fingerprint import Fingerprint
from nsynth_prep.storage.store import Location

log = logging.getLogger(__name__)

SOURCE_JSON = "source.json"  # in the work folder: the source an interrupted build was reading


@dataclass
class Existing:
    """A cache whose metadata records a plan of rows (complete or being built)."""

    path: Location
    meta: cache.CacheMeta
    files: Fingerprint | None  # the per-file table stored with it (None: unreadable)

    @property
    def complete(self) -> bool:
        return self.meta.complete


def find_existing(path: Location, work: Location) -> Existing | None:
    """The cache at ``path``; None when there is nothing to continue (no cache, or the remains of
    a build killed before its plan was recorded, which count as never started).

    Raises
    ------
    CacheError
        Something that is not ours to overwrite: a folder that is not a cache, a complete cache
        of another format version (the message gives the command that rebuilds it), a complete
        cache with damaged metadata.
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
        meta = cache.load_meta(group)
    except (cache.OtherVersion, cache.BadMeta) as exc:
        # A complete cache is never replaced unasked; an interrupted build of another format
        # version is only replaced when this is a rerun of it (its work folder is there).
        if exc.state == "complete" or (isinstance(exc, cache.OtherVersion) and not started):
            raise
        log.info("%s: starting the interrupted build over (%s)", path, exc)
        return None
    except CacheError as exc:
        if started:
            log.warning("%s; starting the interrupted build over", exc)
            return None
        raise
    cols = cache.read_source_files(group)
    return Existing(path, meta, Fingerprint.from_columns(meta.build.source.format, cols) if cols else None)


def check_existing(existing: Existing, work: Location, src_path: Path, src_format: str, fp: Fingerprint,
                   rows: cache.RowOptions) -> bool:
    """Refuse to continue ``existing`` from another source or with other row options.

    Returns
    -------
    bool
        True when the content is the same but files were read again (their times changed, e.g.
        a regenerated corpus): the caller stores the new table so the next check is a ``stat``.
    """
    recorded = existing.meta.build.source
    diffs: list[str] = []
    if recorded.format != src_format:
        diffs.append(f"it was built from a {recorded.format} source, this is {src_format}")
    else:
        moved = recorded.path != str(src_path.resolve())
        what = f"{src_path} is another source" if moved else "the source changed"
        changed = fingerprint.differences(recorded.fingerprint, existing.files, fp)
        if changed:
            diffs.append(f"{what}: {'; '.join(changed)}")
    diffs += existing.meta.build.rows.differences(rows)
    if diffs:
        path = existing.path
        if existing.complete:
            raise CacheError(f"{path} was built from {recorded.path} with other data or options: "
                             f"{'; '.join(diffs)}. A cache is never mixed or overwritten: remove it (or choose "
                             "another --cache) to build this source with these options")
        raise CacheError(f"{path} is an interrupted build from {recorded.path} with other data or options: "
                         f"{'; '.join(diffs)}. Its written chunks must not be mixed with other data: restore the "
                         f"source and options and run again to finish it, or remove {path} and {work} to start over")
    if recorded.path != str(src_path.resolve()):
        log.info("%s: built from %s; the same content is now at %s", existing.path, recorded.path, src_path.resolve())
    return fp.read_now > 0


def check_work(work: Location, source: cache.SourceMeta, fp: Fingerprint, spool: Path | None = None) -> bool:
    """Whether the work folder of an interrupted build (before its cache was created: a
    ``.tar.gz`` being spooled) may be resumed with this source. ``spool``: the folder holding
    its ``spool/`` (default ``work``; local for a remote cache, see :func:`.store.spool_dir`).

    Returns False when it holds nothing to resume from this source (an older nsynth's folder,
    or only the done marks of a cache that is gone), to be cleared.

    Raises
    ------
    CacheError
        It holds data read from a source that has changed since.
    """
    try:
        recorded = cache.SourceMeta.from_attrs(json.loads((work / SOURCE_JSON).read_text()), SOURCE_JSON)
    except (OSError, ValueError):  # missing, not JSON, or not a source record (MetaError is a ValueError)
        return False
    if recorded.format != source.format:
        return False
    diffs = fingerprint.differences(recorded.fingerprint, None, fp)
    if diffs and not ((spool or work) / "spool").exists():
        return False  # nothing read from the source is kept there: clear it
    if diffs:
        raise CacheError(f"{work}: an interrupted build from {recorded.path} holds data read before the "
                         f"source changed ({'; '.join(diffs)}); restore the source and run again to finish it, "
                         f"or remove {work} to start over")
    return True
