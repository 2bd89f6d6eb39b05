"""Figures read at a glance: titles name model, task and split; waveforms as envelope and zoom
on one scale; "confident" means confident; no mostly blank figure; no empty panel slots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from nsynth_prep.builder.pipeline import BuildConfig, build_cache
from nsynth_prep.cache.format import Cache, open_cache, read
from nsynth_prep.display.notes import pitch_figure, waveform_figure
from nsynth_prep.display.waveform import envelope, zoom_span
from nsynth_train import plots
from nsynth_train.metrics import confusion_matrix, summarize
from nsynth_train.tasks import get_task

SR = 16_000


@pytest.fixture(scope="module")
def valid(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Cache:
    out = tmp_path_factory.mktemp("cache")
    build_cache(corpus / "nsynth-valid", out, BuildConfig(features=("pooled", "framed")), progress=False)
    return open_cache(out / "valid.zarr")


def _texts(fig: Figure) -> str:
    """Every piece of text a figure shows."""
    parts = [fig._suptitle.get_text() if fig._suptitle else ""]
    for ax in fig.axes:
        parts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel(), *(t.get_text() for t in ax.texts)]
        if ax.get_legend():
            parts += [t.get_text() for t in ax.get_legend().get_texts()]
    return "\n".join(parts)


def test_envelope_covers_whole_periods() -> None:
    t = np.arange(SR) / SR
    wave = np.sin(2 * np.pi * 55 * t).astype(np.float32)  # 55 Hz: 291 samples a period
    _, lo, hi = envelope(wave, bins=400, window=SR // 55 + 1)
    np.testing.assert_allclose(hi, 1, atol=0.01)
    np.testing.assert_allclose(lo, -1, atol=0.01)
    _, lo, hi = envelope(wave, bins=400)  # 40-sample bins show pieces of cycles: stripes
    assert hi.min() < 0.5


def test_zoom_shows_a_few_periods_at_the_loudest_point() -> None:
    t = np.arange(SR) / SR
    loudness = np.exp(-((t - 0.6) ** 2) / 0.01)
    wave = (loudness * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    span = zoom_span(t, wave, pitch=69)  # A4: 4 periods = 145 samples
    assert abs((span.stop - span.start) - 4 * SR / 440) <= 2
    assert abs(t[span.start] - 0.6) < 0.02


def test_confident_means_the_predicted_class_is_probable() -> None:
    y = np.array([0, 0, 0, 1, 1, 2])
    probs = np.array([[0.90, 0.05, 0.05],   # right, confident
                      [0.03, 0.95, 0.02],   # wrong, more confident: shown first, framed red
                      [0.30, 0.35, 0.35],   # right by its class's p, but not confident
                      [0.30, 0.40, 0.30],
                      [0.25, 0.30, 0.45],   # class 1: no prediction reaches 0.5
                      [0.00, 0.01, 0.99]])
    grid = plots.pick_examples(probs, y, "confident", per_class=3)
    assert grid.tolist() == [[1, 0, -1], [-1, -1, -1], [5, -1, -1]]
    boundary = plots.pick_examples(probs, y, "boundary", per_class=2)
    assert boundary[0].tolist() == [2, 0] and boundary[1].tolist() == [3, 4]


def _scored(valid: Cache, probs_of: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    task = get_task("family")
    classes = task.classes_of(read(valid.array("family")))
    rows = np.flatnonzero(classes >= 0)
    y = classes[rows]
    probs = np.full((len(y), task.num_classes), 0.8 / (task.num_classes - 1), np.float32)
    if probs_of == "one class":  # predicts bass for every note, never confidently
        probs[:, 0] = 0.2
    else:  # right and confident for even notes, confidently wrong for odd ones
        wrong = (y + 1) % task.num_classes
        pred = np.where(np.arange(len(y)) % 2 == 0, y, wrong)
        probs[:] = 0.1 / (task.num_classes - 1)
        probs[np.arange(len(y)), pred] = 0.9
    return probs, y, rows


def _write(valid: Cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, probs_of: str,
           split: str) -> dict[str, Figure]:
    figures: dict[str, Figure] = {}
    monkeypatch.setattr(plots, "save", lambda fig, path: figures.__setitem__(path.name, fig))
    task = get_task("family")
    probs, y, rows = _scored(valid, probs_of)
    cm = confusion_matrix(y, probs.argmax(1), task.num_classes)
    history = [{"epoch": e, "train_loss": 2.0 / e, "train_accuracy": 0.1 * e, "valid_loss": 2.1 / e,
                "valid_accuracy": acc, "seconds": 1.0, "notes_per_s": 60.0}
               for e, acc in ((1, 0.2), (2, 0.5), (3, 0.4))]
    plots.write_all(tmp_path, history, cm, task, split, summarize(cm, task.class_names), probs, y, rows, valid,
                    model="cnn", best_epoch=2)
    return figures


def test_every_title_names_model_task_and_split(valid: Cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = _write(valid, tmp_path, monkeypatch, "mixed", "valid")
    assert set(figures) == {"learning_curves.png", "confusion_counts.png", "confusion_normalized.png",
                            "per_class_accuracy.png", "examples_confident.png", "examples_boundary.png"}
    for name, fig in figures.items():
        text = _texts(fig)
        assert "cnn" in text and "family task" in text and "valid split" in text, name
    curves = figures["learning_curves.png"]
    for ax in curves.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
    assert "selected checkpoint (epoch 2)" in _texts(curves) and "best valid: 50.0 %" in _texts(curves)
    assert "checkpoint of epoch 2" in _texts(figures["confusion_counts.png"])
    assert "valid split" not in _texts(_write(valid, tmp_path, monkeypatch, "mixed", "test")["confusion_counts.png"])


def test_example_waveforms_share_a_scale_and_frame_wrong_predictions(valid: Cache, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    fig = _write(valid, tmp_path, monkeypatch, "mixed", "test")["examples_confident.png"]
    assert len({ax.get_ylim() for ax in fig.axes if ax.axison}) == 1
    titles = [ax.get_title() for ax in fig.axes if "predicted" in ax.get_title()]
    wrong = [ax for ax in fig.axes if "wrong: predicted" in ax.get_title()]
    assert 0 < len(wrong) < len(titles)
    for ax in wrong:
        assert all(s.get_edgecolor()[:3] == (224 / 255, 0, 0) for s in ax.spines.values())
    assert all("p = 0.90" in t for t in titles)


def test_a_model_that_predicts_one_class_gives_no_blank_figure(valid: Cache, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    figures = _write(valid, tmp_path, monkeypatch, "one class", "test")
    fig = figures["examples_confident.png"]
    text = _texts(fig)
    assert text.count("no confident prediction") == 10 and "highest: p = 0.200, predicted bass" in text
    assert fig.get_figheight() < 5  # ten one-line rows, not ten empty rows of panels
    boundary = figures["examples_boundary.png"]  # every note of the split is near the boundary
    _, y, _ = _scored(valid, "one class")
    shown = sum(min(3, int(n)) for n in np.bincount(y, minlength=10))
    assert sum(1 for ax in boundary.axes if ax.axison) == 2 * shown  # envelope and zoom of each


def test_inspect_figures(valid: Cache) -> None:
    labels = valid.labels()
    fig = waveform_figure(valid, labels, "family")
    envelopes = [ax for ax in fig.axes if ax.get_title().startswith(tuple(valid.meta.families))]
    assert envelopes and len({ax.get_ylim() for ax in envelopes}) == 1  # one amplitude scale
    assert "envelope" in fig._suptitle.get_text()
    fig = pitch_figure(labels, list(valid.meta.families))
    present = len(np.unique(labels.family))
    assert len(fig.axes) == present and all(ax.axison for ax in fig.axes)  # no empty slot
    fig.canvas.draw()
    for ax in fig.axes:  # tick labels on every panel
        assert [t.get_text() for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]


def test_nothing_chooses_a_backend_or_imports_pyplot() -> None:
    """A notebook keeps its own backend: importing every nsynth module and drawing a figure
    leaves the backend as the user set it (here through MPLBACKEND) and never loads pyplot."""
    code = """
import importlib, io, json, pkgutil, sys
import nsynth_prep, nsynth_train
names = ["cli"] + [m.name for p in (nsynth_prep, nsynth_train)
                   for m in pkgutil.walk_packages(p.__path__, p.__name__ + ".")]
for name in names:
    importlib.import_module(name)
from nsynth_prep.display.training import learning_curves_figure
history = [{"epoch": e, "train_loss": 1.0, "train_accuracy": 0.5, "valid_loss": 1.0, "valid_accuracy": 0.5}
           for e in (1, 2)]
learning_curves_figure(history, "cnn, family task", "test", 2, 0.1).savefig(io.BytesIO(), format="png")
pyplot = "matplotlib.pyplot" in sys.modules  # before get_backend(), which may load pyplot to resolve one
import matplotlib
print(json.dumps({"modules": len(names), "pyplot": pyplot, "backend": matplotlib.get_backend()}))
"""
    env = {**os.environ, "MPLBACKEND": "svg"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    result = json.loads(out)
    assert result["modules"] > 50 and result["pyplot"] is False and result["backend"] == "svg", result
