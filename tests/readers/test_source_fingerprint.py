"""The source fingerprint: a changed source is refused on rerun and on resume, naming what changed;
a byte-identical one is accepted; an untouched one costs a stat per file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from kill_scripts import KILLER, SPOOL_KILLER  # kill -9 after one block; while streaming an archive

from nsynth_prep.builder import pipeline as build
from nsynth_prep.builder.pipeline import BuildConfig, build_cache
from nsynth_prep.cache import format as cache
from nsynth_prep.cache.verify import verify_cache
from nsynth_prep.corpus.synth import tf_features, write_corpus
from nsynth_prep.errors import CacheError
from nsynth_prep.readers.fingerprint import Fingerprint
from nsynth_prep.readers.sources import discover
from nsynth_prep.readers.tfrecord import decode_example, encode_example, frame_record, iter_records

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def src(corpus: Path, tmp_path: Path) -> Path:
    """A private copy of the test split (copy2 keeps the files' times)."""
    shutil.copytree(corpus / "nsynth-test", tmp_path / "nsynth-test")
    return tmp_path / "nsynth-test"


def _recorded(path: Path) -> Fingerprint:
    group = zarr.open_group(path, mode="r")
    table = Fingerprint.from_columns(cache.load_meta(group).build.source.format, cache.read_source_files(group) or {})
    assert table is not None
    return table


def _rewrite_wav(src: Path, index: int = 3, same: bool = False) -> str:
    """Rewrite one WAV in place with the same size: other samples, or the very same bytes."""
    wav = sorted((src / "audio").iterdir())[index]
    data = bytearray(wav.read_bytes())
    if not same:
        data[2000:2002] = bytes([data[2000] ^ 0x40, data[2001]])
    wav.write_bytes(bytes(data))
    return f"audio/{wav.name}"


def test_untouched_source_costs_one_stat_per_file(src: Path, tmp_path: Path) -> None:
    for f in [src / "examples.json", *(src / "audio").iterdir()]:
        os.utime(f, ns=(10**18, 10**18))  # not written a moment ago (those are read again next time)
    s = build_cache(src, tmp_path / "c", BuildConfig(), progress=False)[0]
    table = _recorded(s.path)
    assert len(table.names) == 31 and "examples.json" in table.names  # examples.json + 30 WAVs
    (source,) = discover(src)
    again = source.fingerprint(table)
    assert again.read_now == 0 and again.summary() == cache.open_cache(s.path).meta.build.source.fingerprint
    assert build_cache(src, tmp_path / "c", BuildConfig(), progress=False)[0].built_now == []


def test_wav_rewritten_in_place_is_refused(src: Path, tmp_path: Path) -> None:
    s = build_cache(src, tmp_path / "c", BuildConfig(), progress=False)[0]
    name = _rewrite_wav(src)
    message = f"the source changed: 1 file\\(s\\) changed in content \\(same size\\): {name}\\. A cache is never mixed"
    with pytest.raises(CacheError, match=message):
        build_cache(src, tmp_path / "c", BuildConfig(), progress=False)  # was "up to date"
    with pytest.raises(CacheError, match=message):
        build_cache(src, tmp_path / "c", BuildConfig(features=("framed",)), progress=False)
    assert verify_cache(s.path) == []  # the cache itself is sound; it is the source that moved on


def test_same_bytes_written_again_are_accepted(src: Path, tmp_path: Path) -> None:
    s = build_cache(src, tmp_path / "c", BuildConfig(), progress=False)[0]
    wav = src / _rewrite_wav(src, same=True)
    (src / "examples.json").write_bytes((src / "examples.json").read_bytes())
    for f in (wav, src / "examples.json"):  # other times than the table's (and not fresh), the same bytes
        os.utime(f, ns=(10**18, 10**18))
    assert build_cache(src, tmp_path / "c", BuildConfig(), progress=False)[0].built_now == []
    (source,) = discover(src)
    assert source.fingerprint(_recorded(s.path)).read_now == 0  # the table was refreshed


def test_regenerated_identical_corpus_is_accepted(tmp_path: Path) -> None:
    """Issue 8.6: regenerate the same corpus, then add a feature."""
    corpus, counts = tmp_path / "corpus", {"train": 20, "valid": 10, "test": 10}
    write_corpus(corpus, counts, seed=0, progress=False)
    build_cache(corpus / "nsynth-test", tmp_path / "c", BuildConfig(), progress=False)
    shutil.rmtree(corpus)
    write_corpus(corpus, counts, seed=0, progress=False)
    more = build_cache(corpus / "nsynth-test", tmp_path / "c", BuildConfig(features=("framed",)), progress=False)[0]
    assert more.built_now == ["framed"] and verify_cache(more.path) == []
    shutil.rmtree(corpus)
    write_corpus(corpus, counts, seed=1, progress=False)  # another corpus at the same place
    with pytest.raises(CacheError, match=r"the source changed: .*examples\.json.* A cache is never mixed"):
        build_cache(corpus / "nsynth-test", tmp_path / "c", BuildConfig(features=("trimmed",)), progress=False)


def test_changes_are_named_file_by_file(src: Path, tmp_path: Path) -> None:
    build_cache(src, tmp_path / "c", BuildConfig(), progress=False)
    text = (src / "examples.json").read_text()
    entries = json.loads(text)
    first = sorted(entries)[0]
    entries[first]["velocity"] = 25 if entries[first]["velocity"] != 25 else 50
    (src / "examples.json").write_text(json.dumps(entries))
    with pytest.raises(CacheError, match=r"1 file\(s\) changed in (content \(same size\)|size): examples\.json"):
        build_cache(src, tmp_path / "c", BuildConfig(), progress=False)
    (src / "examples.json").write_text(text)
    wavs = sorted((src / "audio").iterdir())
    (src / "audio" / "extra.wav").write_bytes(wavs[0].read_bytes())
    wavs[1].write_bytes(wavs[1].read_bytes()[:5000])
    with pytest.raises(CacheError, match=rf"1 file\(s\) changed in size: audio/{wavs[1].name} \(128,044 -> 5,000 "
                                         r"bytes\); 1 file\(s\) added: audio/extra\.wav"):
        build_cache(src, tmp_path / "c", BuildConfig(), progress=False)
    wavs[2].unlink()
    with pytest.raises(CacheError, match=rf"1 file\(s\) removed: audio/{wavs[2].name}"):
        build_cache(src, tmp_path / "c", BuildConfig(), progress=False)




def test_resume_refuses_a_source_changed_under_it(corpus: Path, tmp_path: Path) -> None:
    src = tmp_path / "nsynth-train"
    shutil.copytree(corpus / "nsynth-train", src)
    proc = subprocess.run([sys.executable, "-c", KILLER, str(src), str(tmp_path / "c")], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    wav = sorted((src / "audio").iterdir())[5]
    original = wav.read_bytes()
    _rewrite_wav(src, 5)
    config = BuildConfig(features=("trimmed",))
    with pytest.raises(CacheError, match=rf"train\.zarr is an interrupted build from .* the source changed: 1 file\(s\) "
                                         rf"changed in content \(same size\): audio/{wav.name}\. Its written chunks "
                                         r"must not be mixed .* or remove .*train\.zarr and .*train\.zarr\.build"):
        build_cache(src, tmp_path / "c", config, progress=False)
    wav.write_bytes(original)  # the source as it was: the resume goes on, and ends as an uninterrupted build
    done = build_cache(src, tmp_path / "c", config, progress=False)[0]
    ref = build_cache(corpus / "nsynth-train", tmp_path / "ref", config, progress=False)[0]
    np.testing.assert_array_equal(zarr.open_group(done.path, mode="r")["trimmed"][...],
                                  zarr.open_group(ref.path, mode="r")["trimmed"][...])
    assert verify_cache(done.path) == []


def test_archive_spool_refuses_a_changed_archive(corpus: Path, tmp_path: Path) -> None:
    archive = tmp_path / "nsynth-train.jsonwav.tar.gz"
    shutil.copy2(corpus / "nsynth-train.jsonwav.tar.gz", archive)
    proc = subprocess.run([sys.executable, "-c", SPOOL_KILLER, str(archive), str(tmp_path / "c")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    shutil.copy(corpus / "nsynth-valid.jsonwav.tar.gz", archive)  # other notes under the same name
    with pytest.raises(CacheError, match=r"train\.zarr\.build: an interrupted build from .* holds data read before "
                                         r"the source changed .* or remove .*train\.zarr\.build to start over"):
        build_cache(archive, tmp_path / "c", BuildConfig(), progress=False)


def _rewrite_tfrecord(src: Path, out: Path, change: int | None) -> None:
    """Write ``src`` again record by record, with one sample of record ``change`` altered (valid CRCs)."""
    entries = {}
    with open(out, "wb") as f:
        for index, _, payload in iter_records(src):
            if index != change:
                f.write(frame_record(bytes(payload)))
                continue
            labels, offset, count = decode_example(payload, "")
            audio = np.frombuffer(payload, "<f4", count, offset).copy()
            audio[1000] = -audio[1000] if audio[1000] else 0.5
            entries = entries or json.loads((src.parent / "nsynth-test" / "examples.json").read_text())
            f.write(frame_record(encode_example({**tf_features(entries[labels.note_str], np.zeros(1, np.int16)),
                                                 "audio": audio})))


def test_tfrecord_record_rewritten_with_valid_crcs_is_noticed(corpus: Path, tmp_path: Path) -> None:
    record = tmp_path / "nsynth-test.tfrecord"
    shutil.copy2(corpus / "nsynth-test.tfrecord", record)
    build_cache(record, tmp_path / "c", BuildConfig(), progress=False)
    _rewrite_tfrecord(corpus / "nsynth-test.tfrecord", record, None)  # the same bytes again
    assert record.read_bytes() == (corpus / "nsynth-test.tfrecord").read_bytes()
    assert build_cache(record, tmp_path / "c", BuildConfig(), progress=False)[0].built_now == []
    _rewrite_tfrecord(corpus / "nsynth-test.tfrecord", record, 15)  # a record in the middle, same size
    assert record.stat().st_size == (corpus / "nsynth-test.tfrecord").stat().st_size
    with pytest.raises(CacheError, match=r"changed in content \(same size\): nsynth-test\.tfrecord"):
        build_cache(record, tmp_path / "c", BuildConfig(features=("framed",)), progress=False)


def test_source_changed_while_building(src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = build._write_features

    def rewrite_first(*args, **kwargs):  # type: ignore[no-untyped-def]
        _rewrite_wav(src, 7)  # after the fingerprint, before the chunks are written
        return original(*args, **kwargs)

    monkeypatch.setattr(build, "_write_features", rewrite_first)
    with pytest.raises(CacheError, match=r"nsynth-test: changed while this build read it \(1 file\(s\) changed in "
                                         r"content \(same size\): audio/.*\); .*test\.zarr is left incomplete"):
        build_cache(src, tmp_path / "c", BuildConfig(workers=1), progress=False)
    with pytest.raises(CacheError, match="incomplete"):
        cache.open_cache(tmp_path / "c" / "test.zarr")
