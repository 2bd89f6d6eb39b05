"""inspect, audit (on planted problems) and HDF5 export."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr

from nsynth_prep.builder.pipeline import BuildConfig, build_cache
from nsynth_prep.cache import format as cache_format
from nsynth_prep.cache.format import CacheError, open_cache
from nsynth_prep.display.notes import plot_note, write_overview
from nsynth_prep.readers.wav import encode_pcm16, read_pcm16
from nsynth_prep.tools import inspect as inspect_lib
from nsynth_prep.tools.audit import audit
from nsynth_prep.tools.export import export_hdf5


@pytest.fixture
def clean(caches_of: Callable[..., Path]) -> Path:
    """The session corpus's caches with pooled and framed (read-only; shared with tests/train)."""
    return caches_of("pooled", "framed")


@pytest.fixture(scope="module")
def planted(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A valid split with one silent, one clipped, one duplicated, one odd-pitch note and a
    note of a train instrument (a leak)."""
    root = tmp_path_factory.mktemp("planted")
    src = root / "nsynth-valid"
    shutil.copytree(corpus / "nsynth-valid", src)
    entries = json.loads((src / "examples.json").read_text())
    names = sorted(entries)
    audio = src / "audio"

    def wav(name: str) -> np.ndarray:
        return read_pcm16((audio / f"{name}.wav").read_bytes(), name).copy()

    (audio / f"{names[0]}.wav").write_bytes(encode_pcm16(np.zeros(64_000, np.int16)))
    loud = np.clip(wav(names[1]).astype(np.int32) * 20, -32768, 32767).astype(np.int16)
    (audio / f"{names[1]}.wav").write_bytes(encode_pcm16(loud))
    (audio / f"{names[2]}.wav").write_bytes((audio / f"{names[3]}.wav").read_bytes())
    # Pitch 9 under a name that says so (the readers refuse a pitch that disagrees with note_str).
    odd = f"{names[4].rsplit('-', 2)[0]}-009-{names[4].rsplit('-', 1)[1]}"
    entries[odd] = {**entries.pop(names[4]), "pitch": 9, "note_str": odd}
    (audio / f"{names[4]}.wav").rename(audio / f"{odd}.wav")
    train_entries = json.loads((corpus / "nsynth-train" / "examples.json").read_text())
    leak = sorted(train_entries)[0]
    entries[leak] = train_entries[leak]
    shutil.copy(corpus / "nsynth-train" / "audio" / f"{leak}.wav", audio / f"{leak}.wav")
    (src / "examples.json").write_text(json.dumps(entries))
    build_cache(src, root / "cache", BuildConfig(features=("pooled", "framed")), progress=False)
    plan = {"silent": names[0], "clipped": names[1], "dup_a": names[2], "dup_b": names[3], "pitch": odd,
            "leak": leak}
    return root / "cache", plan


def test_describe_and_text(clean: Path) -> None:
    info = inspect_lib.describe(clean / "train.zarr")
    assert info["split"] == "train" and info["notes"] == 60
    assert set(info["features"]) == {"pooled", "framed"}
    assert info["features"]["framed"]["shape"] == [60, 100, 160]
    assert info["features"]["pooled"]["compressors"] == [] and info["features"]["pooled"]["dtype"] == "float32"
    assert info["features"]["framed"]["compressors"] == []
    assert info["features"]["framed"]["dtype"] == "int16" and info["features"]["framed"]["scale"] == 1 / 32768
    assert sum(map(sum, info["family_source"])) == 60
    text = inspect_lib.format_description(info)
    assert "train split, 60 notes" in text and "synth_lead" in text and "total" in text
    assert "row-order seed 0" in text and "skipped at build: none" in text
    assert re.search(r"framed +60x100x160 +int16 +1/32768 +256x100x160 +none", text), text
    assert re.search(r"pooled +60x2048 +float32 +1 +1024x2048 +none", text), text
    json.dumps(info)  # --json works


def test_note_lookup_and_plots(clean: Path, tmp_path: Path) -> None:
    c = open_cache(clean / "test.zarr")
    name = str(np.asarray(c.array("note_str")[...]).tolist()[7])
    row, info = inspect_lib.find_note(c, name)
    assert row == 7 and info["note_str"] == name and info["family"].split(" ")[1].strip("()") in name
    assert "pitch" in inspect_lib.format_note(info)
    with pytest.raises(CacheError, match="same instrument"):
        inspect_lib.find_note(c, name[:-3] + "001")
    files = write_overview(c, tmp_path)
    assert [f.name for f in files] == ["class_balance.png", "waveforms_by_family.png", "waveforms_by_source.png",
                                       "pitch_by_family.png"]
    assert all(f.stat().st_size > 10_000 for f in files)
    assert plot_note(c, row, name, tmp_path / "note.png").stat().st_size > 10_000


def test_inspect_works_with_only_pooled(corpus: Path, tmp_path: Path) -> None:
    build_cache(corpus / "nsynth-test", tmp_path, BuildConfig(), progress=False)
    assert list(inspect_lib.describe(tmp_path / "test.zarr")["features"]) == ["pooled"]
    assert len(write_overview(open_cache(tmp_path / "test.zarr"), tmp_path / "fig")) == 4
    report = audit([tmp_path / "test.zarr"])
    assert report.caches[0].audio_feature is None and "silence, clipping and noise" in report.caches[0].not_checked[0]


def test_clean_cache_audits_clean(clean: Path) -> None:
    report = audit([clean / "train.zarr", clean / "test.zarr"])
    assert report.problem_count() == 0, report.text()
    assert "total: 0 problem(s)" in report.text()


def test_audit_finds_every_planted_problem(planted: tuple[Path, dict[str, str]], clean: Path) -> None:
    cache, plan = planted
    report = audit([clean / "train.zarr", cache / "valid.zarr"])
    valid = report.caches[1]
    assert [s["note"] for s in valid.silent] == [plan["silent"]]
    assert [s["note"] for s in valid.clipped] == [plan["clipped"]]
    assert [sorted(g) for g in valid.duplicates] == [sorted([plan["dup_a"], plan["dup_b"]])]
    assert [(p["note"], p["pitch"]) for p in valid.pitch_out_of_range] == [(plan["pitch"], 9)]
    assert [leak["name"] for leak in report.leaks] == [plan["leak"].rsplit("-", 2)[0]]
    assert report.problem_count() == 1 + 1 + 1 + 1 + 1  # one finding per group of identical notes
    text = report.text()
    assert plan["silent"] in text and "instruments in more than one split: 1" in text
    assert json.loads(json.dumps(report.to_dict()))["problems"] == 5


def test_audit_finds_nan(corpus: Path, tmp_path: Path) -> None:
    """The readers refuse NaN audio, so NaN can only get into a cache afterwards: plant it in the
    one float feature (int16 audio cannot hold it), with the checksum to match."""
    build_cache(corpus / "nsynth-test.tfrecord", tmp_path / "cache", BuildConfig(features=("pooled", "framed")),
                progress=False)
    path = tmp_path / "cache" / "test.zarr"
    group = zarr.open_group(path, mode="r+")
    pooled = np.asarray(group["pooled"][...])
    pooled[4, 100] = np.nan
    group["pooled"][...] = pooled
    attrs = group.attrs["nsynth"]
    attrs["features"]["pooled"]["checksums"] = [cache_format.checksum(pooled)]  # type: ignore[index]
    group.attrs["nsynth"] = attrs
    report = audit([path])
    assert {n["feature"] for n in report.caches[0].non_finite} == {"pooled"}
    assert len({n["note"] for n in report.caches[0].non_finite}) == 1


def test_export_round_trip(clean: Path, tmp_path: Path) -> None:
    out = export_hdf5(clean / "test.zarr", tmp_path / "test.h5")
    group = zarr.open_group(clean / "test.zarr", mode="r")
    with h5py.File(out, "r") as h5:
        assert json.loads(h5.attrs["nsynth"]) == dict(group.attrs["nsynth"])
        assert h5.attrs["split"] == "test" and h5.attrs["notes"] == 30
        for name in ("pooled", "framed", "family", "source", "pitch", "velocity", "instrument", "note", "qualities"):
            np.testing.assert_array_equal(h5[name][...], group[name][...], err_msg=name)
            assert h5[name].dtype == group[name].dtype
        assert h5["framed"].dtype == np.int16 and h5["framed"].attrs["scale"] == 1 / 32768
        assert h5["pooled"].attrs["scale"] == 1.0
        assert h5["pooled"].compression == "gzip" and h5["pooled"].chunks == (30, 2048)
        assert [s.decode() for s in h5["note_str"][...]] == group["note_str"][...].tolist()
    assert not list(tmp_path.glob(".*.tmp"))


def test_missing_cache_errors(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="no cache here"):
        inspect_lib.describe(tmp_path / "x.zarr")
    with pytest.raises(CacheError, match="no cache here"):
        export_hdf5(tmp_path / "x.zarr", tmp_path / "x.h5")


def test_export_progress_ends_at_its_total(clean: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nsynth_prep import progress

    bars: list[progress.Progress] = []

    class Recorded(progress.Progress):
        def __init__(self, total: int, desc: str, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(total, desc, **kwargs)
            self.total, self.unit, self.counted = total, kwargs.get("unit"), 0
            bars.append(self)

        def update(self, n: int = 1) -> None:
            self.counted += n
            super().update(n)

    monkeypatch.setattr(progress, "Progress", Recorded)
    export_hdf5(clean / "train.zarr", tmp_path / "train.h5", progress=False)
    (bar,) = bars
    # pooled (float32) + framed (int16) + the numeric labels, byte for byte (it once stopped at 149 of
    # 165 MiB: whole MiB were counted)
    raw = 60 * 2048 * 4 + 60 * 100 * 160 * 2 + 60 * (1 + 1 + 2 + 2 + 2 + 4 + 10)
    assert bar.unit == "B" and bar.total == raw and bar.counted == raw  # type: ignore[attr-defined]


def test_export_refuses_to_overwrite(clean: Path, tmp_path: Path) -> None:
    from nsynth_prep.errors import ConfigError

    out = export_hdf5(clean / "test.zarr", tmp_path / "test.h5")
    before = out.read_bytes()
    with pytest.raises(ConfigError, match=r"test\.h5: already exists; pass --overwrite to replace it"):
        export_hdf5(clean / "train.zarr", out)
    assert out.read_bytes() == before
    export_hdf5(clean / "train.zarr", out, overwrite=True)
    with h5py.File(out, "r") as h5:
        assert h5.attrs["split"] == "train"
    with pytest.raises(ConfigError, match="is a folder"):
        export_hdf5(clean / "train.zarr", tmp_path)


def test_time_axis_reads_the_features_own_parameters() -> None:
    from nsynth_prep.display.notes import time_axis
    from nsynth_prep.features import Framed, Pooled

    t, label = time_axis(Pooled(length=1000, kernel=10, stride=5), 4)
    np.testing.assert_allclose(t, [5 / 16000, 10 / 16000, 15 / 16000, 20 / 16000])  # window centres
    assert label == "time (s); pooled: 10-sample means"
    t, label = time_axis(Framed(frames=2, frame_length=3), 6)
    np.testing.assert_allclose(t, np.arange(6) / 16000)
    assert label == "time (s)"
    assert time_axis("pooled", 2048)[0][1] == (25 + 12.5) / 16000  # a name: that feature's default spec
