"""Building caches end to end: parity across formats, the format, filters, bad input, resume."""

from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr
from kill_scripts import KILLER, SPOOL_KILLER

from nsynth_prep.builder.pipeline import BuildConfig, build_cache
from nsynth_prep.cache import format as cache
from nsynth_prep.cache.verify import verify_cache
from nsynth_prep.readers.sources import SourceError

ALL = ("pooled", "framed", "trimmed")
ARRAYS = (*ALL, "family", "source", "pitch", "velocity", "instrument", "note", "qualities", "note_str")


def _arrays(path: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(path, mode="r")  # plain zarr, as any user would
    return {name: np.asarray(group[name][...]) for name in ARRAYS if name in group}


@pytest.fixture(scope="module")
def built(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The test split built from each format, every feature."""
    out = {}
    for fmt, name in [("jsonwav", "nsynth-test"), ("tfrecord", "nsynth-test.tfrecord"),
                      ("targz", "nsynth-test.jsonwav.tar.gz")]:
        d = tmp_path_factory.mktemp(fmt)
        build_cache(corpus / name, d, BuildConfig(features=ALL, workers=2), progress=False)
        out[fmt] = d / "test.zarr"
    return out


def test_every_format_gives_the_same_cache(built: dict[str, Path]) -> None:
    ref = _arrays(built["jsonwav"])
    for fmt in ("tfrecord", "targz"):
        other = _arrays(built[fmt])
        for name in ARRAYS:
            np.testing.assert_array_equal(other[name], ref[name], err_msg=f"{fmt}: {name}")


def test_cache_schema_readable_with_plain_zarr(built: dict[str, Path], corpus: Path) -> None:
    group = zarr.open_group(built["jsonwav"], mode="r")
    attrs = group.attrs["nsynth"]
    n = attrs["notes"]
    assert attrs["format_version"] == cache.FORMAT_VERSION and attrs["state"] == "complete"
    assert group["pooled"].shape == (n, 2048) and group["pooled"].chunks == (1024, 2048)
    assert group["framed"].shape == (n, 100, 160) and group["trimmed"].shape == (n, 51_200)
    # Audio as int16 with its scale; pooled means as float32.
    assert group["pooled"].dtype == np.float32 and attrs["features"]["pooled"]["scale"] == 1
    for name in ("framed", "trimmed"):
        assert group[name].dtype == np.int16 and attrs["features"][name]["dtype"] == "int16"
        assert attrs["features"][name]["scale"] == 1 / 32768
    assert group["qualities"].shape == (n, 10) and group["family"].dtype == np.int8
    assert attrs["families"][9] == "synth_lead" and attrs["sources"] == ["acoustic", "electronic", "synthetic"]
    assert attrs["features"]["pooled"]["params"] == {"name": "pooled", "length": 51200, "kernel": 25, "stride": 25}
    assert attrs["build"]["seed"] == 0 and attrs["build"]["source"]["format"] == "jsonwav"
    assert sum(attrs["counts"]["family"].values()) == n
    # The labels are NSynth's own, matching examples.json.
    entries = json.loads((corpus / "nsynth-test" / "examples.json").read_text())
    names = np.asarray(group["note_str"][...].tolist())
    assert set(names) == set(entries)
    row = 3
    e = entries[names[row]]
    assert (int(group["family"][row]), int(group["pitch"][row]), int(group["note"][row])) == (
        e["instrument_family"], e["pitch"], e["note"])
    # Rows are shuffled: not in name order.
    assert list(names) != sorted(names)


def test_features_are_the_audio(built: dict[str, Path], corpus: Path) -> None:
    from nsynth_prep.readers.wav import read_pcm16

    group = zarr.open_group(built["jsonwav"], mode="r")
    name = str(group["note_str"][5])
    pcm = read_pcm16((corpus / "nsynth-test" / "audio" / f"{name}.wav").read_bytes(), name)
    np.testing.assert_array_equal(group["trimmed"][5], pcm[:51_200])
    scale = group.attrs["nsynth"]["features"]["trimmed"]["scale"]  # type: ignore[index,call-overload]
    floats = group["trimmed"][5] * np.float32(scale)  # as README tells plain-zarr users
    assert floats.dtype == np.float32 and floats.tobytes() == (pcm[:51_200] / np.float32(32768)).tobytes()
    np.testing.assert_allclose(group["pooled"][5], pcm[:51_200].reshape(2048, 25).mean(1) / 32768, rtol=1e-6)


def test_verify_passes_then_catches_tampering(built: dict[str, Path], tmp_path: Path) -> None:
    assert verify_cache(built["tfrecord"]) == []
    copy = tmp_path / "test.zarr"
    shutil.copytree(built["tfrecord"], copy)
    arr = zarr.open_group(copy, mode="r+")["pooled"]
    arr[2, 7] = 0.123
    fam = zarr.open_group(copy, mode="r+")["family"]
    problems = verify_cache(copy)
    assert any("pooled: chunk 0" in p for p in problems)
    fam[0] = 42
    assert any("family: checksum" in p for p in verify_cache(copy))


def test_seed_decides_the_order(corpus: Path, tmp_path: Path) -> None:
    a = build_cache(corpus / "nsynth-valid", tmp_path / "a", BuildConfig(seed=1), progress=False)[0].path
    b = build_cache(corpus / "nsynth-valid", tmp_path / "b", BuildConfig(seed=1, workers=1), progress=False)[0].path
    c = build_cache(corpus / "nsynth-valid", tmp_path / "c", BuildConfig(seed=2), progress=False)[0].path
    assert _arrays(a)["note_str"].tolist() == _arrays(b)["note_str"].tolist()
    np.testing.assert_array_equal(_arrays(a)["pooled"], _arrays(b)["pooled"])
    assert sorted(_arrays(a)["note_str"]) == sorted(_arrays(c)["note_str"])
    assert _arrays(a)["note_str"].tolist() != _arrays(c)["note_str"].tolist()


def test_family_filters_and_adding_a_feature(corpus: Path, tmp_path: Path) -> None:
    config = BuildConfig(exclude_families=("synth_lead",))
    s = build_cache(corpus / "nsynth-train", tmp_path, config, progress=False)[0]
    fam = _arrays(s.path)["family"]
    assert 9 not in fam and len(fam) == s.notes
    before = _arrays(s.path)
    again = build_cache(corpus / "nsynth-train", tmp_path, config, progress=False)[0]
    assert again.built_now == []  # up to date
    more = build_cache(corpus / "nsynth-train", tmp_path,
                       BuildConfig(features=("framed",), exclude_families=("synth_lead",)), progress=False)[0]
    assert more.built_now == ["framed"] and more.features == ["framed", "pooled"]
    after = _arrays(s.path)
    np.testing.assert_array_equal(after["pooled"], before["pooled"])
    assert verify_cache(s.path) == []
    with pytest.raises(cache.CacheError, match=r"other data or options: --families was \[\], now \['bass'\]"):
        build_cache(corpus / "nsynth-train", tmp_path, BuildConfig(families=("bass",)), progress=False)
    only = build_cache(corpus / "nsynth-train", tmp_path / "bass", BuildConfig(families=("bass", "reed")),
                       progress=False)[0]
    assert set(_arrays(only.path)["family"]) == {0, 7}


def test_open_cache_refuses_missing_features_and_incomplete(built: dict[str, Path], tmp_path: Path,
                                                            edit_attrs: Callable[..., None]) -> None:
    with pytest.raises(cache.CacheError, match="no cache here"):
        cache.open_cache(tmp_path / "nope.zarr")
    copy = tmp_path / "test.zarr"
    shutil.copytree(built["jsonwav"], copy)
    edit_attrs(copy, state="building")
    with pytest.raises(cache.CacheError, match="incomplete cache"):
        cache.open_cache(copy)
    edit_attrs(copy, state="complete", format_version=99)
    with pytest.raises(cache.CacheError, match="format version 99"):
        cache.open_cache(copy)
    edit_attrs(copy, format_version=cache.FORMAT_VERSION, features={})
    with pytest.raises(cache.CacheError, match="no feature 'pooled'"):
        cache.open_cache(copy, ("pooled",))


# --- bad input --------------------------------------------------------------------------------


def _damaged_dir(corpus: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    src = tmp_path / "nsynth-valid"
    shutil.copytree(corpus / "nsynth-valid", src)
    names = sorted(json.loads((src / "examples.json").read_text()))
    audio = src / "audio"
    (audio / f"{names[0]}.wav").write_bytes((audio / f"{names[0]}.wav").read_bytes()[:9000])  # truncated
    (audio / f"{names[1]}.wav").unlink()  # missing
    return src, names[:2]


def test_bad_wav_fails_the_build_naming_the_file(corpus: Path, tmp_path: Path) -> None:
    src, bad = _damaged_dir(corpus, tmp_path)
    with pytest.raises(SourceError, match=f"{bad[0]}.wav: truncated|{bad[1]}"):
        build_cache(src, tmp_path / "cache", BuildConfig(workers=2), progress=False)
    with pytest.raises(cache.CacheError, match="incomplete"):
        cache.open_cache(tmp_path / "cache" / "valid.zarr")


def test_skip_records_each_bad_note(corpus: Path, tmp_path: Path) -> None:
    src, bad = _damaged_dir(corpus, tmp_path)
    summary = build_cache(src, tmp_path / "cache", BuildConfig(on_error="skip"), progress=False)[0]
    skipped = {s["note"]: s["reason"] for s in summary.skipped}
    assert set(skipped) == set(bad)
    assert "truncated" in skipped[bad[0]] and "missing" in skipped[bad[1]]
    attrs = zarr.open_group(summary.path, mode="r").attrs["nsynth"]
    assert len(attrs["build"]["skipped"]) == 2 and attrs["notes"] == 28
    assert "skipped 2 notes" in summary.report()
    assert verify_cache(summary.path) == []


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t[: len(t) // 2], "malformed JSON"),
    (lambda t: t.replace('"instrument_family": 0,', '"instrument_family": 12,', 1), "unknown instrument_family 12"),
    (lambda t: t.replace('"pitch": ', '"pitchx": ', 1), "lacks pitch"),
])
def test_bad_examples_json(corpus: Path, tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "nsynth-test"
    shutil.copytree(corpus / "nsynth-test", src)
    (src / "examples.json").write_text(edit((src / "examples.json").read_text()))
    with pytest.raises(SourceError, match=message) as info:
        build_cache(src, tmp_path / "cache", BuildConfig(), progress=False)
    assert "examples.json" in str(info.value)


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_tfrecord_fails_or_skips(corpus: Path, tmp_path: Path, workers: int) -> None:
    data = bytearray((corpus / "nsynth-test.tfrecord").read_bytes())
    data[len(data) // 2 + 5000] ^= 0xFF  # inside a payload (records are ~256 KB)
    bad = tmp_path / "nsynth-test.tfrecord"
    bad.write_bytes(bytes(data))
    with pytest.raises(SourceError, match=r"nsynth-test.tfrecord: record \d+ at byte \d+: payload CRC mismatch"):
        build_cache(bad, tmp_path / "c1", BuildConfig(workers=workers), progress=False)
    s = build_cache(bad, tmp_path / "c2", BuildConfig(on_error="skip", workers=workers), progress=False)[0]
    # The framing is intact, so only the damaged record is lost.
    assert s.notes == 29 and len(s.skipped) == 1 and "payload CRC mismatch" in s.skipped[0]["reason"]
    cut = tmp_path / "cut" / "nsynth-test.tfrecord"
    cut.parent.mkdir()
    cut.write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(SourceError, match=r"record \d+ at byte \d+: truncated record"):
        build_cache(cut, tmp_path / "c3", BuildConfig(workers=workers), progress=False)
    s = build_cache(cut, tmp_path / "c4", BuildConfig(on_error="skip", workers=workers), progress=False)[0]
    # A bad length or a cut file: nothing after it can be located, so the rest is skipped.
    assert 0 < s.notes < 30 and s.skipped[-1]["note"] == "rest of file"


def test_archive_with_bad_member_and_without_examples(corpus: Path, tmp_path: Path) -> None:
    src = tarfile.open(corpus / "nsynth-test.jsonwav.tar.gz")
    members = [(m, src.extractfile(m).read()) for m in src.getmembers() if m.isfile()]  # type: ignore[union-attr]
    bad_name = next(m.name for m, _ in members if m.name.endswith(".wav"))

    def write(path: Path, keep_json: bool) -> Path:
        with tarfile.open(path, "w:gz") as out:
            for m, data in members:
                if m.name.endswith("examples.json") and not keep_json:
                    continue
                if m.name == bad_name:
                    data = data[:44] + b"\x00" * 10
                    m.size = len(data)
                out.addfile(m, io.BytesIO(data))
        return path

    with pytest.raises(SourceError, match=f"{bad_name}: truncated"):
        build_cache(write(tmp_path / "nsynth-test.jsonwav.tar.gz", True), tmp_path / "c", BuildConfig(),
                    progress=False)
    s = build_cache(tmp_path / "nsynth-test.jsonwav.tar.gz", tmp_path / "c2", BuildConfig(on_error="skip"),
                    progress=False)[0]
    assert s.notes == 29 and len(s.skipped) == 1
    with pytest.raises(SourceError, match=r"no examples\.json"):
        build_cache(write(tmp_path / "nsynth-valid.jsonwav.tar.gz", False), tmp_path / "c3",
                    BuildConfig(on_error="skip"), progress=False)
    cut = tmp_path / "nsynth-train.jsonwav.tar.gz"
    cut.write_bytes((corpus / "nsynth-test.jsonwav.tar.gz").read_bytes()[:300_000])
    with pytest.raises(SourceError, match="damaged archive"):
        build_cache(cut, tmp_path / "c4", BuildConfig(), progress=False)


# --- interruption and resume ------------------------------------------------------------------


def test_resume_after_interrupt_ends_identical(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nsynth_prep.builder import blocks

    ref = build_cache(corpus / "nsynth-train", tmp_path / "ref", BuildConfig(features=("trimmed",)), progress=False)
    calls = {"n": 0}
    original = blocks.write_block

    def interrupted(job: blocks.ChunkJob, block: int) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C after one block
        return original(job, block)

    monkeypatch.setattr(blocks, "write_block", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_cache(corpus / "nsynth-train", tmp_path / "cache", BuildConfig(features=("trimmed",), workers=1),
                    progress=False)
    with pytest.raises(cache.CacheError, match="incomplete"):
        cache.open_cache(tmp_path / "cache" / "train.zarr")
    monkeypatch.setattr(blocks, "write_block", original)
    done = build_cache(corpus / "nsynth-train", tmp_path / "cache", BuildConfig(features=("trimmed",)),
                       progress=False)[0]
    assert done.notes == 60
    for name, arr in _arrays(ref[0].path).items():
        np.testing.assert_array_equal(_arrays(done.path)[name], arr, err_msg=name)
    assert not (tmp_path / "cache" / "train.zarr.build").exists()


@pytest.mark.parametrize("source", ["nsynth-train", "nsynth-train.jsonwav.tar.gz"])
def test_resume_after_kill_9(corpus: Path, tmp_path: Path, source: str) -> None:
    proc = subprocess.run([sys.executable, "-c", KILLER, str(corpus / source), str(tmp_path / "cache")],
                          capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert len(list((tmp_path / "cache" / "train.zarr.build" / "done" / "trimmed").glob("*.json"))) == 1
    with pytest.raises(cache.CacheError, match="incomplete"):
        cache.open_cache(tmp_path / "cache" / "train.zarr")
    # What zarr leaves of a chunk whose writer was killed between its write and its rename:
    stray = tmp_path / "cache" / "train.zarr" / "trimmed" / "c" / "1" / "0.0123abcd.partial"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"half a chunk")
    done = build_cache(corpus / source, tmp_path / "cache", BuildConfig(features=("trimmed",)), progress=False)[0]
    ref = build_cache(corpus / source, tmp_path / "ref", BuildConfig(features=("trimmed",)), progress=False)[0]
    for name, arr in _arrays(ref.path).items():
        np.testing.assert_array_equal(_arrays(done.path)[name], arr, err_msg=name)
    assert verify_cache(done.path) == []
    files = sorted(str(p.relative_to(done.path)) for p in Path(done.path).rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(ref.path)) for p in Path(ref.path).rglob("*") if p.is_file())


def test_archive_stream_resumes_after_kill_9(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nsynth_prep.readers import targz as spool

    source = corpus / "nsynth-train.jsonwav.tar.gz"
    proc = subprocess.run([sys.executable, "-c", SPOOL_KILLER, str(source), str(tmp_path / "cache")],
                          capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    blocks = tmp_path / "cache" / "train.zarr.build" / "spool"
    assert sorted(p.name for p in blocks.glob("block-*.json")) == ["block-00000.json", "block-00001.json"]
    monkeypatch.setattr(spool, "SPOOL_BLOCK", 16)
    calls: list[int] = []
    original = spool._write_block
    monkeypatch.setattr(spool, "_write_block", lambda *a, **k: (calls.append(1), original(*a, **k))[1])
    done = build_cache(source, tmp_path / "cache", BuildConfig(), progress=False)[0]
    assert len(calls) == 2  # only the two blocks the killed run had not spooled
    ref = build_cache(corpus / "nsynth-train", tmp_path / "ref", BuildConfig(), progress=False)[0]
    for name, arr in _arrays(ref.path).items():
        np.testing.assert_array_equal(_arrays(done.path)[name], arr, err_msg=name)



def test_archive_stream_restarts_a_spool_whose_manifest_is_cut(corpus: Path, tmp_path: Path) -> None:
    """A manifest cut by a kill (older nsynth wrote it in place) means "spool afresh", not a crash."""
    source = corpus / "nsynth-train.jsonwav.tar.gz"
    proc = subprocess.run([sys.executable, "-c", SPOOL_KILLER, str(source), str(tmp_path / "cache")],
                          capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    manifest = tmp_path / "cache" / "train.zarr.build" / "spool" / "manifest.json"
    manifest.write_text(manifest.read_text()[:7])
    done = build_cache(source, tmp_path / "cache", BuildConfig(), progress=False)[0]
    assert verify_cache(done.path) == []
    ref = build_cache(corpus / "nsynth-train", tmp_path / "ref", BuildConfig(), progress=False)[0]
    for name, arr in _arrays(ref.path).items():
        np.testing.assert_array_equal(_arrays(done.path)[name], arr, err_msg=name)

def test_stop_between_last_feature_and_final_mark(corpus: Path, tmp_path: Path,
                                                  edit_attrs: Callable[..., None]) -> None:
    """Every feature recorded but the cache never marked complete: a rerun completes it."""
    s = build_cache(corpus / "nsynth-test", tmp_path, BuildConfig(), progress=False)[0]
    counts = cache.open_cache(s.path).meta.counts
    edit_attrs(s.path, state="building", counts=None)
    with pytest.raises(cache.CacheError, match="incomplete"):
        cache.open_cache(s.path)
    again = build_cache(corpus / "nsynth-test", tmp_path, BuildConfig(), progress=False)[0]
    assert again.built_now == [] and cache.open_cache(s.path).meta.counts == counts
    assert verify_cache(s.path) == []
