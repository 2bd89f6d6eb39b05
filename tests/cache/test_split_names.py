"""A cache holds the split it records, and rows of distinct notes: one renamed to another split's name (``valid.zarr`` moved to
``test.zarr``) is refused by every reader and reported by verify, instead of being scored as that
split; a cache under a name of the user's own (``mycache.zarr``) opens as before."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from nsynth_prep.cache import format as cache
from nsynth_prep.cache.verify import verify_cache
from nsynth_prep.errors import CacheError


@pytest.fixture
def renamed(run_caches: Path, tmp_path: Path) -> Path:
    """A cache folder whose test.zarr is the valid split's cache (and train.zarr the real one)."""
    out = tmp_path / "caches"
    out.mkdir()
    shutil.copytree(run_caches / "valid.zarr", out / "test.zarr")
    shutil.copytree(run_caches / "train.zarr", out / "train.zarr")
    return out


def test_open_cache_refuses_a_cache_renamed_to_another_split(renamed: Path) -> None:
    path = cache.cache_path(renamed, "test")
    with pytest.raises(CacheError) as exc:
        cache.open_cache(path, ("pooled",))
    text = str(exc.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: records split 'valid', but is opened as split 'test'"), text


def test_verify_reports_a_cache_renamed_to_another_split(renamed: Path) -> None:
    path = renamed / "test.zarr"
    assert verify_cache(path) == [cache.split_problem(path, cache.open_cache(path, split="valid").meta)]
    assert "records split 'valid', but is opened as split 'test'" in verify_cache(path)[0]
    assert verify_cache(renamed / "train.zarr") == []


def test_an_explicit_split_is_checked_whatever_the_name(run_caches: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mycache.zarr"
    shutil.copytree(run_caches / "valid.zarr", mine)
    assert cache.open_cache(mine).split == "valid"  # a name of the user's own says nothing: accepted
    assert verify_cache(mine) == []
    with pytest.raises(CacheError, match="records split 'valid', but is opened as split 'test'"):
        cache.open_cache(mine, split="test")
    assert len(verify_cache(mine, split="test")) == 1


def test_eval_refuses_to_score_a_renamed_cache_as_test(renamed: Path, finished_run: Path, tmp_path: Path,
                                                       cli: Callable[..., Result]) -> None:
    result = cli("eval", finished_run, "--cache", renamed, "--out", tmp_path / "scores")
    assert result.exit_code == 1, result.output
    assert "records split 'valid', but is opened as split 'test'" in result.stderr
    assert "Traceback" not in result.output


def test_verify_reports_duplicate_note_ids(run_caches: Path, tmp_path: Path,
                                           edit_attrs: Callable[..., None]) -> None:
    """Rows with one ``note`` id (a hand-edited label array with a matching checksum) are listed."""
    import zarr

    path = tmp_path / "valid.zarr"
    shutil.copytree(run_caches / "valid.zarr", path)
    arr = zarr.open_group(path, mode="r+")["note"]
    assert isinstance(arr, zarr.Array)
    ids = cache.read(arr)
    ids[5] = ids[2]
    arr[...] = ids
    sums = dict(cache.open_cache(path).meta.label_checksums, note=cache.checksum(ids))
    edit_attrs(path, label_checksums=sums)
    assert verify_cache(path) == [f"note: 1 duplicate note ids, e.g. row 5 = {ids[2]}"]
