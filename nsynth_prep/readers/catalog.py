"""What a scan of a source yields: the notes' labels, the notes skipped, and a feature reader.

Shared by every format's reader (:mod:`.sources` for folders and TFRecords, :mod:`.spool`
for streamed archives), so neither imports the other's internals.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np

from nsynth_prep.errors import LabelError, SourceError
from nsynth_prep.features import FeatureSpec
from nsynth_prep.labels import LabelTable, NoteLabels, long_integer, parse_example

__all__ = ["AUDIO_BATCH", "MAX_EXAMPLES_JSON_BYTES", "AudioReader", "Catalog", "FeatureReader", "OpenedPath",
           "SourceError", "first_of_each", "first_of_each_id", "labels_from_entries", "load_examples_json", "refuse_or_skip",
           "unlisted_audio"]

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


# NSynth's largest examples.json (train, 289,205 notes) is about 200 MB (~690 bytes a note);
# parsed, it takes several times that in Python objects. Anything past this bound is refused
# before it is read, so a stray or hostile file cannot exhaust memory.
MAX_EXAMPLES_JSON_BYTES = 512 << 20


class _Repeated(dict):  # type: ignore[type-arg]
    """A JSON object in which some keys came more than once (``json`` would keep the last silently)."""

    __slots__ = ("repeated",)
    repeated: list[str]


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    marked = _Repeated(obj)
    marked.repeated = sorted(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
    return marked


def load_examples_json(f: BinaryIO, name: str, size: int) -> dict[str, Any]:
    """Parse examples.json from an open file of ``size`` bytes, naming the file on failure.

    The file is read once (at most :data:`MAX_EXAMPLES_JSON_BYTES`), decoded as UTF-8 and the
    bytes dropped before parsing, so its text is held once while the objects are built.
    Repeated keys are kept track of (see :func:`labels_from_entries`), never silently dropped.
    """
    if size > MAX_EXAMPLES_JSON_BYTES:
        raise SourceError(f"{name}: {size:,} bytes; refused (an examples.json is read whole, and the bound is "
                          f"{MAX_EXAMPLES_JSON_BYTES:,} bytes: NSynth's largest is about 200 MB)")
    data = f.read(size + 1)
    if len(data) > size:
        raise SourceError(f"{name}: grew while it was read; run again when it is written")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{name}: not UTF-8 text (byte {exc.start:,} is {data[exc.start]:#04x})") from None
    del data
    try:
        try:
            entries = json.loads(text, object_pairs_hook=_json_object)
        except json.JSONDecodeError:
            raise
        except ValueError:  # an integer past Python's digit limit: parsed again, keeping it as text, so
            # that the note holding it is named (the hook is slower: only here, never for a good file)
            entries = json.loads(text, object_pairs_hook=_json_object, parse_int=long_integer)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{name}: malformed JSON: {exc}") from None
    except RecursionError:
        raise SourceError(f"{name}: malformed JSON: nested too deeply") from None
    if not isinstance(entries, dict):
        raise SourceError(f"{name}: expected an object keyed by note_str")
    return entries


def labels_from_entries(entries: dict[str, Any], name: str, on_error: str,
                        skipped: list[dict[str, str]]) -> list[NoteLabels]:
    """Validated labels of every entry; bad ones raise, or are skipped and recorded.

    A note listed twice in examples.json is refused (skip: left out whole, since which of its
    two entries is right cannot be told); so is an entry with a repeated key, and a second note
    with the same ``note`` id (skip: the later one left out, see :func:`first_of_each_id`).
    """
    twice = set(entries.repeated) if isinstance(entries, _Repeated) else set()
    notes = []
    for key, entry in entries.items():
        try:
            if key in twice:
                raise LabelError(f"{name}: note {key!r} is listed more than once")
            if isinstance(entry, _Repeated):
                raise LabelError(f"{name}: note {key!r} has {', '.join(map(repr, entry.repeated))} more than once")
            notes.append(parse_example(key, entry, name))
        except LabelError as exc:
            refuse_or_skip(on_error, skipped, key, str(exc))
    keep = first_of_each_id(notes, name, None, on_error, skipped)
    return notes if len(keep) == len(notes) else [notes[i] for i in keep]


def refuse_or_skip(on_error: str, skipped: list[dict[str, str]], note: str, reason: str) -> None:
    """``fail``: raise ``reason`` as a :class:`SourceError`; ``skip``: record the note and go on."""
    if on_error != "skip":
        raise SourceError(reason)
    skipped.append({"note": note, "reason": reason})


def unlisted_audio(where: str, audio_notes: Iterable[str], entries: dict[str, Any], on_error: str,
                   skipped: list[dict[str, str]]) -> None:
    """WAVs in ``audio/`` without an examples.json entry: refused, or recorded as skipped.

    The same for folders and archives, so that no file of the source goes unmentioned.
    """
    extra = sorted(set(audio_notes) - entries.keys())
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


def first_of_each_id(notes: Sequence[NoteLabels], source: str, where: Callable[[int], str] | None, on_error: str,
                     skipped: list[dict[str, str]]) -> list[int]:
    """Positions of the notes whose ``note`` id no earlier note has; a later note with an id taken
    raises, or is skipped and recorded, naming both notes. NSynth's ids are unique: two notes
    with one id are a mislabelled source, and would be two rows under one id in the cache.
    ``where(i)`` locates note ``i`` for messages (``record 12``), when names alone do not.
    """
    keep, repeats = first_occurrences([n.note for n in notes])
    for i, j in repeats:
        at = f" ({where(i)}; first at {where(j)})" if where else ""
        refuse_or_skip(on_error, skipped, notes[i].note_str,
                       f"{source}: notes {notes[j].note_str} and {notes[i].note_str} have the same note id "
                       f"{notes[i].note}{at}")
    return keep
