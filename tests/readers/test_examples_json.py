"""examples.json read as a stream (:mod:`nsynth_prep.readers.examples_json`) against ``json.loads``
of the whole file, its reference: the same labels and problems whatever the block boundaries cut
(a UTF-8 character, a number, a key), the same positions in the messages, and memory that grows
by label columns, not by a parsed dict per note."""

from __future__ import annotations

import gc
import io
import json
import re
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nsynth_prep.errors import SourceError
from nsynth_prep.labels import LabelTable, format_examples_json
from nsynth_prep.readers import examples_json
from nsynth_prep.readers.examples_json import labels_from_entries, labels_from_examples, read_examples_json
from nsynth_prep.readers.tones import iter_corpus_split

EXCERPT = Path(__file__).parent.parent / "data" / "examples-excerpt.json"


def _read(text: bytes, on_error: str = "skip") -> tuple[LabelTable, list[dict[str, str]]]:
    skipped: list[dict[str, str]] = []
    read = read_examples_json(io.BytesIO(text), "examples.json", len(text))
    return labels_from_examples(read, on_error, skipped), skipped


def _reference(text: bytes, on_error: str = "skip") -> tuple[LabelTable, list[dict[str, str]]]:
    """The whole file parsed at once, every entry validated by the same per-entry checks."""
    skipped: list[dict[str, str]] = []
    entries = json.loads(text.decode("utf-8"), object_pairs_hook=examples_json._json_object)
    if isinstance(entries, examples_json._Repeated):  # a note listed twice: refused, as the stream does
        for key in entries.repeated:
            skipped.append({"note": key, "reason": f"examples.json: note {key!r} is listed more than once"})
            del entries[key]
    return labels_from_entries(entries, "examples.json", on_error, skipped), skipped


def _same(a: LabelTable, b: LabelTable) -> None:
    assert len(a) == len(b)
    for column in LabelTable.COLUMNS:
        np.testing.assert_array_equal(getattr(a, column), getattr(b, column), err_msg=column)


def _hostile_entries() -> str:
    """The excerpt's notes with the things a block boundary can cut: non-ASCII text, long
    numbers, escapes, a repeated key, a bad label, white space of every kind, a note twice."""
    entries: dict[str, Any] = json.loads(EXCERPT.read_text())
    names = sorted(entries)
    entries[names[0]]["instrument_str"] = "b\u00e4ss_\u6f22\u5b57_\U0001f3b8"  # 2-, 3- and 4-byte UTF-8 (and a bad label)
    entries[names[1]]["pitch"] = 10**40  # a bad label, a long number
    entries[names[2]]["qualities_str"] = ["\"quoted\"\\ \u00e9"]
    text = json.dumps(entries, indent="\t", separators=(" ,\r\n", " :  "), ensure_ascii=False)
    inner = json.dumps(entries[names[3]], ensure_ascii=False)
    at = text.index(f'"velocity" :  {entries[names[3]]["velocity"]}', text.index(f'"{names[3]}" :  {{'))
    text = text[:at] + '"velocity": 1, ' + text[at:]  # a key twice in one entry
    return text[:-1] + f', "{names[4]}": {inner}' + "\n}\n"  # names[4] listed twice


@pytest.mark.parametrize("block", [1, 2, 3, 5, 64, 1 << 20])
def test_the_stream_reads_what_the_whole_parse_reads(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(examples_json, "READ_BYTES", block)
    monkeypatch.setattr(examples_json, "LABEL_BATCH", 3)  # several batches of columns
    text = _hostile_entries().encode()
    labels, skipped = _read(text)
    want, want_skipped = _reference(text)
    _same(labels, want)
    assert sorted(s["note"] for s in skipped) == sorted(s["note"] for s in want_skipped)
    assert len(skipped) == 4 and len(labels) == 12 - 4  # 3 bad entries, and a note listed twice: both its entries out
    reasons = " | ".join(s["reason"] for s in skipped)
    assert "pitch 10000000000000000000000000000000000000000" in reasons
    assert "has 'velocity' more than once" in reasons and "is listed more than once" in reasons
    with pytest.raises(SourceError) as first:  # fail: the first problem in the file's order, as skip lists them
        _read(text, "fail")
    assert str(first.value) == skipped[0]["reason"]
    assert sorted(s["reason"] for s in skipped) == sorted(s["reason"] for s in want_skipped)
    firsts = [text.index(f'"{s["note"]}"'.encode()) for s in skipped]  # each note's first entry
    assert firsts == sorted(firsts)


def test_an_excerpt_of_nsynth_reads_as_nsynth_formats_it() -> None:
    text = EXCERPT.read_bytes()
    labels, skipped = _read(text, "fail")
    _same(labels, _reference(text, "fail")[0])
    assert skipped == [] and len(labels) == 12


@pytest.mark.parametrize("text", [
    '{"a": {"pitch": 1}\n, "b" 2}', '{\n\n  "a": [1, 2,, 3]}', '{"a": 1,}', '{"a": 1} x', '{"a": 1', "{",
    '  {"a": {"b": tru}}', '{"a": "\n"}', '{"a": "unterminated', "{1: 2}", '{"a": -}', "[1, 2", '"text" 3', "",
], ids=lambda t: repr(t)[:20])
@pytest.mark.parametrize("block", [1, 4, 1 << 20])
def test_malformed_json_is_placed_as_the_whole_parse_places_it(text: str, block: int,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(examples_json, "READ_BYTES", block)
    with pytest.raises(json.JSONDecodeError) as whole:
        json.loads(text)
    with pytest.raises(SourceError, match="malformed JSON") as stream:
        _read(text.encode())
    place = re.search(r"line \d+ column \d+ \(char \d+\)", str(stream.value))
    assert place and place.group() == f"line {whole.value.lineno} column {whole.value.colno} (char {whole.value.pos})"


@pytest.mark.parametrize("block", [1, 3, 1 << 20])
def test_bytes_that_are_not_utf8_are_named_at_their_offset(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(examples_json, "READ_BYTES", block)
    for text, at, byte in [(b'{"a\xc3\xa4": 1, "b": "\xff"}', 17, 0xff), (b'{"a": "\xe6\xbc"}', 7, 0xe6),
                           (b'{"a": 1}\n\xe6', 9, 0xe6)]:
        with pytest.raises(SourceError, match=rf"examples.json: not UTF-8 text \(byte {at} is {byte:#04x}\)"):
            _read(text)


def test_a_file_that_grows_while_it_is_read_is_refused() -> None:
    text = EXCERPT.read_bytes()
    with pytest.raises(SourceError, match="grew while it was read"):
        read_examples_json(io.BytesIO(text), "examples.json", len(text) - 10)


def test_a_top_level_that_is_no_object() -> None:
    for text in (b'["a list"]', b"  3", b'"x"'):
        with pytest.raises(SourceError, match="expected an object keyed by note_str"):
            _read(text)
    with pytest.raises(SourceError, match="nested too deeply"):
        _read(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")


def test_memory_grows_by_label_columns_not_by_parsed_entries() -> None:
    """20,000 notes in NSynth's own formatting: the stream holds ~250 B a note at its peak; the
    whole file parsed at once holds its text and a dict per note, ~2 KB a note."""
    notes = 20_000
    _, plan = iter_corpus_split({"train": notes, "valid": 10, "test": 10}, 0, "train")
    text = format_examples_json({e["note_str"]: e for e, _ in plan}).encode()
    _read(text[:2000].rsplit(b"},", 1)[0] + b"}}")  # imports and caches warmed outside the measurement

    def peak(parse: Any) -> int:
        gc.collect()
        tracemalloc.start()
        try:
            result = parse()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            del result

    stream = peak(lambda: _read(text, "fail"))
    whole = peak(lambda: json.loads(text.decode(), object_pairs_hook=examples_json._json_object))
    assert stream / notes < 400, f"{stream / notes:.0f} bytes a note"
    assert stream < whole / 4, (stream, whole)
