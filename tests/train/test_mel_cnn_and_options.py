"""The log-mel front end, mel-cnn, the ``both`` task and the training options."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from nsynth_prep.errors import ConfigError
from nsynth_train.batch_size import fitting_batch, small_corpus_warning
from nsynth_train.frontend import HOP, N_FFT, SAMPLE_RATE, LogMel, log_mel_numpy, mel_filterbank, mel_to_hz
from nsynth_train.loop import TrainConfig, train
from nsynth_train.models import build_model, count_parameters
from nsynth_train.options import augment, class_weights, lr_factor
from nsynth_train.tasks import get_task
from nsynth_train.vocabulary import PRESETS, REFERENCE_PRESETS


@pytest.fixture(scope="module")
def mel_caches(caches_of: Callable[..., Path]) -> Path:
    return caches_of("pooled", "trimmed")


@pytest.mark.parametrize("length", [51_200, 25_600, 4_000, 1_500])
def test_log_mel_matches_numpy(length: int) -> None:
    rng = np.random.default_rng(length)
    t = np.arange(length) / SAMPLE_RATE
    x = np.stack([
        np.zeros(length),  # silence: the log floor, not -inf
        np.clip(rng.normal(0, 1, length), -1, 1),  # full-scale noise
        0.5 * np.sin(2 * np.pi * 440 * t),
        np.where(np.arange(length) == length // 3, 1.0, 0.0),  # one click
    ]).astype(np.float32)
    ours = LogMel()(torch.from_numpy(x)).double().numpy()
    ref = log_mel_numpy(x)
    assert ours.shape == ref.shape == (4, 64, 1 + length // HOP)
    assert np.isfinite(ours).all()
    np.testing.assert_allclose(ours, ref, atol=2e-3, rtol=1e-4)  # float32 STFT vs float64
    assert np.allclose(ours[0], np.log(1e-6))


def test_mel_filterbank_shape_and_peaks() -> None:
    fb = mel_filterbank()
    assert fb.shape == (64, N_FFT // 2 + 1) and fb.dtype == np.float32 and (fb >= 0).all()
    assert fb.max(1).min() > 0.5  # every band sees at least one bin strongly
    centres = mel_to_hz(np.linspace(2595 * np.log10(1 + 20 / 700), 2595 * np.log10(1 + 8000 / 700), 66))[1:-1]
    peaks = fb.argmax(1) * SAMPLE_RATE / N_FFT
    assert np.all(np.abs(peaks - centres) <= SAMPLE_RATE / N_FFT)  # each peaks at its centre's bin
    with pytest.raises(ValueError):
        mel_filterbank(f_max=9000)


def test_a_tone_lights_its_own_band() -> None:
    t = np.arange(25_600) / SAMPLE_RATE
    for hz in (110.0, 1000.0, 4000.0):
        mel = LogMel()(torch.from_numpy(np.sin(2 * np.pi * hz * t)[None].astype(np.float32)))
        band = int(mel[0].mean(1).argmax())
        centres = mel_to_hz(np.linspace(2595 * np.log10(1 + 20 / 700), 2595 * np.log10(1 + 8000 / 700), 66))[1:-1]
        assert abs(np.log2(centres[band] / hz)) < 0.25


def test_mel_cnn_shapes_and_parameters() -> None:
    for outputs in (10, 3, 13):
        model = build_model("mel-cnn", outputs)
        convs = 1 * 16 * 9 + 16 * 32 * 9 + 32 * 64 * 9 + 64 * 128 * 9  # no conv biases (batch norm follows)
        norms = 2 * (1 + 16 + 32 + 64 + 128)
        assert count_parameters(model) == convs + norms + 128 * 4 * outputs + outputs
        model.eval()
        assert model(torch.zeros(2, 51_200)).shape == (2, outputs)
        assert model.features(torch.zeros(2, 51_200)).shape == (2, 1, 64, 51)  # type: ignore[operator]


def test_presets_keep_every_option_off() -> None:
    for name in (*REFERENCE_PRESETS, "mel-cnn"):
        p = PRESETS[name]
        assert (p.optimizer, p.weight_decay, p.schedule, p.label_smoothing, p.balance, p.gain_db, p.shift) == \
            ("adam", 0.0, "constant", 0.0, "off", 0.0, 0.0)


@pytest.mark.parametrize(("field", "value"), [
    ("optimizer", "sgd"), ("schedule", "linear"), ("balance", "sampling"), ("weight_decay", -1.0),
    ("label_smoothing", 1.0), ("label_smoothing", float("nan")), ("shift", 0.6), ("gain_db", 100.0),
    ("gain_db", True), ("task", "tempo")])
def test_options_are_validated(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field if field != "task" else "task"):
        TrainConfig(**{field: value})  # type: ignore[arg-type]


def test_options_resolve_from_the_preset() -> None:
    c = TrainConfig(model="mel-cnn", optimizer="adamw").resolved()
    assert (c.optimizer, c.schedule, c.balance, c.feature) == ("adamw", "constant", "off", "trimmed")
    c = TrainConfig(model="cnn", schedule="cosine", label_smoothing=0.1).resolved()
    assert (c.optimizer, c.schedule, c.label_smoothing, c.gain_db) == ("adam", "cosine", 0.1, 0.0)
    assert "--schedule cosine" in c.resume_command(Path("runs/x"))


def test_lr_schedules() -> None:
    assert lr_factor("constant", 5, 10) == 1.0
    assert lr_factor("cosine", 0, 11) == 1.0 and lr_factor("cosine", 10, 11) == pytest.approx(0.0)
    assert lr_factor("cosine", 5, 11) == pytest.approx(0.5)
    one = [lr_factor("onecycle", s, 101) for s in range(101)]
    assert one[0] == pytest.approx(1 / 25) and max(one) == pytest.approx(1.0, abs=1e-3)
    assert int(np.argmax(one)) == 30 and one[-1] == pytest.approx(1e-4)


def test_class_weights_balance_the_classes() -> None:
    classes = np.array([0] * 8 + [1] * 2 + [-1] * 5)
    w = class_weights(classes, 3)
    assert w[2] == 0 and w[1] / w[0] == pytest.approx(4.0)
    assert (w[0] * 8 + w[1] * 2) / 10 == pytest.approx(1.0)  # mean weight over the notes is 1


def test_augment_gain_and_shift() -> None:
    x = torch.ones(64, 1000)
    torch.manual_seed(0)
    y = augment(x, 6.0, 0.0)
    gains = 20 * torch.log10(y[:, 0])
    assert gains.abs().max() <= 6.0 + 1e-4 and gains.std() > 1
    y = augment(x, 0.0, 0.1)
    silent = (y == 0).sum(1)
    assert silent.max() <= 100 and silent.max() > 0  # at most 10 % moved out, as silence
    z = augment(torch.arange(10.0)[None].repeat(4, 1).reshape(4, 2, 5), 0.0, 0.3)
    assert z.shape == (4, 2, 5)  # framed-shaped input is shifted along its flattened time
    assert augment(x, 0.0, 0.0) is x


def test_small_corpus_warning() -> None:
    assert small_corpus_warning(100_000, 1024, False) is None
    text = small_corpus_warning(2400, 1024, False)
    assert text is not None and "3 optimizer steps" in text and "--batch-size 32 gives 75" in text
    one = small_corpus_warning(1000, 1024, False)
    assert one is not None and "only 1 optimizer step;" in one and "--batch-size 16 gives 63" in one
    # Never a batch under 8: a corpus too small for 50 steps at 8 is told to grow.
    tiny = small_corpus_warning(100, 64, True)
    assert tiny is not None and "--batch-size 8 gives 12; more notes would help more" in tiny
    assert "needs more notes" in (small_corpus_warning(100, 8, True) or "")


def test_fitting_batch_is_the_largest_power_of_two_with_enough_steps() -> None:
    assert fitting_batch(289_205, 1024, False) == 1024  # NSynth's train split: the preset's batch
    assert fitting_batch(2400, 1024, False) == 32 and fitting_batch(2400, 128, True) == 32
    assert fitting_batch(1147, 128, True) == 16 and fitting_batch(100, 128, True) == 8
    assert fitting_batch(5, 4, True) == 4  # a batch at or under the floor is kept
    assert fitting_batch(10_000, 100, True) == 100  # enough steps already: not rounded to a power of two


@pytest.mark.slow
def test_train_takes_a_smaller_batch_on_a_small_corpus_unless_told(run_caches: Path, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    from nsynth_train import api

    with caplog.at_level(logging.INFO, logger="nsynth_train"):
        api.train_run("family", "cnn", run_caches, tmp_path / "auto", progress=False, figures=False,
                      html_report=False, epochs=1, device="cpu")
    config = json.loads((tmp_path / "auto" / "config.json").read_text())["config"]
    assert config["batch_size"] == 8  # the preset's 1024 gives 1 step on the shared caches' train split
    lines = [r.message for r in caplog.records if "not cnn's 1024" in r.message]
    assert len(lines) == 1 and lines[0].startswith("batch size 8, not cnn's 1024:")
    # Resuming with the same command takes the same batch (config.json's), and finds nothing changed.
    api.train_run("family", "cnn", run_caches, tmp_path / "auto", resume=True, progress=False, figures=False,
                  html_report=False, epochs=2, device="cpu")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="nsynth_train"):
        api.train_run("family", "cnn", run_caches, tmp_path / "told", progress=False, figures=False,
                      html_report=False, epochs=1, device="cpu", batch_size=512)
    assert json.loads((tmp_path / "told" / "config.json").read_text())["config"]["batch_size"] == 512
    assert not [r for r in caplog.records if "not cnn's" in r.message]
    assert [r for r in caplog.records if r.levelno == logging.WARNING and "--batch-size 8 gives" in r.message]


def test_both_task_end_to_end(mel_caches: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = TrainConfig(task="both", model="mel-cnn", cache_dir=str(mel_caches), epochs=2, batch_size=16)
    with caplog.at_level(logging.WARNING):
        result = train(config, tmp_path / "run", progress=False)
    assert any("optimizer steps" in r.message for r in caplog.records)  # 60 notes, batch 16: 3 steps
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics == {k: v for k, v in result.items() if k not in ("run", "figures")}
    assert len(metrics["test"]["confusion_matrix"]) == 10 and len(metrics["source_head"]["confusion_matrix"]) == 3
    assert metrics["test"]["notes"] == metrics["source_head"]["notes"]
    c = metrics["consistency"]
    assert 0 <= c["fraction_in_train"] <= 1 and sum(p["notes"] for p in c["pairs"]) == metrics["test"]["notes"]
    for head in ("family_head", "source_head"):
        names = {p.name for p in (tmp_path / "run" / "figures" / head).iterdir()}
        assert {"confusion_counts.png", "confusion_normalized.png", "examples_confident.png"} <= names
    assert (tmp_path / "run" / "figures" / "learning_curves.png").exists()
    assert get_task("both").outputs == 13


@pytest.mark.parametrize("model", ["cnn", "mel-cnn"])
def test_options_train(mel_caches: Path, tmp_path: Path, model: str) -> None:
    config = TrainConfig(task="source", model=model, cache_dir=str(mel_caches), epochs=1, batch_size=16,
                         optimizer="adamw", weight_decay=0.01, schedule="cosine", label_smoothing=0.1,
                         balance="loss", gain_db=3.0, shift=0.05)
    result = train(config, tmp_path / "run", progress=False)
    assert 0 <= result["test"]["accuracy"] <= 1


def test_reference_runs_keep_their_folder_hash_and_resume() -> None:
    c = TrainConfig(model="cnn").resolved()
    assert c.fingerprint() == TrainConfig(model="cnn", optimizer="adam", shift=0.0).resolved().fingerprint()
    assert c.fingerprint() != TrainConfig(model="cnn", shift=0.1).resolved().fingerprint()
    from dataclasses import asdict

    old = {k: v for k, v in asdict(c).items() if k not in ("optimizer", "schedule", "balance", "weight_decay",
                                                             "label_smoothing", "gain_db", "shift")}
    assert c.with_options_of(old) == asdict(c)  # a checkpoint from before the options resumes
