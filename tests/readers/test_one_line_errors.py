"""Sources that used to end in a traceback end in one line naming the file and the note: ``audio``
that is a file, not a folder; an integer of 5,000 digits in examples.json (past Python's
int-string conversion limit, where ``json`` raises ValueError for the whole file)."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from nsynth_prep.errors import SourceError
from nsynth_prep.features import feature_spec
from nsynth_prep.readers.catalog import Catalog
from nsynth_prep.readers.sources import discover

SPECS = [feature_spec("pooled")]
HUGE = "9" * 5000


def scan(src: Path, on_error: str, work: Path) -> Catalog:
    return discover(src)[0].scan(SPECS, on_error, work)


def test_audio_that_is_a_file(corpus: Path, tmp_path: Path, cli: Callable[..., Result]) -> None:
    src = tmp_path / "nsynth-test"
    shutil.copytree(corpus / "nsynth-test", src)
    shutil.rmtree(src / "audio")
    (src / "audio").write_text("not a folder")
    with pytest.raises(SourceError, match=r"audio: not a folder; a split folder holds examples.json and audio/"):
        scan(src, "skip", tmp_path / "w")
    result = cli("prep", "build-cache", src, "--cache", tmp_path / "cache")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {src / 'audio'}: not a folder; a split folder holds examples.json and audio/"


def _with_huge(folder: Path, field: str) -> tuple[str, bytes]:
    """examples.json of ``folder`` with a 5,000-digit integer as ``field`` (a quality flag for
    ``qualities``) of its third note."""
    entries: dict[str, Any] = json.loads((folder / "examples.json").read_text())
    note = sorted(entries)[2]
    if field == "qualities":
        entries[note]["qualities"][4] = 7777
    else:
        entries[note][field] = 7777
    return note, json.dumps(entries).replace("7777", HUGE).encode()


@pytest.mark.parametrize(("fmt", "field", "message"), [
    ("jsonwav", "pitch", r"has pitch <an integer of 5,000 digits> \(expected 0\.\.127\)"),
    ("jsonwav", "note", r"has note <an integer of 5,000 digits> \(expected 0\.\.2147483647\)"),
    ("jsonwav", "sample_rate", r"has sample_rate <an integer of 5,000 digits>; NSynth is 16000 Hz"),
    ("jsonwav", "qualities", r"has qualities \[0, 0, 0, 0, <an integer of 5,000 digits>.*expected a list of 10 flags"),
    ("targz", "instrument", r"has instrument <an integer of 5,000 digits> \(expected 0\.\.32767\)"),
])
def test_integer_of_5000_digits_names_the_note_and_field(corpus: Path, tmp_path: Path, fmt: str, field: str,
                                                         message: str) -> None:
    src = tmp_path / "nsynth-test"
    shutil.copytree(corpus / "nsynth-test", src)
    note, text = _with_huge(src, field)
    (src / "examples.json").write_bytes(text)
    if fmt == "targz":
        archive = tmp_path / "nsynth-test.jsonwav.tar.gz"
        with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
            for path in [*sorted((src / "audio").iterdir()), src / "examples.json"]:
                info = tarfile.TarInfo(f"nsynth-test/{path.relative_to(src)}")
                info.size = path.stat().st_size
                tar.addfile(info, io.BytesIO(path.read_bytes()))
        src = archive
    with pytest.raises(SourceError) as exc:
        scan(src, "fail", tmp_path / "w1")
    text_of = str(exc.value)
    assert "\n" not in text_of and len(text_of) < 300
    assert f"examples.json: note '{note}' " in text_of
    assert pytest.importorskip("re").search(message, text_of), text_of
    cat = scan(src, "skip", tmp_path / "w2")
    assert [s["note"] for s in cat.skipped] == [note] and note not in set(cat.labels.note_str)
