"""Shared test data: a small synthetic NSynth corpus in all three formats, its caches and one
finished run, made once per session; the command line in this process; the ``slow`` marker."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import zarr

from nsynth_prep.corpus.synth import write_corpus

if TYPE_CHECKING:
    from click.testing import Result

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


@pytest.fixture(scope="session")
def train_in_chunks_of(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``train_in_chunks_of(pooled=8)``: the session corpus's train split (60 notes) built with
    those features in chunks of that many rows (the format's own sizes would make one chunk of
    each), once per session for each choice; returns its ``train.zarr`` (read-only for the tests)."""
    from nsynth_prep.builder.pipeline import BuildConfig, build_cache
    from nsynth_prep.cache.format import open_cache
    from nsynth_prep.features import FEATURES

    built: dict[tuple[tuple[str, int], ...], Path] = {}

    def train(**chunk_rows: int) -> Path:
        key = tuple(sorted(chunk_rows.items()))
        if key not in built:
            out = tmp_path_factory.mktemp("chunks-" + "-".join(f"{f}{n}" for f, n in key))
            with pytest.MonkeyPatch.context() as mp:
                for feature, rows in key:
                    mp.setattr(FEATURES[feature], "chunk_rows", rows)
                build_cache(corpus / "nsynth-train", out, BuildConfig(features=tuple(chunk_rows)), progress=False)
            features = open_cache(out / "train.zarr").meta.features
            assert all(features[f].chunk_rows == n for f, n in key)
            built[key] = out / "train.zarr"
        return built[key]

    return train


@pytest.fixture
def edit_attrs() -> Callable[..., None]:
    """A function that rewrites keys of a cache's raw ``attrs['nsynth']``, as a hand edit or a
    damaged zarr.json would (``None`` removes a key)."""

    def edit(path: Path, **changes: Any) -> None:
        group = zarr.open_group(path, mode="r+")
        attrs = {**group.attrs["nsynth"], **changes}  # type: ignore[dict-item]
        group.attrs["nsynth"] = {k: v for k, v in attrs.items() if v is not None}

    return edit


@pytest.fixture(scope="session")
def run_caches(caches_of: Callable[..., Path]) -> Path:
    """The caches that the training tests share (read-only): pooled, the CNN's feature, and
    trimmed, mel-cnn's (the same set as tests/train/test_mel_cnn_and_options.py's: built once)."""
    return caches_of("pooled", "trimmed")


@pytest.fixture(scope="session")
def finished_run(run_caches: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run: the CNN on the family task, 1 epoch of batch 16 on the CPU, seed 3, on
    ``run_caches``, without figures. Read-only: a test that writes into it copies it first
    (``shutil.copytree(finished_run, tmp_path / "run")``)."""
    from nsynth_train.loop import TrainConfig, train

    run = tmp_path_factory.mktemp("finished") / "run"
    config = TrainConfig(model="cnn", cache_dir=str(run_caches), epochs=1, batch_size=16, device="cpu", seed=3)
    train(config, run, progress=False, figures=False)
    return run


@pytest.fixture
def no_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trainings and evaluations that ``nsynth_train.api`` starts (``cli("train", ...)``,
    ``cli("demo", ...)``, ``eval_run``) leave the figures out: about 4 s each, for tests of
    anything else (the figures' own tests are in tests/display and tests/test_cli.py)."""
    from functools import partial

    from nsynth_train import api

    monkeypatch.setattr(api, "train_run", partial(api.train_run, figures=False))
    monkeypatch.setattr(api, "evaluate_run", partial(api.evaluate_run, figures=False))


# --- the command line in this process ------------------------------------------------------------
_OUR_LOGGERS = ("nsynth", "nsynth_prep", "nsynth_train")


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Any:
    """``cli.main`` sets our loggers' levels (``-q``: WARNING, ``-v``: DEBUG) and may add a root
    handler (``logging.basicConfig``): an in-process command (:func:`cli`) must leave the next
    test the logging it found."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    levels = {name: logging.getLogger(name).level for name in (*_OUR_LOGGERS, "")}
    yield
    for handler in root.handlers:  # basicConfig's stream handler (pytest's own are removed by pytest)
        if type(handler) is logging.StreamHandler and handler not in handlers:
            root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def cli() -> Callable[..., Result]:
    """``cli(*args)``: ``nsynth <args>`` in this process with click's CliRunner (no interpreter
    to start, no imports to redo: seconds sooner than a subprocess). The result has
    ``exit_code`` (``sys.exit``'s status; 2 for a usage error), ``stdout`` and ``stderr``.

    An exception the command line does not turn into an exit status (a bug: the real command
    prints its traceback) is raised here, so that "no traceback" holds as it does for a
    subprocess. Log records go to pytest's capture, not to ``stderr`` (as they would in a
    subprocess): check them with ``caplog``. Signals, kills and torchrun need real processes."""
    from click.testing import CliRunner

    from cli import main

    def run(*args: str | Path) -> Result:
        result = CliRunner().invoke(main, [str(a) for a in args])
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return run


# --- markers ------------------------------------------------------------------------------------
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Benchmarks are slow too: ``-m "not slow"`` (``make test-fast``) leaves them out."""
    for item in items:
        if item.get_closest_marker("bench") and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
