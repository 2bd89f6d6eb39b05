"""The recipe's options (nsynth_train.recipe): SpecAugment, mixup, the class-balanced draw (with
the chunk stream, the resident split and torchrun's rank shares), robustness augmentation, the
mel-cnn2 preset; each off by default and, when off, training bit for bit as without it."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nsynth_prep.errors import ConfigError
from nsynth_train.checkpoint import load
from nsynth_train.data import ChunkStream, batches, loader
from nsynth_train.loop import TrainConfig, train
from nsynth_train.mel_models import CHANNELS2
from nsynth_train.models import build_model, count_parameters
from nsynth_train.recipe import balanced_counts, mixed_cross_entropy, mixup, robust, spec_augment
from nsynth_train.splits import DeviceSplit
from nsynth_train.tasks import get_task
from nsynth_train.vocabulary import PRESET_OPTIONS, PRESETS, REFERENCE_OPTIONS

RECIPE = ("freq_mask", "time_mask", "mixup", "eq_db", "noise_snr", "pitch_shift")


def test_every_preset_keeps_the_recipe_off() -> None:
    assert set(RECIPE) <= set(PRESET_OPTIONS)
    for p in PRESETS.values():
        assert all(getattr(p, name) == 0 for name in RECIPE) and p.balance == "off"
    assert all(REFERENCE_OPTIONS[name] == 0 for name in RECIPE)


def test_spec_augment_masks_whole_bands_and_frames() -> None:
    m = torch.randn(32, 1, 64, 51) + 5  # no zeros of its own
    assert spec_augment(m, 0, 0) is m
    torch.manual_seed(1)
    a = spec_augment(m, 8, 10)
    torch.manual_seed(1)
    assert torch.equal(a, spec_augment(m, 8, 10))  # seeded
    assert a.shape == m.shape
    zero = a == 0
    rows = zero.all(-1).squeeze(1)  # (B, 64): masked mel bands
    cols = zero.all(-2).squeeze(1)  # (B, 51): masked frames
    assert torch.equal(zero.squeeze(1), rows[:, :, None] | cols[:, None, :])  # only whole bands and frames
    assert rows.sum(1).max() <= 2 * 8 and cols.sum(1).max() <= 2 * 10
    assert rows.any() and cols.any()
    assert torch.equal(a[~zero], m[~zero])
    only_time = spec_augment(m, 0, 200) == 0  # a width past the axis is clipped to it; whole frames only
    assert only_time.shape == m.shape and torch.equal(only_time, only_time.all(-2, keepdim=True).expand_as(m))


def test_spec_augment_runs_only_while_training() -> None:
    model = build_model("mel-cnn", 10)
    model.freq_mask, model.time_mask = 16, 20  # type: ignore[assignment]
    x = torch.randn(4, 51_200) * 0.1
    model.eval()
    before = model(x)
    model.freq_mask = model.time_mask = 0  # type: ignore[assignment]
    assert torch.equal(before, model(x))


def test_mixup_draws_and_loss() -> None:
    x = torch.randn(64, 100)
    torch.manual_seed(0)
    mixed, perm, lam = mixup(x, 0.3)
    torch.manual_seed(0)
    again = mixup(x, 0.3)
    assert all(torch.equal(a, b) for a, b in zip((mixed, perm, lam), again, strict=True))
    assert sorted(perm.tolist()) == list(range(64))
    assert lam.min() >= 0.5 and lam.max() <= 1 and lam.std() > 0.05
    torch.testing.assert_close(mixed, lam[:, None] * x + (1 - lam[:, None]) * x[perm])
    logits, y = torch.randn(64, 10), torch.randint(0, 10, (64,))
    ones = torch.ones(64)
    torch.testing.assert_close(mixed_cross_entropy(logits, y, perm, ones, None, 0.0), F.cross_entropy(logits, y))
    half = mixed_cross_entropy(logits, y, perm, ones / 2, None, 0.0)
    torch.testing.assert_close(half, (F.cross_entropy(logits, y) + F.cross_entropy(logits, y[perm])) / 2)


def test_balanced_draw() -> None:
    classes = np.array([0] * 9000 + [1] * 900 + [2] * 100 + [-1] * 50)
    counts = balanced_counts(classes, 3, 1)
    assert counts.dtype == np.int64 and counts.sum() == 10_000 and (counts[classes < 0] == 0).all()
    assert np.array_equal(counts, balanced_counts(classes, 3, 1))  # the same seed and epoch: the same draw
    assert not np.array_equal(counts, balanced_counts(classes, 3, 2))  # a new draw each epoch
    per_class = np.bincount(classes[classes >= 0], weights=counts[classes >= 0])
    assert np.allclose(per_class, 10_000 / 3, rtol=0.05)  # each class a third of the epoch
    assert counts[classes == 2].mean() > 25 and counts[classes == 0].mean() < 0.5
    assert balanced_counts(np.full(5, -1), 0, 0).sum() == 0


@pytest.fixture(scope="module")
def path(train_in_chunks_of: Callable[..., Path]) -> Path:
    """The train split (60 notes) with trimmed in chunks of 8 rows: 8 chunks to share out."""
    return train_in_chunks_of(trimmed=8)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_balanced_stream_uses_each_row_its_drawn_count_across_ranks(path: Path, world: int) -> None:
    task = get_task("family")
    for epoch in (1, 2):
        used: Counter[int] = Counter()
        shares = []
        for rank in range(world):
            stream = ChunkStream(path, "trimmed", task, batch_size=5, seed=4, buffer_chunks=2, balanced=True)
            stream.shard(rank, world)
            stream.set_epoch(epoch)
            got = list(batches(loader(stream), 5, drop_last=False))
            rows = torch.cat([b[2] for b in got]).numpy()
            ys = torch.cat([b[1] for b in got]).numpy()
            assert np.array_equal(ys, stream.classes[rows])
            assert len(rows) == stream.shares()[rank]  # the loop plans its steps from shares()
            shares.append(len(rows))
            used.update(rows.tolist())
        counts = balanced_counts(stream.classes, 4, epoch)
        assert dict(used) == {r: int(c) for r, c in enumerate(counts) if c}
        assert sum(shares) == len(stream) == int((stream.classes >= 0).sum())


def test_balanced_resident_split_and_off_is_the_plain_order(path: Path) -> None:
    task = get_task("family")
    cpu = torch.device("cpu")
    plain = DeviceSplit(path, "trimmed", task, cpu)
    off = torch.cat([r for _, _, r in plain.batches(7, True, 4, 1, False)])
    split = DeviceSplit(path, "trimmed", task, cpu, balanced=True)
    rows = torch.cat([r for _, _, r in split.batches(7, True, 4, 1, False)]).numpy()
    want = balanced_counts(split.classes, 4, 1)
    got = Counter(rows.tolist())
    assert {int(split.rows[i]): int(c) for i, c in enumerate(want) if c} == dict(got)
    assert torch.equal(off, torch.cat([r for _, _, r in plain.batches(7, True, 4, 1, False)]))
    assert sorted(off.tolist()) == sorted(split.rows.tolist())  # off: every row once
    valid = torch.cat([r for _, _, r in split.batches(7, False, 4, 1, False)])  # no shuffle (valid): no draw
    assert torch.equal(valid, split.rows)


def test_robust_shapes_seed_and_off() -> None:
    x = torch.randn(4, 51_200) * 0.1
    assert robust(x, 0.0, 0.0, 0.0) is x
    for shape in ((4, 51_200), (4, 100, 160)):
        xs = x[:, : int(np.prod(shape[1:]))].reshape(shape)
        torch.manual_seed(2)
        a = robust(xs, 6.0, 20.0, 1.0)
        torch.manual_seed(2)
        assert a.shape == xs.shape and torch.equal(a, robust(xs, 6.0, 20.0, 1.0))
        assert torch.isfinite(a).all() and not torch.equal(a, xs)


def test_robust_noise_eq_and_pitch() -> None:
    t = torch.arange(51_200) / 16_000
    tone = (0.5 * torch.sin(2 * torch.pi * 440 * t))[None].repeat(16, 1)
    torch.manual_seed(0)
    noisy = robust(tone, 0.0, 10.0, 0.0)
    snr = 10 * torch.log10(tone.square().mean(1) / (noisy - tone).square().mean(1))
    assert snr.min() > 10 - 0.5 and snr.max() < 40 + 0.5 and snr.std() > 2
    assert torch.equal(robust(torch.zeros(2, 1000), 0.0, 10.0, 0.0), torch.zeros(2, 1000))  # silence stays silent
    noise = torch.randn(16, 51_200)
    torch.manual_seed(0)
    eq = robust(noise, 6.0, 0.0, 0.0)
    gain = 20 * torch.log10(torch.fft.rfft(eq).abs() / torch.fft.rfft(noise).abs())
    assert gain.abs().max() <= 3 * 6.0 + 1e-3 and gain.std() > 0.5  # three bands of at most 6 dB
    torch.manual_seed(0)
    shifted = robust(tone, 0.0, 0.0, 2.0)
    peak = torch.fft.rfft(shifted).abs().argmax(1) * 16_000 / 51_200  # Hz
    semitones = 12 * torch.log2(peak / 440)
    assert semitones.abs().max() <= 2.0 + 0.05 and semitones.std() > 0.3


def test_mel_cnn2_shapes_and_parameters() -> None:
    for outputs in (10, 3):
        model = build_model("mel-cnn2", outputs)
        chans = (1, *CHANNELS2)
        convs = sum(9 * a * b + 9 * b * b for a, b in itertools.pairwise(chans))
        norms = 2 + sum(2 * 2 * c for c in CHANNELS2)
        assert count_parameters(model) == convs + norms + CHANNELS2[-1] * 4 * outputs + outputs
        model.eval()
        assert model(torch.zeros(2, 51_200)).shape == (2, outputs)
    assert PRESETS["mel-cnn2"].feature == "trimmed"


def test_recipe_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="log-mel"):
        TrainConfig(model="cnn", freq_mask=4).resolved()
    with pytest.raises(ConfigError, match="pooled"):
        TrainConfig(model="cnn", noise_snr=10.0).resolved()
    TrainConfig(model="lstm", eq_db=6.0, pitch_shift=1.0).resolved()  # framed is audio
    for field, value in (("eq_db", 41.0), ("pitch_shift", 13.0), ("mixup", -1.0), ("freq_mask", 1.5),
                         ("noise_snr", float("inf"))):
        with pytest.raises(ConfigError, match=field):
            TrainConfig(**{field: value})  # type: ignore[arg-type]
    c = TrainConfig(model="mel-cnn", mixup=0.3, freq_mask=8, balance="sample").resolved()
    assert "--mixup 0.3 --eq-db" not in c.resume_command(Path("r")) and "--freq-mask 8" in c.resume_command(Path("r"))
    assert c.fingerprint() != TrainConfig(model="mel-cnn").resolved().fingerprint()
    assert TrainConfig(model="mel-cnn", mixup=0.0).resolved().fingerprint() == \
        TrainConfig(model="mel-cnn").resolved().fingerprint()  # off: the folder of a run from before


def _weights(caches: Path, out: Path, **options: object) -> dict[str, torch.Tensor]:
    config = TrainConfig(task="family", model="mel-cnn", cache_dir=str(caches), epochs=1, batch_size=16,
                         device="cpu", seed=1, **options)  # type: ignore[arg-type]
    train(config, out, progress=False, figures=False)
    return load(out / "last.pt")["model"]


ON = {"freq_mask": 8, "time_mask": 10, "mixup": 0.3, "balance": "sample", "eq_db": 6.0, "noise_snr": 20.0,
      "pitch_shift": 1.0}


@pytest.mark.slow
def test_each_option_off_is_bit_identical_on_is_seeded(run_caches: Path, tmp_path: Path) -> None:
    base = _weights(run_caches, tmp_path / "base")
    off = _weights(run_caches, tmp_path / "off", **{k: ("off" if k == "balance" else 0) for k in ON})
    assert all(torch.equal(base[k], off[k]) for k in base)
    for name, value in ON.items():
        a = _weights(run_caches, tmp_path / f"{name}-a", **{name: value})
        b = _weights(run_caches, tmp_path / f"{name}-b", **{name: value})
        assert all(torch.equal(a[k], b[k]) for k in a), name  # seeded: the same run twice
        assert not all(torch.equal(a[k], base[k]) for k in a), name  # and it changes the training
        saved = json.loads((tmp_path / f"{name}-a" / "config.json").read_text())["config"]
        assert saved[name] == value  # recorded in the run


@pytest.mark.slow
def test_all_options_together_train_from_the_cli(run_caches: Path, tmp_path: Path,
                                                 cli: Callable[..., object]) -> None:
    result = cli("train", "--model", "mel-cnn", "--cache", run_caches, "--epochs", "1", "--batch-size", "16",
                 "--freq-mask", "8", "--time-mask", "10", "--mixup", "0.3", "--balance", "sample", "--eq-db", "6",
                 "--noise-snr", "20", "--pitch-shift", "1", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert {k: saved[k] for k in ON} == ON
    bad = cli("train", "--model", "cnn", "--cache", run_caches, "--freq-mask", "8", "--out", tmp_path / "bad")
    assert bad.exit_code != 0 and "log-mel" in bad.output and "Traceback" not in bad.output  # type: ignore[attr-defined]
