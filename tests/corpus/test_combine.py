"""prep combine: a rendered-like and a synthetic corpus into one, instruments renumbered so none
collide and splits stay instrument-disjoint, every WAV the source's, the renaming recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hand_corpus import write_hand_corpus

from nsynth_prep.corpus.combine import combine_corpora
from nsynth_prep.corpus.synth import write_corpus
from nsynth_prep.errors import ConfigError


def test_two_corpora_become_one(tmp_path: Path, cli: Callable) -> None:
    write_hand_corpus(tmp_path / "a")  # 72 / 36 / 36 notes, keyboard and guitar acoustic 000-007
    write_corpus(tmp_path / "b", {"train": 24, "valid": 12, "test": 12}, seed=1, progress=False)
    r = cli("prep", "combine", tmp_path / "a", tmp_path / "b", tmp_path / "ab")
    assert r.exit_code == 0, r.output
    examples = {s: json.loads((tmp_path / "ab" / f"nsynth-{s}" / "examples.json").read_text())
                for s in ("train", "valid", "test")}
    sources = {s: {**json.loads((tmp_path / "a" / f"nsynth-{s}" / "examples.json").read_text()),
                   **json.loads((tmp_path / "b" / f"nsynth-{s}" / "examples.json").read_text())}
               for s in ("train", "valid", "test")}
    assert {s: len(e) for s, e in examples.items()} == {s: len(e) for s, e in sources.items()}
    # One number and one name per instrument, none shared between splits.
    instruments = {s: {(e["instrument"], e["instrument_str"]) for e in es.values()} for s, es in examples.items()}
    assert not (instruments["train"] & instruments["valid"]) and not (instruments["train"] & instruments["test"])
    ids = [i for s in instruments.values() for i, _ in s]
    assert len(ids) == len(set(ids)) and len({n for s in instruments.values() for _, n in s}) == len(ids)
    record = json.loads((tmp_path / "ab" / "combined.json").read_text())
    for split, moves in record["renamed"].items():
        for m in moves:  # every note's audio is its source's, bytes for bytes, under its new name
            source = Path(m["source"]) / f"nsynth-{split}" / "audio" / f"{m['from']}.wav"
            assert (tmp_path / "ab" / f"nsynth-{split}" / "audio" / f"{m['to']}.wav").read_bytes() == source.read_bytes()
            old, new = sources[split][m["from"]], examples[split][m["to"]]
            assert {k: new[k] for k in ("pitch", "velocity", "qualities", "instrument_family")} == \
                {k: old[k] for k in ("pitch", "velocity", "qualities", "instrument_family")}
    assert len({n["note"] for es in examples.values() for n in es.values()}) == sum(map(len, examples.values()))


def test_combine_refuses(tmp_path: Path) -> None:
    write_hand_corpus(tmp_path / "a")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ConfigError, match="not empty"):
        combine_corpora([tmp_path / "a"], tmp_path / "full")
    with pytest.raises(ConfigError, match=r"no nsynth-<split>/examples\.json here"):
        combine_corpora([tmp_path / "a", tmp_path / "full"], tmp_path / "new")
