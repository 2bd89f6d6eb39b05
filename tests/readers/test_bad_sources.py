"""Bad sources: every label checked, every read bounded, the same outcome in every format.

Each kind of bad input is read with ``--on-error fail`` (one NsynthError naming the file and the
note or record) and ``skip`` (the note left out and recorded with the reason). Issue 7 items 4,
5, 10, 11 and 12 (the reader parts); the table in docs/bad-input.md lists these tests.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from nsynth_prep.builder.pipeline import BuildConfig, build_cache
from nsynth_prep.cache.verify import verify_cache
from nsynth_prep.corpus.synth import tf_features
from nsynth_prep.errors import NsynthError, SourceError, StorageError
from nsynth_prep.features import feature_spec
from nsynth_prep.readers import examples_json
from nsynth_prep.readers.catalog import Catalog
from nsynth_prep.readers.sources import discover
from nsynth_prep.readers.tfrecord import encode_example, frame_record
from nsynth_prep.readers.wav import encode_pcm16, read_pcm16

REPO = Path(__file__).resolve().parents[2]
SPECS = [feature_spec("pooled")]


def scan(src: Path, on_error: str, work: Path, workers: int = 1) -> Catalog:
    return discover(src)[0].scan(SPECS, on_error, work, workers=workers)


def entries_of(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "examples.json").read_text())


def copy_split(corpus: Path, tmp_path: Path, name: str = "nsynth-test") -> Path:
    src = tmp_path / name
    shutil.copytree(corpus / "nsynth-test", src)
    return src


def make_targz(folder: Path, out: Path, json_text: bytes | None = None,
               extra: list[tuple[str, bytes]] = ()) -> Path:  # type: ignore[assignment]
    """An archive of ``folder`` (its examples.json, or ``json_text``), plus ``extra`` members."""
    members = [(f"nsynth-test/audio/{p.name}", p.read_bytes()) for p in sorted((folder / "audio").iterdir())]
    members += [(f"nsynth-test/{n}", d) for n, d in extra]
    members.append(("nsynth-test/examples.json", json_text or (folder / "examples.json").read_bytes()))
    with tarfile.open(out, "w:gz", compresslevel=1) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


# --- examples.json labels -----------------------------------------------------------------------


def _set(key: str, value: Any) -> Callable[[str, dict[str, Any]], dict[str, Any]]:
    return lambda name, e: {**e, key: value}


LABEL_EDITS: list[tuple[str, Callable[[str, dict[str, Any]], Any], str]] = [
    ("pitch 66.9", _set("pitch", 66.9), r"pitch 66\.9 \(a float\); expected an integer"),
    ('pitch "66"', _set("pitch", "66"), r"pitch '66' \(a string\); expected an integer"),
    ("pitch true", _set("pitch", True), r"pitch True \(a boolean\); expected an integer"),
    ("pitch 1e400", _set("pitch", "1E400"), r"pitch inf \(a float\); expected an integer"),  # see _json_text
    ("pitch null", _set("pitch", None), r"pitch None \(null\)"),
    ('qualities "0000000000"', _set("qualities", "0000000000"), r"qualities '0000000000' \(a string\); expected a list"),
    ("qualities of 9 flags", _set("qualities", [0] * 9), "expected a list of 10 flags"),
    ("qualities flag 2", _set("qualities", [2] + [0] * 9), "expected a list of 10 flags"),
    ("instrument 70000", _set("instrument", 70000), r"instrument 70000 \(expected 0\.\.32767\)"),
    ("instrument -5", _set("instrument", -5), r"instrument -5 \(expected 0\.\.32767\)"),
    ("note 2**31", _set("note", 2**31), r"note 2147483648 \(expected 0\.\.2147483647\)"),
    ("family 12", _set("instrument_family", 12), "unknown instrument_family 12"),
    ("family id disagrees with the name",
     lambda n, e: {**e, "instrument_family": (e["instrument_family"] + 1) % 11,
                   "instrument_family_str": ["bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed",
                                             "string", "synth_lead", "vocal"][(e["instrument_family"] + 1) % 11]},
     r"the name says '\w+' but instrument_family \d+ is"),
    ("source id disagrees with the name", lambda n, e: {**e, "instrument_source": (e["instrument_source"] + 1) % 3},
     r"the name says '\w+' but instrument_source"),
    ("pitch disagrees with the name", lambda n, e: {**e, "pitch": e["pitch"] + 1}, "the name says pitch"),
    ("velocity disagrees with the name", lambda n, e: {**e, "velocity": 1}, "the name says velocity"),
    ("instrument_str disagrees", _set("instrument_str", "bass_acoustic_999"), "has instrument_str 'bass_acoustic_999'"),
    ('sample_rate "16000"', _set("sample_rate", "16000"), r"sample_rate '16000' \(a string\)"),
    ("sample_rate 44100", _set("sample_rate", 44100), "sample_rate 44100"),
    ("note_str differs from its key", _set("note_str", "bass_acoustic_000-040-100"), "has note_str"),
    ("entry not an object", lambda n, e: [1, 2], "is not a JSON object"),
]
KEY_EDITS = [  # the entry's key (its note_str) itself
    ("../audio/<note>", lambda n: f"../audio/{n}"),
    ("a trailing newline", lambda n: n + "\n"),
    ("non-ASCII digits", lambda n: n[:-3] + "\u0661\u0660\u0660"),
    ("absolute path", lambda n: f"/etc/{n}"),
]


def _json_text(entries: dict[str, Any]) -> str:
    # json.dumps cannot write 1e400 (it writes Infinity); a real file could hold it.
    return json.dumps(entries, indent=2).replace('"pitch": "1E400"', '"pitch": 1e400')


@pytest.mark.parametrize(("case", "edit", "message"), LABEL_EDITS, ids=[c[0] for c in LABEL_EDITS])
def test_bad_label_in_examples_json(corpus: Path, tmp_path: Path, case: str, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    src = copy_split(corpus, tmp_path)
    entries = entries_of(src)
    name = sorted(entries)[3]
    entries[name] = edit(name, entries[name])
    (src / "examples.json").write_text(_json_text(entries))
    with pytest.raises(SourceError, match=message) as info:
        scan(src, "fail", tmp_path / "w")
    assert f"examples.json: note '{name}'" in str(info.value) and "\n" not in str(info.value)
    cat = scan(src, "skip", tmp_path / "w")
    assert len(cat.labels) == len(entries) - 1 and name not in set(cat.labels.note_str)
    assert [s["note"] for s in cat.skipped] == [name]
    assert pytest.importorskip("re").search(message, cat.skipped[0]["reason"])


@pytest.mark.parametrize(("case", "rename"), KEY_EDITS, ids=[c[0] for c in KEY_EDITS])
def test_note_name_is_checked_before_any_path_is_built(corpus: Path, tmp_path: Path, case: str, rename,  # type: ignore[no-untyped-def]
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    src = copy_split(corpus, tmp_path)
    entries = entries_of(src)
    name = sorted(entries)[0]
    bad = rename(name)
    entries[bad] = {**entries.pop(name), "note_str": bad}
    (src / "examples.json").write_text(json.dumps(entries))
    (src / "audio" / f"{name}.wav").unlink()
    opened: list[str] = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda p, *a, **k: (opened.append(str(p)), real_open(p, *a, **k))[1])
    with pytest.raises(SourceError, match="is not an NSynth note name"):
        scan(src, "fail", tmp_path / "w")
    cat = scan(src, "skip", tmp_path / "w")
    assert [s["note"] for s in cat.skipped] == [bad] and len(cat.labels) == len(entries) - 1
    assert not [p for p in opened if bad in p or ".." in p]  # no path was built from the bad name


def test_json_types_and_repeated_keys_in_an_archive(corpus: Path, tmp_path: Path) -> None:
    """The same checks in a .jsonwav.tar.gz (one shared reader of examples.json)."""
    src = copy_split(corpus, tmp_path / "f")
    entries = entries_of(src)
    name = sorted(entries)[5]
    entries[name] = {**entries[name], "instrument": 70000}
    archive = make_targz(src, tmp_path / "nsynth-test.jsonwav.tar.gz", _json_text(entries).encode())
    with pytest.raises(SourceError, match=rf"nsynth-test.jsonwav.tar.gz:nsynth-test/examples.json: note '{name}' has instrument 70000"):
        scan(archive, "fail", tmp_path / "w1")
    cat = scan(archive, "skip", tmp_path / "w2")
    assert [s["note"] for s in cat.skipped] == [name] and len(cat.labels) == len(entries) - 1


def test_repeated_keys_are_refused(corpus: Path, tmp_path: Path) -> None:
    """json keeps the last of repeated keys silently; both a note listed twice and a label given
    twice in one entry are refused (skip: the note is left out, its two versions cannot be told apart)."""
    src = copy_split(corpus, tmp_path)
    entries = entries_of(src)
    twice, inner = sorted(entries)[1], sorted(entries)[2]
    body = json.dumps(entries)
    first = json.dumps({twice: entries[twice]})[1:-1]
    body = "{" + first + ", " + body[1:]  # the note's entry written twice
    inner_text = json.dumps(entries[inner])
    body = body.replace(inner_text, inner_text.replace('"pitch": ', '"pitch": 1, "pitch": ', 1), 1)
    (src / "examples.json").write_text(body)
    with pytest.raises(SourceError, match=f"note '{twice}' is listed more than once"):
        scan(src, "fail", tmp_path / "w")
    cat = scan(src, "skip", tmp_path / "w")
    reasons = {s["note"]: s["reason"] for s in cat.skipped}
    assert set(reasons) == {twice, inner} and "has 'pitch' more than once" in reasons[inner]
    assert len(cat.labels) == len(entries) - 2


@pytest.mark.parametrize(("text", "message"), [
    (b'{"a": 1, "b": "\xff\xfe"}', r"examples.json: not UTF-8 text \(byte 15 is 0xff\)"),
    (b"[" * 200_000 + b"]" * 200_000, "malformed JSON: nested too deeply"),
    (b'["a list"]', "expected an object keyed by note_str"),
    (b"", "malformed JSON"),
], ids=["latin-1 bytes", "nested 200,000 deep", "a list", "empty"])
def test_unreadable_examples_json_names_the_file(corpus: Path, tmp_path: Path, text: bytes, message: str) -> None:
    src = copy_split(corpus, tmp_path)
    (src / "examples.json").write_bytes(text)
    for source in (src, make_targz(src, tmp_path / "nsynth-test.jsonwav.tar.gz", text or b" ")):
        with pytest.raises(SourceError, match=message) as info:
            scan(source, "skip", tmp_path / "w")  # a file-level problem: skip cannot go on either
        assert "examples.json" in str(info.value)


def test_examples_json_over_the_bound_is_refused_unread(corpus: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    src = copy_split(corpus, tmp_path)
    size = (src / "examples.json").stat().st_size
    monkeypatch.setattr(examples_json, "MAX_EXAMPLES_JSON_BYTES", size - 1)
    with pytest.raises(SourceError, match=rf"examples.json: {size:,} bytes; refused"):
        scan(src, "skip", tmp_path / "w")
    archive = make_targz(src, tmp_path / "nsynth-test.jsonwav.tar.gz")
    with pytest.raises(SourceError, match=rf"tar.gz:nsynth-test/examples.json: {size:,} bytes; refused"):
        scan(archive, "skip", tmp_path / "w")


def test_second_examples_json_in_an_archive_is_refused(corpus: Path, tmp_path: Path) -> None:
    src = copy_split(corpus, tmp_path / "f")
    other = json.dumps({}).encode()
    archive = make_targz(src, tmp_path / "nsynth-test.jsonwav.tar.gz", extra=[("old/examples.json", other)])
    for on_error in ("fail", "skip"):
        with pytest.raises(SourceError, match=r"tar.gz:nsynth-test/examples.json: a second examples.json"):
            scan(archive, on_error, tmp_path / on_error)


def test_a_skip_build_with_bad_labels_passes_verify(corpus: Path, tmp_path: Path) -> None:
    """Item 4: what the readers let through is what verify accepts."""
    src = copy_split(corpus, tmp_path)
    entries = entries_of(src)
    names = sorted(entries)
    entries[names[0]]["instrument"] = -5
    entries[names[1]]["instrument_family"] = (entries[names[1]]["instrument_family"] + 1) % 11
    entries[names[2]]["pitch"] = 66.9
    entries[f"../audio/{names[3]}"] = {**entries.pop(names[3]), "note_str": f"../audio/{names[3]}"}
    (src / "examples.json").write_text(json.dumps(entries))
    with pytest.raises(SourceError):
        build_cache(src, tmp_path / "c1", BuildConfig(), progress=False)
    s = build_cache(src, tmp_path / "c2", BuildConfig(on_error="skip"), progress=False)[0]
    assert s.notes == 26 and len(s.skipped) == 5  # 4 bad entries and the WAV no entry names any more
    assert verify_cache(s.path) == []


# --- WAV files in audio/ -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonwav", "targz"])
def test_wav_without_an_entry_is_reported_in_every_format(corpus: Path, tmp_path: Path, fmt: str) -> None:
    """Item 5: folders dropped such a WAV silently (skipped=[]), archives refused it."""
    src = copy_split(corpus, tmp_path / "f")
    extra = "bass_acoustic_999-060-100"
    wav = (src / "audio" / f"{sorted(entries_of(src))[0]}.wav").read_bytes()
    if fmt == "jsonwav":
        (src / "audio" / f"{extra}.wav").write_bytes(wav)
        source = src
    else:
        source = make_targz(src, tmp_path / "nsynth-test.jsonwav.tar.gz", extra=[(f"audio/{extra}.wav", wav)])
    with pytest.raises(SourceError, match=rf"audio/{extra}.wav has no entry in examples.json"):
        scan(source, "fail", tmp_path / "w1")
    cat = scan(source, "skip", tmp_path / "w2")
    assert len(cat.labels) == 30
    assert cat.skipped == [{"note": extra, "reason": f"{source}: audio/{extra}.wav has no entry in examples.json"}]


def test_folder_named_like_a_wav(corpus: Path, tmp_path: Path) -> None:
    """Item 11: a directory named X.wav was an IsADirectoryError traceback."""
    src = copy_split(corpus, tmp_path)
    name = sorted(entries_of(src))[0]
    (src / "audio" / f"{name}.wav").unlink()
    (src / "audio" / f"{name}.wav").mkdir()
    with pytest.raises(SourceError, match=rf"{name}.wav: not a regular file \(a folder\)"):
        build_cache(src, tmp_path / "c", BuildConfig(), progress=False)
    cat = scan(src, "skip", tmp_path / "w")
    assert [s["note"] for s in cat.skipped] == [name] and "not a regular file" in cat.skipped[0]["reason"]


@pytest.mark.parametrize("fmt", ["jsonwav", "targz"])
def test_oversized_wav_is_refused_before_it_is_read(corpus: Path, tmp_path: Path, fmt: str) -> None:
    src = copy_split(corpus, tmp_path / "f")
    name = sorted(entries_of(src))[2]
    path = src / "audio" / f"{name}.wav"
    junk = b"JUNK" + (2 << 20).to_bytes(4, "little") + bytes(2 << 20)  # a 2 MiB chunk before the samples
    path.write_bytes(encode_pcm16(read_pcm16(path.read_bytes(), name), extra_chunks=junk))
    source = src if fmt == "jsonwav" else make_targz(src, tmp_path / "nsynth-test.jsonwav.tar.gz")
    with pytest.raises(SourceError, match=rf"{name}.wav: 2,\d{{3}},\d{{3}} bytes; an NSynth WAV is 128,044"):
        build_cache(source, tmp_path / "c", BuildConfig(), progress=False)
    cat = scan(source, "skip", tmp_path / "w")
    assert [s["note"] for s in cat.skipped] == [name] and len(cat.labels) == 29


# --- TFRecord records ----------------------------------------------------------------------------


def _records(corpus: Path, n: int = 4) -> list[tuple[dict[str, Any], np.ndarray]]:
    entries = entries_of(corpus / "nsynth-test")
    names = sorted(entries)[:n]
    return [(entries[k], read_pcm16((corpus / "nsynth-test" / "audio" / f"{k}.wav").read_bytes(), k))
            for k in names]


def _with_audio(value: float, at: int = 100) -> Callable[[dict[str, Any]], bytes]:
    def edit(feats: dict[str, Any]) -> bytes:
        feats["audio"] = feats["audio"].copy()
        feats["audio"][at] = value
        return encode_example(feats)
    return edit


def _with(**changes: Any) -> Callable[[dict[str, Any]], bytes]:
    return lambda feats: encode_example({**feats, **changes})


RECORD_EDITS: list[tuple[str, Callable[[dict[str, Any]], bytes], str]] = [
    ("audio NaN", _with_audio(float("nan")), r"audio has 1 NaN or infinite samples; NSynth audio is in \[-1, 1\]"),
    ("audio inf", _with_audio(float("-inf")), "audio has 1 NaN or infinite samples"),
    ("audio 1.5", _with_audio(1.5), r"audio has samples from -?[\d.e-]+ to 1\.5"),
    # In [-1, 1] but not one of NSynth's 16-bit values: the cache could not store it exactly.
    ("audio 0.1", _with_audio(0.1), r"audio sample 100 is 0\.10000000149011612, not a 16-bit sample \(int16 / 32768"),
    ("audio 1.0", _with_audio(1.0, at=7), r"audio sample 7 is 1\.0, not a 16-bit sample"),
    ("instrument -5", _with(instrument=[-5]), r"instrument -5 \(expected 0\.\.32767\)"),
    ("instrument 70000", _with(instrument=[70000]), r"instrument 70000 \(expected 0\.\.32767\)"),
    ("family id disagrees with the name", _with(instrument_family=[10], instrument_family_str=("vocal",)),
     "the name says '.*' but instrument_family 10 is 'vocal'"),
    ("note_str ../audio/<note>", lambda f: encode_example({**f, "note_str": (f"../audio/{f['note_str'][0]}",)}),
     "is not an NSynth note name"),
    ("pitch given twice", lambda f: encode_example({**f, "pitch": [f["pitch"][0]] * 2}), r"pitch \[\d+, \d+\]"),
    ("two note_str values", lambda f: encode_example({**f, "note_str": f["note_str"] * 2}), "no single 'note_str'"),
    ("a feature given twice", lambda f: encode_example(f) + encode_example({"pitch": [1]}),
     "feature 'pitch' is there twice"),
    ("length 2**64-11", lambda f: b"\x0a\xf5\xff\xff\xff\xff\xff\xff\xff\xff\x01", "truncated protobuf message"),
]


@pytest.mark.parametrize(("case", "edit", "message"), RECORD_EDITS, ids=[c[0] for c in RECORD_EDITS])
@pytest.mark.parametrize("workers", [1, 2])
def test_bad_tfrecord_record(corpus: Path, tmp_path: Path, case: str, edit, message: str, workers: int) -> None:  # type: ignore[no-untyped-def]
    payloads = [encode_example(tf_features(e, a)) for e, a in _records(corpus)]
    payloads[2] = edit(tf_features(*_records(corpus)[2]))
    path = tmp_path / "nsynth-test.tfrecord"
    path.write_bytes(b"".join(frame_record(p) for p in payloads))
    with pytest.raises(SourceError, match=rf"nsynth-test.tfrecord: record 2: .*{message}"):
        scan(path, "fail", tmp_path / "w", workers)
    cat = scan(path, "skip", tmp_path / "w", workers)
    assert len(cat.labels) == 3 and [s["note"] for s in cat.skipped] == ["record 2"]
    assert pytest.importorskip("re").search(message, cat.skipped[0]["reason"])


@pytest.mark.parametrize("workers", [1, 2])
def test_duplicated_record_is_one_note_twice(corpus: Path, tmp_path: Path, workers: int) -> None:
    records = [frame_record(encode_example(tf_features(e, a))) for e, a in _records(corpus)]
    path = tmp_path / "nsynth-test.tfrecord"
    path.write_bytes(b"".join([*records, records[1]]))  # record 4 repeats record 1
    note = sorted(entries_of(corpus / "nsynth-test"))[1]
    with pytest.raises(SourceError, match=rf"record 4: note {note} appears again \(first at record 1\)"):
        scan(path, "fail", tmp_path / "w", workers)
    cat = scan(path, "skip", tmp_path / "w", workers)
    assert sorted(cat.labels.note_str) == sorted(entries_of(corpus / "nsynth-test"))[:4]
    assert [s["note"] for s in cat.skipped] == [note]


def test_skip_build_of_bad_records_passes_verify(corpus: Path, tmp_path: Path) -> None:
    """Item 4: NaN audio and a duplicated record used to end "complete" and fail verify."""
    records = _records(corpus, 6)
    payloads = [encode_example(tf_features(e, a)) for e, a in records]
    payloads[1] = _with_audio(float("nan"))(tf_features(*records[1]))
    payloads[3] = _with_audio(-1.25)(tf_features(*records[3]))
    path = tmp_path / "nsynth-test.tfrecord"
    path.write_bytes(b"".join(frame_record(p) for p in [*payloads, payloads[0]]))
    s = build_cache(path, tmp_path / "c", BuildConfig(on_error="skip", features=("framed",)), progress=False)[0]
    assert s.notes == 4 and len(s.skipped) == 3
    assert verify_cache(s.path) == []
    assert np.isfinite(zarr.open_group(s.path, mode="r")["framed"][...]).all()


@pytest.mark.parametrize("content", [b"", b"garbage, not a TFRecord at all " * 10])
def test_empty_or_garbage_tfrecord_scans_to_zero_notes(tmp_path: Path, content: bytes) -> None:
    """Item 12, the reader part: with 2 workers the scan returns cleanly (no pool of 0 processes)."""
    path = tmp_path / "nsynth-test.tfrecord"
    path.write_bytes(content)
    cat = scan(path, "skip", tmp_path / "w", workers=2)
    assert len(cat.labels) == 0
    assert [s["note"] for s in cat.skipped] == ([] if not content else ["rest of file"])
    if content:
        with pytest.raises(SourceError, match="record 0 at byte 0: length CRC mismatch"):
            scan(path, "fail", tmp_path / "w", workers=2)


# --- the .tar.gz spool ---------------------------------------------------------------------------


def test_disk_full_while_spooling_blames_the_disk(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 12: ENOSPC writing the spool was reported as a "damaged archive"."""
    def full(file: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), getattr(file, "name", str(file)))

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(StorageError, match=r"spool/\.block-00000\.pooled\.npy\.\d+\.[0-9a-f]{8}\.tmp: cannot write \(disk full\)") as info:
        scan(corpus / "nsynth-test.jsonwav.tar.gz", "fail", tmp_path / "w")
    assert "damaged" not in str(info.value)


def test_read_error_of_the_archive_is_named(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing disk under the archive is a read error of the archive, not a damaged archive."""
    from nsynth_prep.readers import targz as spool

    class FailingDisk(io.FileIO):
        reads = 0

        def read(self, size: int = -1) -> bytes:  # type: ignore[override]
            FailingDisk.reads += 1
            if FailingDisk.reads == 5:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return super().read(size)

    monkeypatch.setattr(spool, "open", lambda path, mode: FailingDisk(path, "r"), raising=False)
    with pytest.raises(SourceError, match=r"nsynth-test.jsonwav.tar.gz: cannot read \(Input/output error\)"):
        scan(corpus / "nsynth-test.jsonwav.tar.gz", "fail", tmp_path / "w")


def test_repeated_wav_member_keeps_the_first(corpus: Path, tmp_path: Path) -> None:
    src = copy_split(corpus, tmp_path / "f")
    name = sorted(entries_of(src))[4]
    wav = (src / "audio" / f"{name}.wav").read_bytes()
    archive = make_targz(src, tmp_path / "nsynth-test.jsonwav.tar.gz", extra=[(f"audio/{name}.wav", wav)])
    with pytest.raises(SourceError, match=rf"WAV {name}.wav \(spool row 30\): note {name} appears again"):
        scan(archive, "fail", tmp_path / "w1")
    cat = scan(archive, "skip", tmp_path / "w2")
    assert len(cat.labels) == 30 and [s["note"] for s in cat.skipped] == [name]


# --- bounded memory (item 10): each case in a child under an address-space limit ------------------

LIMITED = """
import json, resource, sys
from pathlib import Path
from nsynth_prep.builder.pipeline import BuildConfig, build_cache
from nsynth_prep.errors import NsynthError
from nsynth_prep.features import feature_spec
from nsynth_prep.readers.sources import discover
vm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize"))
limit = vm + HEADROOM
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
source, on_error, work, action = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4]
try:
    if action == "build":  # the build reads every WAV (fail mode reads them only here)
        s = build_cache(source, work, BuildConfig(on_error=on_error), progress=False)[0]
        print(json.dumps({"notes": s.notes, "skipped": s.skipped}))
    else:
        cat = discover(source)[0].scan([feature_spec("pooled")], on_error, work)
        print(json.dumps({"notes": len(cat.labels), "skipped": cat.skipped}))
except NsynthError as exc:
    print(json.dumps({"error": str(exc)}))
"""
HEADROOM = 256 << 20  # bytes the scan may take beyond what the imports hold


def scan_limited(source: Path, on_error: str, work: Path, action: str = "scan") -> dict[str, Any]:
    """Scan (or build) ``source`` in a child whose address space is capped at its size after
    imports plus :data:`HEADROOM` (a fixed cap would depend on how much numba and zarr map)."""
    proc = subprocess.run([sys.executable, "-c", LIMITED.replace("HEADROOM", str(HEADROOM)), str(source), on_error,
                           str(work), action], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # children under a memory limit
def test_huge_examples_json_is_refused_under_a_memory_limit(corpus: Path, tmp_path: Path) -> None:
    """A 1 GiB examples.json (sparse: no disk used) took 2.2 GB; now it is refused from its size."""
    src = copy_split(corpus, tmp_path)
    with open(src / "examples.json", "r+b") as f:
        f.truncate(1 << 30)
    out = scan_limited(src, "skip", tmp_path / "w")
    assert "examples.json: 1,073,741,824 bytes; refused" in out["error"]


def test_wav_that_is_a_fifo_does_not_hang(corpus: Path, tmp_path: Path) -> None:
    """Opening a FIFO waits for a writer; the reader opens without blocking and refuses it."""
    src = copy_split(corpus, tmp_path)
    name = sorted(entries_of(src))[1]
    (src / "audio" / f"{name}.wav").unlink()
    os.mkfifo(src / "audio" / f"{name}.wav")
    out = scan_limited(src, "skip", tmp_path / "w")  # in a child with a timeout, should it ever block
    assert [s["note"] for s in out["skipped"]] == [name] and "not a regular file" in out["skipped"][0]["reason"]


@pytest.mark.slow  # children under a memory limit
def test_wav_linked_to_dev_zero_under_a_memory_limit(corpus: Path, tmp_path: Path) -> None:
    """A WAV that is a symlink to /dev/zero (stat size 0) reached MemoryError at 6.9 GB."""
    src = copy_split(corpus, tmp_path)
    name = sorted(entries_of(src))[0]
    (src / "audio" / f"{name}.wav").unlink()
    (src / "audio" / f"{name}.wav").symlink_to("/dev/zero")
    out = scan_limited(src, "skip", tmp_path / "w")
    assert out["notes"] == 29 and out["skipped"][0]["note"] == name
    assert "not a regular file (a device, FIFO or socket)" in out["skipped"][0]["reason"]
    out = scan_limited(src, "fail", tmp_path / "c", "build")
    assert f"{name}.wav: not a regular file (a device, FIFO or socket)" in out["error"]


@pytest.mark.slow  # children under a memory limit
def test_archive_member_with_huge_trailing_zeros_under_a_memory_limit(corpus: Path, tmp_path: Path) -> None:
    """A 2 MB .tar.gz whose WAV member had 1 GiB of trailing zeros peaked at 2.2 GB. Here 320 MiB
    (more than the child's headroom, so reading the member whole fails) keep the test quick."""
    src = copy_split(corpus, tmp_path / "f")
    names = sorted(entries_of(src))
    wav = (src / "audio" / f"{names[0]}.wav").read_bytes()
    zeros = 320 << 20
    archive = tmp_path / "nsynth-test.jsonwav.tar.gz"
    header = tarfile.TarInfo(f"nsynth-test/audio/{names[0]}.wav")
    header.size = len(wav) + zeros
    gz = zlib.compressobj(1, zlib.DEFLATED, 31)  # written by hand: tarfile would compress at level 9
    chunk = bytes(1 << 20)
    with open(archive, "wb") as out:
        out.write(gz.compress(header.tobuf(format=tarfile.GNU_FORMAT) + wav))
        for _ in range(zeros // len(chunk)):
            out.write(gz.compress(chunk))
        pad = -(len(wav) + zeros) % 512
        rest = io.BytesIO()
        with tarfile.open(fileobj=rest, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for name in names[1:]:
                data = (src / "audio" / f"{name}.wav").read_bytes()
                info = tarfile.TarInfo(f"nsynth-test/audio/{name}.wav")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            data = (src / "examples.json").read_bytes()
            info = tarfile.TarInfo("nsynth-test/examples.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        out.write(gz.compress(bytes(pad) + rest.getvalue()))
        out.write(gz.flush())
    assert archive.stat().st_size < 8 << 20
    out = scan_limited(archive, "fail", tmp_path / "w1")
    assert f"{names[0]}.wav: {len(wav) + zeros:,} bytes; an NSynth WAV is 128,044" in out["error"]
    out = scan_limited(archive, "skip", tmp_path / "w2")
    assert out["notes"] == 29 and [s["note"] for s in out["skipped"]] == [names[0]]


def test_every_reader_error_is_ours(corpus: Path, tmp_path: Path) -> None:
    """Item 11 via the command line: one line, exit 1, no traceback (pitch 1e400, instrument 70000)."""
    for edit in ('"pitch": 1e400', '"instrument": 70000'):
        src = copy_split(corpus, tmp_path / edit[2:7])
        text = (src / "examples.json").read_text()
        key = edit.split(":")[0]
        start = text.index(key + ": ")
        end = text.index(",", start)
        (src / "examples.json").write_text(text[:start] + edit + text[end:])
        proc = subprocess.run([sys.executable, str(REPO / "cli.py"), "-q", "prep", "build-cache", str(src),
                               "--cache", str(tmp_path / "c")], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "examples.json: note '" in lines[0]
    assert issubclass(SourceError, NsynthError)
