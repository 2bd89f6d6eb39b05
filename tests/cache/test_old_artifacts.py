"""Artifacts written before a reorganisation stay readable: a cache and a run folder made by an
earlier revision (tests/data/old-artifacts, see its README) are opened, verified and evaluated
by today's code, which must score the same as the revision that trained the model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nsynth_prep import open_cache, verify_cache
from nsynth_train import eval_run

OLD = Path(__file__).resolve().parents[1] / "data" / "old-artifacts"


@pytest.fixture
def old(tmp_path: Path) -> Path:
    """A writable copy (eval writes metrics and takes the run folder's lock)."""
    shutil.copytree(OLD, tmp_path / "old")
    return tmp_path / "old"


def test_an_old_cache_opens_and_verifies(old: Path) -> None:
    cache = open_cache(old / "cache" / "test.zarr")
    assert len(cache) == cache.meta.notes == 6 and cache.meta.complete
    assert set(cache.meta.features) == {"trimmed"}
    assert verify_cache(old / "cache" / "test.zarr") == []
    assert np.asarray(cache.group["family"]).shape == (6,)


def test_an_old_run_is_evaluated_to_the_same_metrics(old: Path, tmp_path: Path) -> None:
    before = json.loads((old / "run" / "metrics.json").read_text())["test"]
    result = eval_run(old / "run", cache_dir=old / "cache", split="test", out=tmp_path / "eval", device="cpu",
                      progress=False)
    after = result["test"]
    assert after["notes"] == before["notes"] == 6
    assert after["accuracy"] == pytest.approx(before["accuracy"])
    assert after["macro_f1"] == pytest.approx(before["macro_f1"])
    assert after["confusion_matrix"] == before["confusion_matrix"]
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["test"]["accuracy"] == after["accuracy"]
