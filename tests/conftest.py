"""Shared test data: a small synthetic NSynth corpus in all three formats, made once per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zarr

from nsynth_prep.synth import write_corpus

NOTES = {"train": 60, "valid": 30, "test": 30}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """nsynth-<split>/ folders, .jsonwav.tar.gz archives and .tfrecord files of the same notes."""
    out = tmp_path_factory.mktemp("corpus")
    write_corpus(out, NOTES, ("jsonwav", "targz", "tfrecord"), seed=0, progress=False)
    return out


@pytest.fixture
def edit_attrs() -> Callable[..., None]:
    """A function that rewrites keys of a cache's raw ``attrs['nsynth']``, as a hand edit or a
    damaged zarr.json would (``None`` removes a key)."""

    def edit(path: Path, **changes: Any) -> None:
        group = zarr.open_group(path, mode="r+")
        attrs = {**group.attrs["nsynth"], **changes}  # type: ignore[dict-item]
        group.attrs["nsynth"] = {k: v for k, v in attrs.items() if v is not None}

    return edit
