"""The notes a build skipped (``--on-error skip``), stored so that a long list costs no open.

The attrs (``build.skipped``) list the first :data:`.meta.SKIPPED_IN_ATTRS` notes and
``build.skipped_count`` says how many there are; a longer list is kept whole in the cache's
``skipped/`` group, two string arrays ``note`` and ``reason``, written with the label arrays
before the metadata (so a cache never names a table that is not there) and covered by
``build.skipped_checksum``, which ``verify`` checks. 300,000 skipped notes in zarr.json made it
62 MB, parsed by every open of the cache. A cache written before kept every note in the attrs:
it reads as it did.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nsynth_prep.cache.format import SKIPPED, Cache, checksum, damaged, read_source_files
from nsynth_prep.cache.meta import SKIPPED_IN_ATTRS, Skipped


def columns_checksum(columns: dict[str, np.ndarray]) -> str:
    """The checksum of a skipped table: of its notes, then its reasons, as one string array."""
    return checksum(np.array([*columns["note"].tolist(), *columns["reason"].tolist()], dtype=object))


def plan(skipped: Sequence[dict[str, str]]) -> tuple[tuple[Skipped, ...], int, str | None, dict[str, np.ndarray] | None]:
    """What a build records of its ``skipped`` notes: the ones the attrs list, how many in all,
    and, when there are more than the attrs list, the checksum and the columns of the table."""
    head = tuple(Skipped(s["note"], s["reason"]) for s in skipped[:SKIPPED_IN_ATTRS])
    if len(skipped) <= SKIPPED_IN_ATTRS:
        return head, len(skipped), None, None
    columns = {"note": np.array([s["note"] for s in skipped], dtype=str),
               "reason": np.array([s["reason"] for s in skipped], dtype=str)}
    return head, len(skipped), columns_checksum(columns), columns


def problem(c: Cache) -> str | None:
    """What is wrong with the stored table of skipped notes, or None (also for a list the attrs hold whole)."""
    return _read(c)[1]


def _read(c: Cache) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """The stored table (None when the attrs hold the whole list) and what is wrong with it."""
    build = c.meta.build
    if build.skipped_checksum is None:
        return None, None
    cols = read_source_files(c.group, SKIPPED)
    if cols is None or sorted(cols) != ["note", "reason"] or len(cols["note"]) != len(cols["reason"]):
        return cols, f"{SKIPPED}: the table of skipped notes is missing or unreadable"
    if len(cols["note"]) != build.skipped_count:
        return cols, f"{SKIPPED}: {len(cols['note'])} skipped notes, the metadata says {build.skipped_count}"
    if columns_checksum(cols) != build.skipped_checksum:
        return cols, f"{SKIPPED}: differs from the checksum recorded at build time"
    return cols, None


def skipped_notes(c: Cache) -> list[Skipped]:
    """Every note the build of ``c`` skipped, and why; checked against its checksum.

    Raises
    ------
    CacheError
        The stored table is missing, unreadable or differs from its checksum (``damaged``).
    """
    cols, bad = _read(c)
    if bad:
        raise damaged(c.path, bad)
    if cols is None:  # the attrs hold every skipped note
        return list(c.meta.build.skipped)
    return [Skipped(str(n), str(r)) for n, r in zip(cols["note"].tolist(), cols["reason"].tolist(), strict=True)]
