"""WAV, TFRecord and examples.json readers: good files, and bad ones with precise errors."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsynth_prep.corpus.synth import tf_features
from nsynth_prep.labels import format_examples_json
from nsynth_prep.readers.sources import KINDS, SourceError, discover, split_of
from nsynth_prep.readers.tfrecord import TFRecordError, decode_example, encode_example, frame_record, iter_records
from nsynth_prep.readers.wav import WavFormatError, encode_pcm16, read_pcm16

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "examples-excerpt.json"
SAMPLES = (np.arange(64_000) % 200 - 100).astype(np.int16)


def _wav(tag: int = 1, channels: int = 1, rate: int = 16_000, bits: int = 16, frames: int = 64_000) -> bytes:
    data = np.zeros(frames * channels, np.int16).tobytes()
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, tag, channels, rate, rate * 2 * channels, 2 * channels, bits)
    body = b"WAVE" + fmt + struct.pack("<4sI", b"data", len(data)) + data
    return struct.pack("<4sI", b"RIFF", len(body)) + body


def test_wav_roundtrip_with_extra_chunks() -> None:
    odd_list = struct.pack("<4sI", b"LIST", 5) + b"INFO!" + b"\x00"  # odd size: padded
    fact = struct.pack("<4sII", b"fact", 4, 64_000)
    data = encode_pcm16(SAMPLES, extra_chunks=odd_list + fact)
    np.testing.assert_array_equal(read_pcm16(data, "x.wav"), SAMPLES)


@pytest.mark.parametrize(("data", "message"), [
    (_wav(tag=3), "format 0x3 is not PCM"),
    (_wav(channels=2), "2 channels"),
    (_wav(rate=44_100), "44100 Hz"),
    (_wav(bits=8), "8-bit"),
    (_wav(frames=16_000), "16000 frames"),
    (_wav()[:5000], "truncated"),
    (b"RIFX" + _wav()[4:], "not a RIFF/WAVE"),
    (_wav()[:36], "no data chunk"),
])
def test_bad_wavs_are_named_and_explained(data: bytes, message: str) -> None:
    with pytest.raises(WavFormatError, match=message) as info:
        read_pcm16(data, "audio/bass_acoustic_000-040-100.wav")
    assert "bass_acoustic_000-040-100.wav" in str(info.value)


def test_examples_json_formatting_is_byte_exact() -> None:
    raw = REFERENCE.read_text()
    assert format_examples_json(json.loads(raw)) == raw


def _entry() -> dict:
    return next(iter(json.loads(REFERENCE.read_text()).values()))


def test_tfrecord_roundtrip(tmp_path: Path) -> None:
    entry = _entry()
    path = tmp_path / "x.tfrecord"
    path.write_bytes(frame_record(encode_example(tf_features(entry, SAMPLES))) * 3)
    records = [(i, off, p.copy()) for i, off, p in iter_records(path)]
    assert [r[0] for r in records] == [0, 1, 2]
    labels, offset, count = decode_example(records[1][2], "rec 1")
    assert labels.note_str == entry["note_str"] and labels.pitch == entry["pitch"]
    assert labels.qualities == tuple(entry["qualities"]) and labels.instrument == entry["instrument"]
    audio = np.frombuffer(records[1][2], "<f4", count, offset)
    np.testing.assert_array_equal(audio, SAMPLES / np.float32(32768))


@pytest.mark.parametrize(("damage", "message"), [
    (lambda b: b[:-100], "record 1 at byte .*truncated record"),
    (lambda b: b[: len(b) // 2 + 5], "record 1 at byte .*truncated"),
    (lambda b: b[: len(b) // 2 + 8] + b"\xff" + b[len(b) // 2 + 9 :], "record 1 at byte .*length CRC mismatch"),
    (lambda b: b[:-10] + b"\x00" + b[-9:], "record 1 at byte .*payload CRC mismatch"),
])
def test_damaged_tfrecord_names_record(tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    record = frame_record(encode_example(tf_features(_entry(), SAMPLES)))
    path = tmp_path / "bad.tfrecord"
    path.write_bytes(damage(record * 2))
    with pytest.raises(TFRecordError, match=message):
        list(iter_records(path))


def test_example_without_audio_or_with_bad_labels(tmp_path: Path) -> None:
    feats = tf_features(_entry(), SAMPLES)
    del feats["audio"]
    with pytest.raises(TFRecordError, match="rec 7: no 'audio'"):
        decode_example(np.frombuffer(encode_example(feats), np.uint8), "rec 7")
    feats = tf_features(_entry(), SAMPLES)
    feats["instrument_family"] = [12]
    feats["instrument_family_str"] = ("bogus",)
    with pytest.raises(TFRecordError, match="unknown instrument_family 12"):
        decode_example(np.frombuffer(encode_example(feats), np.uint8), "rec 7")


def test_split_names_and_discovery(corpus: Path) -> None:
    assert split_of(Path("nsynth-valid.jsonwav.tar.gz")) == "valid"
    assert split_of(Path("my-notes")) is None
    with pytest.raises(SourceError, match="split 'test' is there twice"):
        discover(corpus)
    found = discover(corpus / "nsynth-test.tfrecord")
    assert [(s.format, s.split) for s in found] == [("tfrecord", "test")]
    assert discover(corpus / "nsynth-train", split="valid")[0].split == "valid"
    with pytest.raises(SourceError, match="no such file"):
        discover(corpus / "missing")
    with pytest.raises(SourceError, match="no NSynth split here"):
        discover(corpus / "nsynth-train" / "audio")


def test_every_kind_of_source_is_registered_once() -> None:
    """The kinds discover tries are the formats a cache records, and each has a fingerprint."""
    from nsynth_prep.cache.meta import SOURCE_FORMATS
    from nsynth_prep.readers import fingerprint

    assert [k.format for k in KINDS] == list(SOURCE_FORMATS)
    assert set(fingerprint._DIGESTS) == set(SOURCE_FORMATS)
    assert {k.format: k.progress_verb for k in KINDS} == {"jsonwav": None, "targz": "stream", "tfrecord": "scan",
                                                          "synth": None}


def test_each_reader_says_what_it_opens(corpus: Path, tmp_path: Path) -> None:
    from nsynth_prep.corpus.synth import write_descriptors
    from nsynth_prep.features import feature_spec

    described = write_descriptors(tmp_path / "d", {"train": 10, "valid": 10, "test": 10})["test"]
    want = {"nsynth-test": [(corpus / "nsynth-test" / "audio", "the source's audio folder", False)],
            "nsynth-test.tfrecord": [(corpus / "nsynth-test.tfrecord", "the source TFRecord", False)],
            "nsynth-test.jsonwav.tar.gz": [(tmp_path / "spool", "the .tar.gz spooled by the client", True)]}
    for name, opened in want.items():
        reader = discover(corpus / name)[0].scan([feature_spec("pooled")], "fail", tmp_path).reader
        assert [(o.path, o.what, o.spooled) for o in reader.opens()] == opened, name
    assert discover(described)[0].scan([], "fail", tmp_path).reader.opens() == []


def test_unnamed_source_needs_split(corpus: Path, tmp_path: Path) -> None:
    link = tmp_path / "notes.tfrecord"
    link.symlink_to(corpus / "nsynth-test.tfrecord")
    with pytest.raises(SourceError, match="pass --split"):
        discover(link)
    assert discover(link, "test")[0].split == "test"


def test_header_check_reads_on_past_large_chunks(tmp_path: Path) -> None:
    """skip mode checks WAV headers from the first 4 KiB; a longer LIST chunk falls back to the file."""
    from nsynth_prep.readers.sources import _check_wav

    big_list = struct.pack("<4sI", b"LIST", 5000) + b"\x00" * 5000
    good = tmp_path / "good.wav"
    good.write_bytes(encode_pcm16(SAMPLES, extra_chunks=big_list))
    assert _check_wav(good) is None
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good.read_bytes()[:20_000])
    assert "truncated" in (_check_wav(cut) or "")
    stereo = tmp_path / "stereo.wav"
    stereo.write_bytes(_wav(channels=2))
    assert "2 channels" in (_check_wav(stereo) or "")


TRICKY = [0, 1, 2, -1, 10, 11, 127, 128, 16000, 32767, 32768, 2**31 - 1, 2**31, True, False, 66.9, 49.0,
          float("inf"), float("nan"), "49", "bass", "synthetic", None, [], [0] * 10, [1] * 10, [True] + [0] * 9,
          [0] * 9, "0000000000", {}, "bass_synthetic_068", "bass_synthetic_068-049-025"]


def _agree(key: str, entry: dict) -> None:
    from nsynth_prep.labels import LabelError, _accept, explain_example

    try:
        want = explain_example(key, entry, "f")
    except LabelError:
        assert _accept(key, entry) is None, (key, entry)
    else:
        got = _accept(key, entry)
        assert got is None or got == want, (key, entry)


def test_fast_label_check_agrees_on_every_single_edit() -> None:
    """Every label of every excerpt entry set to every tricky value (or deleted), one at a time."""
    for name, entry in json.loads(REFERENCE.read_text()).items():
        _agree(name, entry)
        for key in [*entry, "other"]:
            for value in [*TRICKY, "<delete>"]:
                edited = {k: v for k, v in entry.items() if k != key or value != "<delete>"}
                if value != "<delete>":
                    edited[key] = value
                _agree(name, edited)


@given(st.sampled_from(sorted(json.loads(REFERENCE.read_text()))), st.lists(st.tuples(
    st.sampled_from([*sorted(json.loads(REFERENCE.read_text())["bass_synthetic_068-049-025"]), "other"]),
    st.sampled_from([*TRICKY, "<delete>"])), max_size=3), st.sampled_from(["", "x", "\n", "../"]))
@settings(database=None, max_examples=400, deadline=None)
def test_fast_label_check_agrees_with_the_explaining_one(name: str, edits: list[tuple[str, object]], prefix: str) -> None:
    """parse_example's fast path never accepts what explain_example refuses, and returns the same
    labels; here with several edits at once and a bad name."""
    entry = dict(json.loads(REFERENCE.read_text())[name])
    for key, value in edits:
        if value == "<delete>":
            entry.pop(key, None)
        else:
            entry[key] = value
    _agree(prefix + name if prefix != "\n" else name + prefix, entry)
