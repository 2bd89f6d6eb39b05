"""verify's progress bar: one count per chunk of every feature, also for a feature whose array
cannot be opened (its chunks are counted, not read), and nothing drawn unless asked."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from nsynth_prep import progress
from nsynth_prep.cache.verify import verify_cache


def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str, bool, list[int]]]:
    bars: list[tuple[int, str, bool, list[int]]] = []

    class Recorded(progress.Progress):
        def __init__(self, total: int, desc: str, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(total, desc, **kwargs)
            bars.append((total, desc, kwargs.get("enabled", True), []))

        def update(self, n: int = 1) -> None:
            bars[-1][3].append(n)
            super().update(n)

    monkeypatch.setattr("nsynth_prep.cache.verify.Progress", Recorded)
    return bars


def test_verify_counts_every_chunk(caches_of: Callable[..., Path], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    bars = recorded(monkeypatch)
    path = caches_of("pooled", "framed") / "train.zarr"  # 60 notes: one chunk of each
    assert verify_cache(path, progress=True) == []
    assert [(total, desc, enabled, sum(n)) for total, desc, enabled, n in bars] == [(2, "verify train", True, 2)]
    copy = tmp_path / "train.zarr"
    shutil.copytree(path, copy)
    (copy / "framed" / "zarr.json").unlink()  # framed cannot be opened: its chunk is counted, not read
    bars.clear()
    problems = verify_cache(copy)
    assert problems == ["feature framed: array missing (framed/zarr.json not found)"]
    assert [(total, enabled, sum(n)) for total, _, enabled, n in bars] == [(2, False, 2)]
