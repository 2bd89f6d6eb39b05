"""The figures of the new heads, drawn from hand-made metrics: what each says must be the
numbers it was given (titles name model, task and split)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from nsynth_prep.display.heads import breakdown_figure, pitch_figure, qualities_confusion_figure, qualities_figure
from nsynth_prep.display.noise import noise_figure
from nsynth_prep.display.training import Context
from nsynth_train.head_metrics import breakdown, multilabel_summary, note_counts, pitch_summary
from nsynth_train.metrics import confusion_matrix, summarize

CTX = Context("mel-cnn", "pitch", "test", 3)


def _texts(fig: Figure) -> str:
    parts = [fig._suptitle.get_text() if fig._suptitle else ""]
    for ax in fig.axes:
        parts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel(), *(t.get_text() for t in ax.texts)]
        parts += [t.get_text() for t in ax.get_xticklabels()]
        if ax.get_legend():
            parts += [t.get_text() for t in ax.get_legend().get_texts()]
    return "\n".join(parts)


def test_pitch_and_breakdown_figures_say_their_numbers() -> None:
    ids = (48, 60, 61, 72)
    y, pred = np.array([0, 1, 1, 3]), np.array([0, 2, 3, 1])
    cm = confusion_matrix(y, pred, 4)
    metrics = summarize(cm, [str(i) for i in ids])
    metrics.update(pitch_summary(y, pred, ids, np.array([4, 4, 3, 3]), ("a", "b", "c", "guitar", "keyboard")))
    metrics.update(breakdown(note_counts(y, np.eye(4)[pred], False), np.array(ids)[y], np.array([25, 25, 127, 127]),
                             False))
    text = _texts(pitch_figure(cm, ids, metrics, CTX))
    assert "mel-cnn, pitch task, checkpoint of epoch 3" in text and "test split (4 notes)" in text
    assert "exact 25.0 %, within +-1 50.0 %, octave errors 50.0 %" in text
    text = _texts(breakdown_figure(metrics, CTX))
    assert "C4-B4 (60-71)\n2 notes" in text and "127\n2 notes" in text and "overall 25.0 %" in text


def test_qualities_figures_say_their_numbers() -> None:
    flags = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0]])
    probs = np.array([[0.9, 0.1, 0.2], [0.6, 0.4, 0.1], [0.7, 0.3, 0.0], [0.1, 0.8, 0.3]])
    m = multilabel_summary(flags, probs, ("bright", "dark", "reverb"))
    ctx = Context("cnn", "qualities", "valid", None)
    text = _texts(qualities_figure(m, ctx))
    assert "mAP 91.7 %" in text and "valid split (4 notes)" in text and "cnn, qualities task" in text
    assert "83" in text.split("\n") and "no notes" in text  # bright's AP 5/6; reverb has no notes
    fig = qualities_confusion_figure(np.array(m["confusion"]), ("bright", "dark", "reverb"), ctx, 0.5)
    bright = fig.axes[0]  # true no: 1 said no, 1 said yes; true yes: both said yes
    assert bright.get_title() == "bright" and [t.get_text() for t in bright.texts] == ["1\n50 %", "1\n50 %", "0\n0 %", "2\n100 %"]
    assert fig._supxlabel is not None and fig._supxlabel.get_text() == "predicted (p >= 0.5)"


def test_noise_figure() -> None:
    rng = np.random.default_rng(0)
    text = _texts(noise_figure(rng.uniform(-0.5, 0.5, 51_200), np.ones(256), 0.98, 0.5, "brass_acoustic_046-090-050",
                               16_000, (0.25, 2.5), "test.zarr (trimmed feature)"))
    assert "Noise-like note brass_acoustic_046-090-050" in text and "flatness 0.98" in text
