"""The synthetic corpus: deterministic, NSynth's layout and split rules, family-dependent timbre."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np

from nsynth_prep.corpus.synth import parse_notes_per_split, write_corpus
from nsynth_prep.labels import FAMILIES, NOTE_STR_RE
from nsynth_prep.readers.tones import make_instruments
from nsynth_prep.readers.wav import read_pcm16


def test_same_seed_same_corpus(tmp_path: Path) -> None:
    sizes = {"train": 30, "valid": 12, "test": 12}
    write_corpus(tmp_path / "a", sizes, ("jsonwav",), seed=5, progress=False)
    write_corpus(tmp_path / "b", sizes, ("jsonwav",), seed=5, progress=False)
    write_corpus(tmp_path / "c", sizes, ("jsonwav",), seed=6, progress=False)
    a = (tmp_path / "a" / "nsynth-test" / "examples.json").read_bytes()
    assert a == (tmp_path / "b" / "nsynth-test" / "examples.json").read_bytes()
    assert a != (tmp_path / "c" / "nsynth-test" / "examples.json").read_bytes()
    for wav in (tmp_path / "a" / "nsynth-test" / "audio").iterdir():
        assert wav.read_bytes() == (tmp_path / "b" / "nsynth-test" / "audio" / wav.name).read_bytes()


def test_layout_and_split_rules(corpus: Path) -> None:
    instruments: dict[str, set[int]] = {}
    for split in ("train", "valid", "test"):
        entries = json.loads((corpus / f"nsynth-{split}" / "examples.json").read_text())
        assert all(NOTE_STR_RE.match(k) and e["note_str"] == k for k, e in entries.items())
        assert all((corpus / f"nsynth-{split}" / "audio" / f"{k}.wav").is_file() for k in entries)
        families = {e["instrument_family_str"] for e in entries.values()}
        assert ("synth_lead" in families) == (split == "train")
        instruments[split] = {e["instrument"] for e in entries.values()}
        with tarfile.open(corpus / f"nsynth-{split}.jsonwav.tar.gz") as tar:
            names = tar.getnames()
        assert f"nsynth-{split}/examples.json" in names and len(names) == len(entries) + 1
    assert not instruments["train"] & instruments["valid"] and not instruments["train"] & instruments["test"]
    assert not instruments["valid"] & instruments["test"]
    assert len({e["note"] for s in ("train", "valid", "test")
                for e in json.loads((corpus / f"nsynth-{s}" / "examples.json").read_text()).values()}) == 120


def test_timbre_depends_on_family(corpus: Path) -> None:
    """Mallets decay fast, organs sustain; flutes are darker than brass (spectral centroid)."""
    entries = json.loads((corpus / "nsynth-train" / "examples.json").read_text())

    def notes(family: str) -> list[np.ndarray]:
        return [read_pcm16((corpus / "nsynth-train" / "audio" / f"{k}.wav").read_bytes(), k).astype(float)
                for k, e in entries.items() if e["instrument_family_str"] == family]

    def tail_ratio(x: np.ndarray) -> float:  # energy in 1.5-2 s vs 0-0.5 s
        return float((x[24_000:32_000] ** 2).sum() / ((x[:8_000] ** 2).sum() + 1e-9))

    def centroid(x: np.ndarray) -> float:
        spec = np.abs(np.fft.rfft(x[:16_000]))
        return float((spec * np.arange(len(spec))).sum() / spec.sum())

    assert max(map(tail_ratio, notes("mallet"))) < 0.01 < min(map(tail_ratio, notes("organ")))
    assert np.median([centroid(x) for x in notes("brass")]) > np.median([centroid(x) for x in notes("bass")])


def test_notes_per_split_parsing_and_counts() -> None:
    assert parse_notes_per_split("100") == {"train": 100, "valid": 100, "test": 100}
    assert parse_notes_per_split("100,20,30")["test"] == 30
    insts = make_instruments({"train": 500, "valid": 80, "test": 80}, seed=0)
    assert sum(i.notes for i in insts["train"]) == 500
    assert {FAMILIES[i.family] for i in insts["train"]} == set(FAMILIES)


def test_a_described_corpus_builds_the_written_corpus_cache(corpus: Path, tmp_path: Path) -> None:
    """A corpus described (no audio written) and rendered by build-cache gives the cache of the
    same corpus written as WAVs, bit for bit (the conftest corpus: seed 0, 60/30/30 notes)."""
    import pytest
    import zarr

    from nsynth_prep.builder.pipeline import BuildConfig, build_cache
    from nsynth_prep.cache.verify import verify_cache
    from nsynth_prep.corpus.synth import write_descriptors
    from nsynth_prep.errors import SourceError

    described = write_descriptors(tmp_path / "d", {"train": 60, "valid": 30, "test": 30}, seed=0)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [
        "nsynth-test.synth.json", "nsynth-train.synth.json", "nsynth-valid.synth.json"]
    features = BuildConfig(features=("pooled", "framed", "trimmed"), workers=2)
    (a,) = build_cache(described["valid"], tmp_path / "a", features, progress=False)
    (b,) = build_cache(corpus / "nsynth-valid", tmp_path / "b", features, progress=False)
    ga, gb = zarr.open_group(a.path, mode="r"), zarr.open_group(b.path, mode="r")
    for name in ("pooled", "framed", "trimmed", "note_str", "family", "note", "qualities"):
        np.testing.assert_array_equal(ga[name][...], gb[name][...], err_msg=name)
    assert verify_cache(a.path) == [] and a.notes == 30
    assert build_cache(described["valid"], tmp_path / "a", features, progress=False)[0].built_now == []  # up to date
    described["valid"].write_text('{"seed": 0}')
    with pytest.raises(SourceError, match=r"nsynth-valid\.synth\.json: not a corpus descriptor \(KeyError"):
        build_cache(described["valid"], tmp_path / "c", features, progress=False)
