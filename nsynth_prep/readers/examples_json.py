"""examples.json, read as a stream: one entry at a time, kept as label columns.

NSynth train's examples.json is about 200 MB. Parsed whole (``json.loads``), it took 687 MiB at
that size: the text and a dict of ~1.2 KB per note, both held at once, 4.3x what a 32,000-note
file takes. Here the file is decoded a block at a time and each entry's value parsed on its own
(``JSONDecoder.raw_decode``) and validated into labels at once, so what is held is the label
columns (about 100 bytes a note), the names listed, and a block of text.

The checks are those of a whole parse: bytes that are not UTF-8 (naming the byte), malformed
JSON (naming line, column and character of the whole file), a top level that is no object,
a note listed twice and an entry with a repeated key (``json`` would keep the last silently),
integers past Python's digit limit, nesting too deep, a file that grows while it is read.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from nsynth_prep.errors import LabelError, SourceError
from nsynth_prep.labels import LabelTable, NoteLabels, long_integer, parse_example
from nsynth_prep.readers.catalog import first_of_each_id, refuse_or_skip

__all__ = ["MAX_EXAMPLES_JSON_BYTES", "ExamplesJson", "labels_from_entries", "labels_from_examples",
           "read_examples_json"]

# Anything past this bound is refused before it is read, so that a stray or hostile file cannot
# exhaust memory (the top level is parsed whole when it is not an object: see _parse_whole).
# NSynth's largest examples.json (train, 289,205 notes) is about 200 MB (~690 bytes a note).
MAX_EXAMPLES_JSON_BYTES = 512 << 20
READ_BYTES = 1 << 20  # read at once; a value longer than this doubles the read until it is whole
LABEL_BATCH = 4096  # notes validated before they are packed into columns
_WS = re.compile(r"[ \t\n\r]*")


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


_DECODER = json.JSONDecoder(object_pairs_hook=_json_object)
# An integer past Python's digit limit fails the decoder; the value is parsed again keeping it as
# text, so that the note holding it is named (slower: only then, never for a good file).
_LONG_DECODER = json.JSONDecoder(object_pairs_hook=_json_object, parse_int=long_integer)


@dataclass
class ExamplesJson:
    """What a read of examples.json found, before the problems are raised or skipped.

    ``labels`` holds the entries that validated, in file order (repeated notes and note ids
    still in) and ``positions`` the position of each of them among the entries; ``problems`` the
    others as (entry position, note, reason); ``listed`` every note named; ``repeated`` the notes
    named twice.
    """

    name: str
    labels: LabelTable
    problems: list[tuple[int, str, str]] = field(default_factory=list)
    positions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (N,) int64
    listed: set[str] = field(default_factory=set)
    repeated: set[str] = field(default_factory=set)


def _entry_labels(key: str, entry: Any, name: str) -> NoteLabels:
    if isinstance(entry, _Repeated):
        raise LabelError(f"{name}: note {key!r} has {', '.join(map(repr, entry.repeated))} more than once")
    return parse_example(key, entry, name)


def _add_entry(read: ExamplesJson, position: int, key: str, entry: Any, notes: list[NoteLabels],
               positions: list[int]) -> None:
    """Entry ``position`` of the file: a note named before is marked repeated; a good one joins
    ``notes`` (its position ``positions``), a bad one ``read.problems``."""
    if key in read.listed:
        read.repeated.add(key)
        return
    read.listed.add(key)
    try:
        notes.append(_entry_labels(key, entry, read.name))
        positions.append(position)
    except LabelError as exc:
        read.problems.append((position, key, str(exc)))


class _Text:
    """The file's text, decoded from UTF-8 a block at a time; never more than ``size`` bytes."""

    def __init__(self, f: BinaryIO, name: str, size: int) -> None:
        self.f, self.name, self.size = f, name, size
        self.bytes_read = 0
        self.pending = b""  # the start of a character cut by the end of the last block
        self.eof = False

    def read(self, n: int) -> str:
        data = self.f.read(n)
        start = self.bytes_read - len(self.pending)  # the file offset of data's first byte
        self.bytes_read += len(data)
        if self.bytes_read > self.size:
            raise SourceError(f"{self.name}: grew while it was read; run again when it is written")
        if not data:
            self.eof = True
        data, cut = self.pending + data, len(self.pending) + len(data)
        if data and not self.eof:  # keep back a character whose bytes are not all read yet
            lead = len(data) - 1
            while lead > 0 and len(data) - lead < 4 and data[lead] & 0xC0 == 0x80:
                lead -= 1
            need = 2 if data[lead] < 0xE0 else 3 if data[lead] < 0xF0 else 4
            if data[lead] >= 0xC0 and len(data) - lead < need:
                cut = lead
        self.pending = data[cut:]
        try:
            return data[:cut].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SourceError(f"{self.name}: not UTF-8 text (byte {start + exc.start:,} is "
                              f"{data[exc.start]:#04x})") from None


class _Scanner:
    """A window on the text: what is consumed is dropped, positions kept as in the whole file."""

    def __init__(self, text: _Text) -> None:
        self.text = text
        self.buf = ""
        self.pos = 0  # in buf
        self.base = 0  # characters of the file before buf[0]
        self.lines = 0  # newlines in those characters
        self.last_newline = -1  # position in the file of the last of them

    def fill(self, n: int = READ_BYTES) -> bool:
        """Read more text; False at the end of the file."""
        if self.text.eof:
            return False
        if self.pos:
            dropped = self.buf[: self.pos]
            if (newlines := dropped.count("\n")):
                self.lines += newlines
                self.last_newline = self.base + dropped.rindex("\n")
            self.base += self.pos
            self.buf, self.pos = self.buf[self.pos :], 0
        self.buf += self.text.read(n)
        return True

    def peek(self) -> str:
        """The next character that is not white space ("" at the end of the file), not consumed."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf) or not self.fill():
                return self.buf[self.pos : self.pos + 1]

    def value(self) -> Any:
        """The JSON value that starts at the next character, consumed."""
        n = READ_BYTES
        while True:
            try:
                try:
                    value, end = _DECODER.raw_decode(self.buf, self.pos)
                except json.JSONDecodeError:
                    raise
                except ValueError:  # an integer past the digit limit
                    value, end = _LONG_DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if self.text.eof:
                    raise self.malformed(exc.msg, exc.pos) from None
            except RecursionError:
                raise SourceError(f"{self.text.name}: malformed JSON: nested too deeply") from None
            else:
                if end < len(self.buf) or self.text.eof:  # a number at the end may go on in the next block
                    self.pos = end
                    return value
            self.fill(n)  # the value goes on past the text read: read more, twice as much each time
            n *= 2

    def expect(self, chars: str, message: str) -> str:
        c = self.peek()
        if not c or c not in chars:
            raise self.malformed(message, self.pos)
        self.pos += 1
        return c

    def malformed(self, message: str, pos: int) -> SourceError:
        at = self.base + pos
        newline = self.buf.rfind("\n", 0, pos)
        line = self.lines + self.buf.count("\n", 0, pos) + 1
        column = at - (self.base + newline if newline >= 0 else self.last_newline)
        return SourceError(f"{self.text.name}: malformed JSON: {message}: line {line} column {column} (char {at})")


def read_examples_json(f: BinaryIO, name: str, size: int) -> ExamplesJson:
    """Read examples.json from an open file of ``size`` bytes, an entry at a time.

    Every entry is validated; the ones that are not good are kept as problems for
    :func:`labels_from_examples` to raise or skip. A file that is not an object of entries
    (bytes past :data:`MAX_EXAMPLES_JSON_BYTES`, not UTF-8, malformed JSON) raises here.

    Raises
    ------
    SourceError
        Naming ``name`` and the byte, or the line, column and character, that is wrong.
    """
    if size > MAX_EXAMPLES_JSON_BYTES:
        raise SourceError(f"{name}: {size:,} bytes; refused (the bound is {MAX_EXAMPLES_JSON_BYTES:,} bytes: "
                          "NSynth's largest examples.json is about 200 MB)")
    scan = _Scanner(_Text(f, name, size))
    if scan.peek() != "{":
        return _parse_whole(scan, name)
    scan.pos += 1
    out = ExamplesJson(name, LabelTable.from_notes([]))
    tables: list[LabelTable] = []
    batch: list[NoteLabels] = []
    at: list[int] = []
    at_parts: list[np.ndarray] = []
    position = 0
    while True:
        c = scan.expect('"}' if position == 0 else '"', "Expecting property name enclosed in double quotes")
        if c == "}":
            break
        scan.pos -= 1
        key = scan.value()
        scan.expect(":", "Expecting ':' delimiter")
        scan.peek()
        _add_entry(out, position, key, scan.value(), batch, at)
        if len(batch) == LABEL_BATCH:
            tables.append(LabelTable.from_notes(batch))
            at_parts.append(np.asarray(at, np.int64))
            batch, at = [], []
        position += 1
        if scan.expect(",}", "Expecting ',' delimiter") == "}":
            break
    if scan.peek():
        raise scan.malformed("Extra data", scan.pos)
    tables.append(LabelTable.from_notes(batch))
    out.positions = np.concatenate([*at_parts, np.asarray(at, np.int64)])
    out.labels = LabelTable(**{c: np.concatenate([getattr(t, c) for t in tables]) for c in LabelTable.COLUMNS})
    return out


def _parse_whole(scan: _Scanner, name: str) -> ExamplesJson:
    """A file whose top level is no object: parsed whole, to say whether it is JSON at all."""
    while scan.fill():
        pass
    text = scan.buf[scan.pos :]
    try:
        json.loads(text, object_pairs_hook=_json_object, parse_int=long_integer)
    except json.JSONDecodeError as exc:
        raise scan.malformed(exc.msg, scan.pos + exc.pos) from None
    except RecursionError:
        raise SourceError(f"{name}: malformed JSON: nested too deeply") from None
    raise SourceError(f"{name}: expected an object keyed by note_str")


def labels_from_examples(read: ExamplesJson, on_error: str, skipped: list[dict[str, str]]) -> LabelTable:
    """The good notes of a read examples.json; bad ones raise, or are skipped and recorded.

    A note listed twice is refused (skip: left out whole, since which of its entries is right
    cannot be told); so is an entry with a repeated key, and a second note with the same
    ``note`` id (skip: the later one left out). Problems come in the order of the file.
    """
    problems = [p for p in read.problems if p[1] not in read.repeated]
    if read.repeated:  # the position of each one's first entry, for the order of the messages
        first = {k: p for p, k, _ in read.problems if k in read.repeated}
        first.update((k, int(read.positions[i])) for i, k in enumerate(read.labels.note_str) if k in read.repeated)
        problems += [(first[k], k, f"{read.name}: note {k!r} is listed more than once") for k in read.repeated]
    for _, note, reason in sorted(problems):
        refuse_or_skip(on_error, skipped, note, reason)
    labels = read.labels
    if read.repeated:
        labels = labels.take(np.flatnonzero([s not in read.repeated for s in labels.note_str]))
    if len(np.unique(labels.note)) == len(labels):  # NSynth's ids are unique: no Python object per note to tell
        return labels
    keep = first_of_each_id(labels.note.tolist(), labels.note_str.tolist(), read.name, None, on_error, skipped)
    return labels.take(np.asarray(keep, np.int64))


def labels_from_entries(entries: dict[str, Any], name: str, on_error: str,
                        skipped: list[dict[str, str]]) -> LabelTable:
    """The good notes of entries already parsed (a described corpus's planned notes), as
    :func:`labels_from_examples` would find them in an examples.json."""
    read = ExamplesJson(name, LabelTable.from_notes([]))
    notes: list[NoteLabels] = []
    positions: list[int] = []
    for position, (key, entry) in enumerate(entries.items()):
        _add_entry(read, position, key, entry, notes, positions)
    read.labels, read.positions = LabelTable.from_notes(notes), np.asarray(positions, np.int64)
    return labels_from_examples(read, on_error, skipped)
