"""Shared test data: a small synthetic NSynth corpus in all three formats, made once per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zarr

from nsynth_prep.corpus.synth import write_corpus

NOTES = {"train": 60, "valid": 30, "test": 30}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """nsynth-<split>/ folders, .jsonwav.tar.gz archives and .tfrecord files of the same notes."""
    out = tmp_path_factory.mktemp("corpus")
    write_corpus(out, NOTES, ("jsonwav", "targz", "tfrecord"), seed=0, progress=False)
    return out


@pytest.fixture(scope="session")
def caches_of(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``caches_of(*features)``: a cache folder of the session corpus's three splits with those
    features, built once per session for each set of features (read-only for the tests)."""
    from nsynth_prep.builder.pipeline import BuildConfig, build_cache

    built: dict[tuple[str, ...], Path] = {}

    def caches(*features: str) -> Path:
        key = tuple(sorted(features))
        if key not in built:
            out = tmp_path_factory.mktemp("caches-" + "-".join(key))
            for split in NOTES:
                build_cache(corpus / f"nsynth-{split}", out, BuildConfig(features=key), progress=False)
            built[key] = out
        return built[key]

    return caches


@pytest.fixture
def edit_attrs() -> Callable[..., None]:
    """A function that rewrites keys of a cache's raw ``attrs['nsynth']``, as a hand edit or a
    damaged zarr.json would (``None`` removes a key)."""

    def edit(path: Path, **changes: Any) -> None:
        group = zarr.open_group(path, mode="r+")
        attrs = {**group.attrs["nsynth"], **changes}  # type: ignore[dict-item]
        group.attrs["nsynth"] = {k: v for k, v in attrs.items() if v is not None}

    return edit
