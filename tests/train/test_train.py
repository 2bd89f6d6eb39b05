"""The trainer: models, the chunk stream, metrics, checkpoints, resume, bad input."""

from __future__ import annotations

import json
import logging
import math
import pickle
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from nsynth_prep.builder.pipeline import BuildConfig, build_cache
from nsynth_prep.cache.format import CacheError
from nsynth_prep.errors import ConfigError, RunError
from nsynth_train import checkpoint
from nsynth_train.data import ChunkStream, batches, loader, to_float
from nsynth_train.evaluate import evaluate_run
from nsynth_train.loop import TrainConfig, train
from nsynth_train.metrics import confusion_matrix, summarize
from nsynth_train.models import SamePool1d, build_model, count_parameters
from nsynth_train.tasks import get_task


@pytest.fixture(scope="module")
def caches(caches_of: Callable[..., Path]) -> Path:
    return caches_of("pooled", "framed")


def _cnn_params(classes: int) -> int:
    """Parameters the reference CNN implies: convs 'valid', pools 'same' (ceil), dense 64-32-C."""
    length = math.ceil((math.ceil((2048 - 2) / 3) - 4) / 5) - 4  # 132 steps after conv3
    convs = (1 * 3 * 32 + 32) + (32 * 5 * 64 + 64) + (64 * 5 * 128 + 128)
    return convs + (128 * length * 64 + 64) + (64 * 32 + 32) + (32 * classes + classes)


def _lstm_params(classes: int, directions: int) -> int:
    """Two LSTM layers, hidden 128 (PyTorch keeps two bias vectors per gate), last step -> linear."""
    h = 128
    layer1 = directions * (4 * h * (160 + h) + 8 * h)
    layer2 = directions * (4 * h * (directions * h + h) + 8 * h)
    return layer1 + layer2 + (directions * h * classes + classes)


@pytest.mark.parametrize(("name", "expected"), [
    ("cnn", _cnn_params(10)), ("cnn-reg", _cnn_params(10)), ("lstm", _lstm_params(10, 1)),
    ("blstm", _lstm_params(10, 2)),
])
def test_parameter_counts_match_the_reference_architectures(name: str, expected: int) -> None:
    model = build_model(name, 10)
    assert count_parameters(model) == expected
    x = torch.zeros(2, 2048) if name.startswith("cnn") else torch.zeros(2, 100, 160)
    assert model(x).shape == (2, 10)
    assert count_parameters(build_model(name, 3)) == (_cnn_params(3) if name.startswith("cnn") else
                                                      _lstm_params(3, 2 if name == "blstm" else 1))


def test_same_pooling_matches_keras() -> None:
    # 12 values, pool 5, 'same': 3 windows, padding 1 left / 2 right, padding left out of the mean.
    x = torch.arange(12.0).reshape(1, 1, 12)
    np.testing.assert_allclose(SamePool1d(5)(x).flatten().numpy(), [1.5, 6.0, 10.0])
    np.testing.assert_allclose(SamePool1d(3)(torch.arange(6.0).reshape(1, 1, 6)).flatten().numpy(), [1.0, 4.0])


def test_tasks_map_nsynth_ids() -> None:
    family = get_task("family")
    assert family.num_classes == 10 and "synth_lead" not in family.class_names
    np.testing.assert_array_equal(family.classes_of(np.array([0, 8, 9, 10, 42])), [0, 8, -1, 9, -1])
    assert get_task("source").classes_of(np.array([2, 0])).tolist() == [2, 0]
    with pytest.raises(ConfigError, match="unknown task"):
        get_task("tempo")


def test_metrics_by_hand() -> None:
    cm = confusion_matrix(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0]), 4)
    m = summarize(cm, ["a", "b", "c", "d"])
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["per_class_accuracy"] == {"a": 0.5, "b": 1.0, "c": 0.0, "d": None}
    f1_a, f1_b = 2 * 0.5 * 0.5 / 1.0, 2 * (2 / 3) * 1.0 / (2 / 3 + 1)
    assert m["macro_f1"] == pytest.approx((f1_a + f1_b + 0.0) / 3)  # d has no notes: left out


@pytest.mark.parametrize("workers", [0, 2])
def test_stream_visits_every_row_once(caches: Path, workers: int) -> None:
    stream = ChunkStream(caches / "train.zarr", "pooled", get_task("family"), batch_size=7, seed=3, buffer_chunks=1)
    family = np.asarray(__import__("zarr").open_group(caches / "train.zarr", mode="r")["family"][...])
    want = np.flatnonzero(family != 9)  # synth_lead left out of the family task
    seen = []
    for epoch in (0, 1):
        stream.set_epoch(epoch)
        got = list(batches(loader(stream, workers), 7, drop_last=False))
        assert all(len(b[1]) == 7 for b in got[:-1]) and 0 < len(got[-1][1]) <= 7
        rows = torch.cat([b[2] for b in got]).numpy()
        assert sorted(rows) == sorted(want)
        assert got[0][0].shape[1:] == (2048,)
        seen.append(rows)
    assert seen[0].tolist() != seen[1].tolist()  # reshuffled each epoch
    stream.set_epoch(0)
    again = torch.cat([b[2] for b in batches(loader(stream, workers), 7, False)]).numpy()
    if workers == 0:
        assert again.tolist() == seen[0].tolist()  # same seed and epoch, same order
    dropped = list(batches(loader(stream, workers), 7, drop_last=True))
    assert all(len(b[1]) == 7 for b in dropped) and sum(len(b[1]) for b in dropped) == len(want) // 7 * 7


def test_stream_is_a_plain_iterable_dataset(caches: Path) -> None:
    stream = ChunkStream(caches / "valid.zarr", "framed", get_task("source"), batch_size=8, shuffle=False)
    x, y, rows = next(iter(torch.utils.data.DataLoader(stream, batch_size=None)))
    assert x.shape == (8, 100, 160) and x.dtype == torch.int16 and y.dtype == torch.int64  # audio as stored
    assert to_float(x, stream.scale).dtype == torch.float32 and stream.scale == 1 / 32768
    assert rows.tolist() == list(range(8))


def _config(caches: Path, **kw) -> TrainConfig:  # type: ignore[no-untyped-def]
    return TrainConfig(**{"model": "cnn", "cache_dir": str(caches), "epochs": 2, "batch_size": 16, "device": "cpu", **kw})


def test_resume_reaches_the_same_result(caches: Path, tmp_path: Path) -> None:
    # No figures: what is compared is the weights and the metrics (the figures' tests are elsewhere).
    full = train(_config(caches, resident="no"), tmp_path / "full", progress=False, figures=False)
    train(_config(caches, resident="no", epochs=1), tmp_path / "cut", progress=False, figures=False)
    # A run of 1 epoch taken on to 2 (--resume --epochs 2) ends where the 2-epoch run does.
    resumed = train(_config(caches, resident="no"), tmp_path / "cut", resume=True, progress=False, figures=False)
    a = checkpoint.load(tmp_path / "full" / "last.pt")
    b = checkpoint.load(tmp_path / "cut" / "last.pt")
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)
    assert resumed["test"]["accuracy"] == full["test"]["accuracy"]
    assert len(b["extra"]["history"]) == 2
    with pytest.raises(RunError, match=r"needs the run.s own settings"):
        train(_config(caches, resident="no", lr=0.5), tmp_path / "cut", resume=True, progress=False)


def test_run_artifacts_and_eval(caches: Path, tmp_path: Path) -> None:
    result = train(_config(caches, model="lstm", task="source"), tmp_path / "run", progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["task"] == "source" and metrics["classes"] == ["acoustic", "electronic", "synthetic"]
    t = metrics["test"]
    assert 0 <= t["accuracy"] <= 1 and len(t["confusion_matrix"]) == 3 and sum(map(sum, t["confusion_matrix"])) == 30
    assert set(t) >= {"accuracy", "per_class_accuracy", "macro_f1", "confusion_matrix"}
    assert result["test"] == t
    lines = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,train_loss") and len(lines) == 3
    # train_notes: 60 notes in batches of 16, the lstm preset dropping the last partial batch
    assert lines[0].endswith(",train_notes") and [line.split(",")[-1] for line in lines[1:]] == ["48", "48"]
    figures = {p.name for p in (tmp_path / "run" / "figures").iterdir()}
    assert figures == {"learning_curves.png", "confusion_counts.png", "confusion_normalized.png",
                       "per_class_accuracy.png", "examples_confident.png", "examples_boundary.png", "breakdown.png"}
    valid = evaluate_run(tmp_path / "run", None, "valid", progress=False)
    assert valid["valid"]["notes"] == 30 and (tmp_path / "run" / "metrics-valid.json").exists()
    assert (tmp_path / "run" / "figures-valid" / "confusion_counts.png").exists()


def test_clear_errors(caches: Path, tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="no cache here"):
        train(_config(tmp_path / "nowhere"), tmp_path / "r1", progress=False)

def test_cache_without_the_models_feature(corpus: Path, tmp_path: Path) -> None:
    for split in ("train", "valid", "test"):
        build_cache(corpus / f"nsynth-{split}", tmp_path, BuildConfig(features=("pooled",)), progress=False)
    with pytest.raises(CacheError, match=r"no feature 'framed'.*--feature framed"):
        train(_config(tmp_path, model="lstm"), tmp_path / "run", progress=False)


def test_unknown_model_and_bad_checkpoints(caches: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown model"):
        train(_config(caches, model="transformer"), tmp_path / "r2", progress=False)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(checkpoint.CheckpointError, match="not a checkpoint"):
        evaluate_run(bad, caches, "test", progress=False)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(checkpoint.CheckpointError, match="not an nsynth checkpoint"):
        checkpoint.load(tmp_path / "foreign.pt")


class _Exploit:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (Path(__file__).parent / ".pwned",))


def test_a_strangers_checkpoint_cannot_run_code(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"format": "nsynth-checkpoint", "payload": _Exploit()}, f)
    torch.save({"format": "nsynth-checkpoint", "x": _Exploit()}, tmp_path / "evil2.pt")
    for path in (evil, tmp_path / "evil2.pt"):
        with pytest.raises(checkpoint.CheckpointError):
            checkpoint.load(path)
    assert not (Path(__file__).parent / ".pwned").exists()


def test_checkpoint_of_another_shape_is_refused(caches: Path, tmp_path: Path) -> None:
    train(_config(caches, epochs=1), tmp_path / "run", progress=False)
    state = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    state["config"] = json.dumps({**json.loads(state["config"]), "model": "lstm"})
    torch.save(state, tmp_path / "run" / "best.pt")
    with pytest.raises(checkpoint.CheckpointError, match="do not fit a lstm"):
        evaluate_run(tmp_path / "run", caches, "test", progress=False)


def test_early_stopping(caches: Path, tmp_path: Path) -> None:
    """With a learning rate too small to change anything, valid accuracy never improves after
    epoch 1, so patience 1 stops after epoch 2 of 5."""
    train(_config(caches, epochs=5, lr=1e-12, patience=1), tmp_path / "run", progress=False)
    history = checkpoint.load(tmp_path / "run" / "last.pt")["extra"]["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert checkpoint.load(tmp_path / "run" / "best.pt")["epoch"] == 1


def test_run_records_an_absolute_cache_folder(caches: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(caches.parent)
    train(_config(Path(caches.name), epochs=1), tmp_path / "run", progress=False)
    monkeypatch.chdir(tmp_path)
    assert checkpoint.load(tmp_path / "run" / "best.pt")["config"]["cache_dir"] == str(caches)
    assert evaluate_run(tmp_path / "run", None, "valid", progress=False, figures=False)["valid"]["notes"] == 30


@pytest.mark.slow
def test_resume_of_a_finished_run_trains_nothing_and_epochs_extend_it(finished_run: Path, run_caches: Path,
                                                                      tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    config = TrainConfig(model="cnn", cache_dir=str(run_caches), epochs=1, batch_size=16, device="cpu", seed=3)
    before = (run / "metrics.json").read_text()
    with caplog.at_level(logging.INFO, logger="nsynth_train"):
        again = train(config, run, resume=True, progress=False, figures=False)
    assert any(r.message.startswith(f"nothing to train: {run} has trained its 1 epochs") for r in caplog.records)
    assert again == json.loads(before) and (run / "metrics.json").read_text() == before  # nothing rewritten
    # --epochs 2: one epoch more, recorded in config.json.
    train(replace(config, epochs=2), run, resume=True, progress=False, figures=False)
    assert len(checkpoint.load(run / "last.pt")["extra"]["history"]) == 2
    info = json.loads((run / "config.json").read_text())
    assert info["config"]["epochs"] == 2 and info["resumed"][-1]["epochs"] == {"from": 1, "to": 2}
    # Other settings are refused in one readable sentence naming the options.
    with pytest.raises(RunError) as refused:
        train(replace(config, epochs=2, lr=0.5, seed=4), run, resume=True, progress=False, figures=False)
    text = str(refused.value)
    assert "--lr 0.001 (the run) vs 0.5 (now); --seed 3 (the run) vs 4 (now)" in text and "{" not in text


@pytest.mark.slow
def test_init_starts_from_another_runs_weights(finished_run: Path, run_caches: Path, tmp_path: Path) -> None:
    from nsynth_prep.errors import ConfigError
    from nsynth_train.init_weights import load_init
    from nsynth_train.models import build_model
    from nsynth_train.tasks import get_task

    # The family run's weights into a source-task CNN: every layer but the output one (3 classes, not 10).
    model = build_model("cnn", 3)
    record = load_init(model, finished_run, "cnn", get_task("source"))
    theirs = checkpoint.load(finished_run / "best.pt")["model"]
    assert record["tensors_new"] == ["out.weight", "out.bias"] and record["task"] == "family"
    for name, tensor in model.state_dict().items():
        if not name.startswith("out."):
            torch.testing.assert_close(tensor, theirs[name], rtol=0, atol=0)
    with pytest.raises(ConfigError, match="a cnn checkpoint cannot start a lstm run"):
        load_init(build_model("lstm", 10), finished_run, "lstm", get_task("family"))
    # Through train: recorded in config.json, and the run's own settings keep the path (absolute).
    config = TrainConfig(model="cnn", task="source", cache_dir=str(run_caches), epochs=1, batch_size=16,
                         device="cpu", init=str(finished_run))
    train(config, tmp_path / "tuned", progress=False, figures=False)
    info = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert info["init"]["from"] == str((finished_run / "best.pt").resolve()) and info["init"]["tensors_loaded"] > 0
    assert info["config"]["init"] == str(finished_run.resolve())


@pytest.mark.slow
def test_figures_in_svg_and_pdf_on_request(finished_run: Path, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    result = cli("eval", str(run), "--split", "valid", "--device", "cpu", "--figure-format", "svg,png,pdf")
    assert result.exit_code == 0, result.output
    written = {p.name for p in (run / "figures-valid").iterdir()}
    for stem in ("confusion_counts", "per_class_accuracy", "examples_boundary", "breakdown"):
        assert {f"{stem}.png", f"{stem}.svg", f"{stem}.pdf"} <= written, stem
    assert (run / "figures-valid" / "breakdown.svg").read_text().lstrip().startswith("<?xml")
    assert (run / "figures-valid" / "breakdown.pdf").read_bytes()[:5] == b"%PDF-"
    bad = cli("eval", str(run), "--figure-format", "png,gif")
    assert bad.exit_code == 2 and "gif: expected one or more of png, svg, pdf" in bad.output


def test_a_both_runs_first_head_is_named_family() -> None:
    from nsynth_train.api import report

    head = {"accuracy": 0.5, "macro_f1": 0.4, "notes": 10, "per_class_accuracy": {"bass": 0.5, "brass": 0.5}}
    result = {"split": "test", "model": "cnn", "task": "both", "epoch": 1, "test": head,
              "source_head": {**head, "per_class_accuracy": {"acoustic": 0.5}},
              "consistency": {"pairs": [], "fraction_in_train": 1.0}}
    lines = report(result, Path("run")).splitlines()
    assert lines[1].startswith("  family head: accuracy 50.00%") and lines[3].startswith("  source head: accuracy")


def test_figure_formats_are_checked_in_one_place() -> None:
    from nsynth_train import plots
    from nsynth_train.vocabulary import figure_formats_of

    assert figure_formats_of(None) == ("png",)
    assert figure_formats_of(" SVG, png,svg ") == ("svg", "png")  # each once, in order
    assert figure_formats_of(("pdf",)) == ("pdf",)
    for bad in ("png,gif", ",", ()):
        with pytest.raises(ValueError, match="expected one or more of png, svg, pdf"):
            figure_formats_of(bad)
    with pytest.raises(ConfigError, match="figure format gif"), plots.figure_formats(("gif",)):
        pass
