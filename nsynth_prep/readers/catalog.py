"""What a scan of a source yields: the notes' labels, the notes skipped, and a feature reader.

Shared by every format's reader (:mod:`.sources` for folders and TFRecords, :mod:`.spool`
for streamed archives), so neither imports the other's internals.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from nsynth_prep.errors import SourceError
from nsynth_prep.features import FeatureSpec
from nsynth_prep.labels import LabelTable

__all__ = ["AUDIO_BATCH", "AudioReader", "Catalog", "FeatureReader", "OpenedPath", "SourceError", "first_of_each",
           "first_of_each_id", "refuse_or_skip", "unlisted_audio"]

AUDIO_BATCH = 32  # notes decoded at once: bounds memory to ~8 MB of audio per worker


@dataclass(frozen=True)
class OpenedPath:
    """A file or folder that a feature reader opens, said so that another host can be checked
    for it (a Dask worker, see :func:`.dask_cluster.check_reachable`)."""

    path: Path
    what: str  # for messages: "the source TFRecord"
    spooled: bool = False  # written by the build's scan (a .tar.gz's spool), not the source itself


class FeatureReader(Protocol):
    def read_features(self, index: np.ndarray, specs: Sequence[FeatureSpec]) -> dict[str, np.ndarray]:
        """Features of notes ``index`` (positions in the catalog), one (k, ...) array per spec."""
        ...

    def opens(self) -> list[OpenedPath]:
        """What :meth:`read_features` opens (nothing, for notes rendered from a plan)."""
        ...


@dataclass
class Catalog:
    """What a scan of one source found."""

    labels: LabelTable  # good notes, in source order
    reader: FeatureReader
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"note": ..., "reason": ...}


class AudioReader:
    """Base for random-access sources: decode audio in small batches, compute features."""

    def read_audio(self, index: np.ndarray) -> np.ndarray:  # (k, 64000) int16
        raise NotImplementedError

    def opens(self) -> list[OpenedPath]:
        raise NotImplementedError

    def read_features(self, index: np.ndarray, specs: Sequence[FeatureSpec]) -> dict[str, np.ndarray]:
        out = {s.name: np.empty((len(index), *s.row_shape), s.dtype) for s in specs}
        for start in range(0, len(index), AUDIO_BATCH):
            part = index[start : start + AUDIO_BATCH]
            audio = self.read_audio(part)
            for s in specs:
                s.compute(audio, out[s.name][start : start + len(part)])
        return out


def refuse_or_skip(on_error: str, skipped: list[dict[str, str]], note: str, reason: str) -> None:
    """``fail``: raise ``reason`` as a :class:`SourceError`; ``skip``: record the note and go on."""
    if on_error != "skip":
        raise SourceError(reason)
    skipped.append({"note": note, "reason": reason})


def unlisted_audio(where: str, audio_notes: Iterable[str], listed: Container[str], on_error: str,
                   skipped: list[dict[str, str]]) -> None:
    """WAVs in ``audio/`` without an examples.json entry: refused, or recorded as skipped.

    The same for folders and archives, so that no file of the source goes unmentioned.
    """
    extra = sorted(k for k in set(audio_notes) if k not in listed)
    problems = [(k, f"{where}: audio/{k}.wav has no entry in examples.json") for k in extra]
    if problems and on_error != "skip":
        raise SourceError(problems[0][1] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    skipped.extend({"note": k, "reason": r} for k, r in problems)


def first_occurrences(keys: Sequence[Hashable]) -> tuple[list[int], list[tuple[int, int]]]:
    """Positions of each key's first occurrence, and ``(i, j)`` for every later position ``i``
    of a key first seen at ``j`` (the repeats, in order)."""
    first: dict[Hashable, int] = {}
    keep, repeats = [], []
    for i, key in enumerate(keys):
        j = first.setdefault(key, i)
        if j == i:
            keep.append(i)
        else:
            repeats.append((i, j))
    return keep, repeats


def first_of_each(names: Sequence[str], source: str, where: Callable[[int], str], on_error: str,
                  skipped: list[dict[str, str]]) -> list[int]:
    """Positions of the first occurrence of each name; a repeat raises, or is skipped and recorded.

    ``where(i)`` locates occurrence ``i`` in ``source`` for messages (e.g. ``record 12``).
    """
    keep, repeats = first_occurrences(names)
    for i, j in repeats:
        refuse_or_skip(on_error, skipped, names[i],
                       f"{source}: {where(i)}: note {names[i]} appears again (first at {where(j)})")
    return keep


def first_of_each_id(ids: Sequence[int], names: Sequence[str], source: str, where: Callable[[int], str] | None,
                     on_error: str, skipped: list[dict[str, str]]) -> list[int]:
    """Positions of the notes whose ``note`` id (``ids[i]``, of the note named ``names[i]``) no
    earlier note has; a later note with an id taken raises, or is skipped and recorded, naming
    both notes. NSynth's ids are unique: two notes with one id are a mislabelled source, and
    would be two rows under one id in the cache. ``where(i)`` locates note ``i`` for messages
    (``record 12``), when names alone do not.
    """
    keep, repeats = first_occurrences(ids)
    for i, j in repeats:
        at = f" ({where(i)}; first at {where(j)})" if where else ""
        refuse_or_skip(on_error, skipped, names[i],
                       f"{source}: notes {names[j]} and {names[i]} have the same note id {ids[i]}{at}")
    return keep
