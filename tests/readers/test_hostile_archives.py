"""Hostile ``.jsonwav.tar.gz`` archives: only ``<top>/audio/<note>.wav`` members are a note's audio;
links and folders named like a WAV are named as what they are."""

from __future__ import annotations

import io
import json
import logging
import shutil
import tarfile
from pathlib import Path

import pytest

from nsynth_prep.errors import SourceError
from nsynth_prep.features import feature_spec
from nsynth_prep.readers.catalog import Catalog
from nsynth_prep.readers.sources import discover

SPECS = [feature_spec("pooled")]


def scan(src: Path, on_error: str, work: Path) -> Catalog:
    return discover(src)[0].scan(SPECS, on_error, work)


def _archive(corpus: Path, out: Path, replace: dict[str, tarfile.TarInfo | tuple[str, bytes]]) -> tuple[Path, list[str]]:
    """nsynth-test as an archive in which the members of the notes in ``replace`` are replaced:
    by another member (a TarInfo without data) or by a WAV under another name (name, bytes)."""
    folder = corpus / "nsynth-test"
    notes = sorted(json.loads((folder / "examples.json").read_text()))
    with tarfile.open(out, "w:gz", compresslevel=1) as tar:
        for note in notes:
            data = (folder / "audio" / f"{note}.wav").read_bytes()
            what = replace.get(note)
            if isinstance(what, tarfile.TarInfo):
                tar.addfile(what)
                continue
            info = tarfile.TarInfo(what[0] if what else f"nsynth-test/audio/{note}.wav")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        text = (folder / "examples.json").read_bytes()
        info = tarfile.TarInfo("nsynth-test/examples.json")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    return out, notes


@pytest.mark.parametrize("name", ["nsynth-test/{note}.wav", "nsynth-test/other/{note}.wav", "{note}.wav",
                                  "nsynth-test/audio/sub/{note}.wav", "x/y/audio/{note}.wav"])
def test_wav_outside_the_audio_folder_is_not_a_notes_audio(corpus: Path, tmp_path: Path, name: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    notes = sorted(json.loads((corpus / "nsynth-test" / "examples.json").read_text()))
    note = notes[3]
    archive, _ = _archive(corpus, tmp_path / "nsynth-test.jsonwav.tar.gz", {note: (name.format(note=note), b"")})
    with pytest.raises(SourceError, match=rf"WAV missing for note {note}"):
        scan(archive, "fail", tmp_path / "w1")
    with caplog.at_level(logging.WARNING):
        cat = scan(archive, "skip", tmp_path / "w2")
    assert [s["note"] for s in cat.skipped] == [note] and len(cat.labels) == len(notes) - 1
    assert "1 WAV member(s) outside <top>/audio/ left out" in caplog.text


def test_another_top_folder_and_a_leading_dot_are_fine(corpus: Path, tmp_path: Path) -> None:
    notes = sorted(json.loads((corpus / "nsynth-test" / "examples.json").read_text()))
    archive, _ = _archive(corpus, tmp_path / "nsynth-test.jsonwav.tar.gz",
                          {notes[0]: (f"./nsynth-test/audio/{notes[0]}.wav", b""),
                           notes[1]: (f"renamed/audio/{notes[1]}.wav", b"")})
    cat = scan(archive, "fail", tmp_path / "w")
    assert len(cat.labels) == len(notes) and cat.skipped == []


def _member(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(("kind", "said"), [(tarfile.SYMTYPE, "a symlink"), (tarfile.LNKTYPE, "a hard link"),
                                            (tarfile.DIRTYPE, "a folder")])
def test_link_or_folder_member_named_like_a_wav(corpus: Path, tmp_path: Path, kind: bytes, said: str) -> None:
    notes = sorted(json.loads((corpus / "nsynth-test" / "examples.json").read_text()))
    note = notes[5]
    name = f"nsynth-test/audio/{note}.wav"
    archive, _ = _archive(corpus, tmp_path / "nsynth-test.jsonwav.tar.gz",
                          {note: _member(name, kind, f"nsynth-test/audio/{notes[0]}.wav")})
    with pytest.raises(SourceError) as exc:
        scan(archive, "fail", tmp_path / "w1")
    assert str(exc.value) == f"{archive}:{name}: not a regular file ({said})"
    cat = scan(archive, "skip", tmp_path / "w2")
    assert cat.skipped == [{"note": note, "reason": f"{archive}:{name}: not a regular file ({said})"}]
    assert len(cat.labels) == len(notes) - 1


def test_a_spool_of_another_member_rule_is_not_resumed(corpus: Path, tmp_path: Path) -> None:
    """A spool whose manifest lacks the member rule (an older nsynth's, which counted every WAV
    member) is started over, not resumed with blocks counted another way."""
    archive = tmp_path / "nsynth-test.jsonwav.tar.gz"
    shutil.copy(corpus / "nsynth-test.jsonwav.tar.gz", archive)
    scan(archive, "fail", tmp_path / "w")
    manifest = tmp_path / "w" / "spool" / "manifest.json"
    old = json.loads(manifest.read_text())
    assert old.pop("members") == "<top>/audio/<note>.wav"
    manifest.write_text(json.dumps(old))
    (tmp_path / "w" / "spool" / "block-00000.json").write_text(json.dumps({"names": [], "skipped": []}))
    cat = scan(archive, "fail", tmp_path / "w")  # resumed, the tampered block would lose every note
    assert len(cat.labels) == len(json.loads((corpus / "nsynth-test" / "examples.json").read_text()))
