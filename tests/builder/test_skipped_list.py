"""A build that skips many notes keeps its zarr.json small: the attrs list the first 20 skipped
notes and their count, the whole list is stored beside them (``skipped/``, checked by verify),
and inspect and the build's report still give every note. Caches written before, with the whole
list in the attrs, read as they did."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import zarr

from nsynth_prep.builder.pipeline import BuildConfig, build_cache
from nsynth_prep.cache import format as cache
from nsynth_prep.cache.skipped import skipped_notes
from nsynth_prep.cache.verify import verify_cache
from nsynth_prep.tools.inspect import describe


def _build_skipping(corpus: Path, tmp_path: Path, missing: int) -> tuple[Path, list[str], list[dict[str, str]]]:
    """A cache of nsynth-test with the WAVs of its first ``missing`` notes removed, built with skip."""
    src = tmp_path / "nsynth-test"
    shutil.copytree(corpus / "nsynth-test", src)
    gone = sorted(json.loads((src / "examples.json").read_text()))[:missing]
    for note in gone:
        (src / "audio" / f"{note}.wav").unlink()
    [summary] = build_cache(src, tmp_path / "cache", BuildConfig(features=("pooled",), on_error="skip"),
                            progress=False)
    return tmp_path / "cache" / "test.zarr", gone, summary.skipped


def test_many_skipped_notes_are_stored_beside_the_attrs(corpus: Path, tmp_path: Path) -> None:
    path, gone, reported = _build_skipping(corpus, tmp_path, 25)
    attrs = json.loads((path / "zarr.json").read_text())["attributes"]["nsynth"]["build"]
    assert len(attrs["skipped"]) == 20 and attrs["skipped_count"] == 25
    assert sorted(s["note"] for s in reported) == gone  # the build's report: every note
    c = cache.open_cache(path)
    assert [s.note for s in c.meta.build.skipped] == [s["note"] for s in reported[:20]]
    assert [s.note for s in skipped_notes(c)] == [s["note"] for s in reported]
    assert sorted(s["note"] for s in describe(path)["skipped"]) == gone
    assert all("WAV missing" in s.reason for s in skipped_notes(c))
    assert verify_cache(path) == []
    notes = zarr.open_group(path, mode="r+")["skipped/reason"]
    assert isinstance(notes, zarr.Array)
    notes[3] = "edited"
    assert verify_cache(path) == ["skipped: differs from the checksum recorded at build time"]
    shutil.rmtree(path / "skipped")
    assert verify_cache(path) == ["skipped: the table of skipped notes is missing or unreadable"]


def test_a_few_skipped_notes_stay_in_the_attrs(corpus: Path, tmp_path: Path) -> None:
    path, gone, _ = _build_skipping(corpus, tmp_path, 3)
    attrs = json.loads((path / "zarr.json").read_text())["attributes"]["nsynth"]["build"]
    assert sorted(s["note"] for s in attrs["skipped"]) == gone and attrs["skipped_count"] == 3
    assert "skipped_checksum" not in attrs and not (path / "skipped").exists()
    assert verify_cache(path) == []


def test_a_cache_with_the_whole_list_in_its_attrs_reads_as_before(corpus: Path, tmp_path: Path,
                                                                  edit_attrs: Callable[..., None]) -> None:
    """As an older nsynth wrote it: every skipped note in ``build.skipped``, no count, no table."""
    path, gone, reported = _build_skipping(corpus, tmp_path, 25)
    build = json.loads((path / "zarr.json").read_text())["attributes"]["nsynth"]["build"]
    build["skipped"] = reported
    del build["skipped_count"], build["skipped_checksum"]
    edit_attrs(path, build=build)
    shutil.rmtree(path / "skipped")
    c = cache.open_cache(path)
    assert c.meta.build.skipped_count == 25 and len(skipped_notes(c)) == 25
    assert sorted(s["note"] for s in describe(path)["skipped"]) == gone
    assert verify_cache(path) == []
