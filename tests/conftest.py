"""Shared test data: a small synthetic NSynth corpus in all three formats, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from nsynth_prep.synth import write_corpus

NOTES = {"train": 60, "valid": 30, "test": 30}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """nsynth-<split>/ folders, .jsonwav.tar.gz archives and .tfrecord files of the same notes."""
    out = tmp_path_factory.mktemp("corpus")
    write_corpus(out, NOTES, ("jsonwav", "targz", "tfrecord"), seed=0, progress=False)
    return out
