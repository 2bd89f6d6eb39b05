"""Two notes with one ``note`` id (NSynth's ids are unique) are refused like a note given twice:
the later one, naming both, in examples.json (folder, archive) and in TFRecords; verify reports
a cache holding such rows."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nsynth_prep.corpus.synth import tf_features
from nsynth_prep.errors import SourceError
from nsynth_prep.features import feature_spec
from nsynth_prep.readers.catalog import Catalog
from nsynth_prep.readers.sources import discover
from nsynth_prep.readers.tfrecord import encode_example, frame_record
from nsynth_prep.readers.wav import read_pcm16

SPECS = [feature_spec("pooled")]


def scan(src: Path, on_error: str, work: Path, workers: int = 1) -> Catalog:
    return discover(src)[0].scan(SPECS, on_error, work, workers=workers)


def _same_id(corpus: Path, tmp_path: Path) -> tuple[Path, str, str, int]:
    """nsynth-test whose 4th note (file order) has the 2nd note's id."""
    src = tmp_path / "nsynth-test"
    shutil.copytree(corpus / "nsynth-test", src)
    entries: dict[str, Any] = json.loads((src / "examples.json").read_text())
    first, later = list(entries)[1], list(entries)[3]
    entries[later]["note"] = entries[first]["note"]
    (src / "examples.json").write_text(json.dumps(entries))
    return src, first, later, entries[first]["note"]


def _targz(folder: Path, out: Path) -> Path:
    with tarfile.open(out, "w:gz", compresslevel=1) as tar:
        for path in [*sorted((folder / "audio").iterdir()), folder / "examples.json"]:
            data = path.read_bytes()
            info = tarfile.TarInfo(f"nsynth-test/{path.relative_to(folder)}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


@pytest.mark.parametrize("fmt", ["jsonwav", "targz"])
def test_two_notes_with_one_id_in_examples_json(corpus: Path, tmp_path: Path, fmt: str) -> None:
    folder, first, later, note_id = _same_id(corpus, tmp_path / "f")
    src = folder if fmt == "jsonwav" else _targz(folder, tmp_path / "nsynth-test.jsonwav.tar.gz")
    with pytest.raises(SourceError) as exc:
        scan(src, "fail", tmp_path / "w1")
    assert f"examples.json: notes {first} and {later} have the same note id {note_id}" in str(exc.value)
    cat = scan(src, "skip", tmp_path / "w2")
    assert [s["note"] for s in cat.skipped] == [later] and first in set(cat.labels.note_str)
    assert len(np.unique(cat.labels.note)) == len(cat.labels)


@pytest.mark.parametrize("workers", [1, 2])
def test_two_records_with_one_id(corpus: Path, tmp_path: Path, workers: int) -> None:
    entries = json.loads((corpus / "nsynth-test" / "examples.json").read_text())
    names = sorted(entries)[:4]
    records = []
    for k in names:
        entry = dict(entries[k], note=entries[names[0]]["note"]) if k == names[2] else entries[k]
        audio = read_pcm16((corpus / "nsynth-test" / "audio" / f"{k}.wav").read_bytes(), k)
        records.append(frame_record(encode_example(tf_features(entry, audio))))
    path = tmp_path / "nsynth-test.tfrecord"
    path.write_bytes(b"".join(records))
    with pytest.raises(SourceError) as exc:
        scan(path, "fail", tmp_path / "w", workers)
    assert str(exc.value) == (f"{path}: notes {names[0]} and {names[2]} have the same note id "
                              f"{entries[names[0]]['note']} (record 2; first at record 0)")
    cat = scan(path, "skip", tmp_path / "w", workers)
    assert sorted(cat.labels.note_str) == [names[0], names[1], names[3]]
    assert [s["note"] for s in cat.skipped] == [names[2]]
