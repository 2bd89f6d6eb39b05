"""Run folders: one writer at a time, never overwritten silently, config.json, stale files,
Ctrl-C, NaN, bad checkpoints and settings."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from click.testing import Result

from nsynth_prep.errors import CheckpointError, ConfigError, RunError
from nsynth_train import checkpoint, run_dir
from nsynth_train.api import default_out, eval_run
from nsynth_train.evaluate import evaluate_run
from nsynth_train.loop import Diverged, TrainConfig, train

CLI = [sys.executable, str(Path(__file__).resolve().parents[2] / "cli.py")]


@pytest.fixture
def caches(run_caches: Path) -> Path:
    """The session's caches of the training tests (read-only; see conftest)."""
    return run_caches


@pytest.fixture
def finished(finished_run: Path) -> Path:
    """The session's finished 1-epoch run (seed 3; see conftest), for tests that read it or copy it."""
    return finished_run


def _config(caches: Path, **kw) -> TrainConfig:  # type: ignore[no-untyped-def]
    return TrainConfig(**{"model": "cnn", "cache_dir": str(caches), "epochs": 1, "batch_size": 16, "device": "cpu", **kw})


def _train(config: TrainConfig, out: Path, **kw) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """:func:`train` without the figures (tested in tests/display and tests/test_cli.py)."""
    return train(config, out, progress=False, figures=False, **kw)


def _wait_for(predicate, what: str, proc: subprocess.Popen, timeout: float = 180) -> None:  # type: ignore[no-untyped-def, type-arg]
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the process ended (status {proc.returncode}) before {what}: "
                                 f"{proc.communicate()[1][-2000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _ctrl_c_default() -> None:
    """In the child before it starts: SIGINT at its default. A suite started in the background by
    a shell without job control (``(make check &)``) runs with SIGINT ignored, which children
    inherit, and Ctrl-C would then not reach the training."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_two_trainings_into_one_folder_and_ctrl_c(caches: Path, tmp_path: Path, cli: Callable[..., Result]) -> None:
    """A real process holds the folder: a second train (and an eval writing there), from this
    process, is refused; Ctrl-C stops the first with status 130 and the exact command that
    resumes it, which is then accepted."""
    run = tmp_path / "run"
    args = ["train", "--model", "cnn", "--cache", str(caches), "--epochs", "100000", "--batch-size", "16", "--device", "cpu",
            "--lr", "0.0005", "--out", str(run)]
    with subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          preexec_fn=_ctrl_c_default) as first:
        try:
            _wait_for(lambda: (run / "history.csv").exists(), "the first epoch was saved", first)
            second = cli("-q", *args)
            assert second.exit_code == 1, second.stderr
            assert f"error: run folder {run} is in use by pid {first.pid}" in second.stderr
            assert len(second.stderr.strip().splitlines()) == 1  # (cli raises what would be a traceback)
            second = cli("-q", *args, "--overwrite")  # --overwrite does not break in either
            assert second.exit_code == 1 and "in use by" in second.stderr
            evaluation = cli("-q", "eval", str(run), "--split", "valid", "--device", "cpu")
            assert evaluation.exit_code == 1 and "in use by" in evaluation.stderr
            assert not (run / "metrics-valid.json").exists()
            first.send_signal(signal.SIGINT)
            _, err = first.communicate(timeout=120)
        finally:
            first.kill()
    assert first.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    command = err.strip().splitlines()[-1].strip()
    assert command.startswith("nsynth train ") and command.endswith(f"--resume --out {run}")
    assert re.search(r"last\.pt holds epoch \d+ of 100000", err)
    # The printed command resumes that run (same settings); stop it once it has.
    with subprocess.Popen([*CLI, *shlex.split(command)[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, preexec_fn=_ctrl_c_default) as resumed:
        try:
            _wait_for(lambda: "resumed" in (run / "config.json").read_text(), "the resume started", resumed)
            resumed.send_signal(signal.SIGINT)
            _, err = resumed.communicate(timeout=120)
        finally:
            resumed.kill()
    assert resumed.returncode == 130 and "--resume" in err, err
    assert len(json.loads((run / "config.json").read_text())["resumed"]) == 1


def test_a_run_is_never_overwritten_silently(caches: Path, finished: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / "notes.txt").write_text("mine")
    before = (run / "best.pt").read_bytes()
    with pytest.raises(RunError, match=r"holds a run \(finished, test accuracy .*--resume.*--overwrite"):
        _train(_config(caches, epochs=2), run)
    assert (run / "best.pt").read_bytes() == before
    with pytest.raises(ConfigError, match="pass one of them"):
        _train(_config(caches), run, resume=True, overwrite=True)
    evaluate_run(run, None, "valid", progress=False, figures=False)
    _train(_config(caches, epochs=2, seed=1), run, overwrite=True)
    assert checkpoint.load(run / "last.pt")["epoch"] == 2
    assert not (run / "metrics-valid.json").exists()  # the old run's files went with it...
    assert (run / "notes.txt").read_text() == "mine"  # ...and nothing else
    assert json.loads((run / "config.json").read_text())["config"]["seed"] == 1
    # A folder with checkpoints but no last.pt cannot be resumed.
    (run / "last.pt").unlink()
    with pytest.raises(RunError, match=r"needs last\.pt"):
        _train(_config(caches, epochs=2, seed=1), run, resume=True)


def test_default_run_folder_depends_on_every_setting(caches: Path) -> None:
    a = default_out(_config(caches))
    assert a == default_out(_config(caches)) and a.parent == Path("runs") and a.name.startswith("family-cnn-")
    others = {default_out(_config(caches, **kw)) for kw in
              ({"epochs": 2}, {"lr": 1e-4}, {"seed": 1}, {"batch_size": 8}, {"task": "source"})}
    assert a not in others and len(others) == 5
    # The preset's value given explicitly is the same setting: the same folder.
    assert default_out(_config(caches, lr=1e-3)) == a


@pytest.mark.usefixtures("no_figures")
def test_cli_refuses_a_finished_run_and_prints_the_default_folder(caches: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  cli: Callable[..., Result]) -> None:
    monkeypatch.chdir(tmp_path)  # the default folder, runs/..., is relative to the working directory
    args = ["-q", "train", "--model", "cnn", "--cache", str(caches), "--epochs", "1", "--batch-size", "16", "--device", "cpu"]
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    folder = re.search(r"^run: (runs/family-cnn-[0-9a-f]{8})$", result.stdout, re.M)
    assert folder and (tmp_path / folder[1] / "best.pt").exists()
    result = cli(*args)
    assert result.exit_code == 1 and f"error: {folder[1]} holds a run" in result.stderr and "--overwrite" in result.stderr


@pytest.mark.usefixtures("no_figures")
def test_a_second_demo_keeps_the_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       cli: Callable[..., Result]) -> None:
    monkeypatch.chdir(tmp_path)  # the demo's data/ is relative to the working directory
    data = Path("data")
    first = cli("-q", "demo", "--notes-per-split", "40,20,20", "--epochs", "1")
    second = cli("-q", "demo", "--notes-per-split", "40,20,20", "--epochs", "1")
    assert first.exit_code == 0 and second.exit_code == 0, first.stderr + second.stderr
    runs = sorted(p.name for p in (data / "runs").iterdir())
    assert runs == ["demo-family-mel-cnn-1", "demo-family-mel-cnn-2"]
    assert "demo-family-mel-cnn-1" in first.stdout and "demo-family-mel-cnn-2" in second.stdout
    assert all((data / "runs" / r / "metrics.json").exists() for r in runs)
    third = cli("-q", "demo", "--notes-per-split", "80,20,20", "--epochs", "1")  # the corpus is made once: say so
    assert third.exit_code == 1 and "made with --notes-per-split 40,20,20; remove" in third.stderr


def test_stale_temporary_files_are_removed(caches: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "figures").mkdir(parents=True)
    stale = [run / ".last.pt.99999.tmp", run / ".best.pt.12345.tmp", run / ".history.csv.4242.tmp",
             run / ".metrics.json.7.tmp", run / "figures" / ".learning_curves.png.8.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    _train(_config(caches), run)
    assert not [p for p in stale if p.exists()]
    assert not list(run.rglob("*.tmp"))
    (run / ".metrics-valid.json.5.tmp").write_bytes(b"")  # an eval that was killed
    evaluate_run(run, None, "valid", progress=False, figures=False)
    assert not list(run.rglob("*.tmp"))


@pytest.mark.usefixtures("no_figures")
def test_config_json_records_everything(caches: Path, finished: Path, tmp_path: Path) -> None:
    run = finished
    info = json.loads((run / "config.json").read_text())
    resolved = _config(caches, seed=3).resolved()
    assert info["config"] == asdict(resolved) and info["config"]["lr"] == 1e-3  # the preset, filled in
    assert info["seed"] == 3 and info["classes"] == list(info["task"]["class_names"]) and len(info["classes"]) == 10
    assert set(info["versions"]) == {"python", "nsynth", "torch", "numpy", "zarr", "numba"}
    assert info["versions"]["torch"] == torch.__version__.split("+")[0] or info["versions"]["torch"] == torch.__version__
    assert info["feature"] == "pooled" and info["device"] == "cpu" and info["parameters"] > 1_000_000
    assert info["data"]["train"]["notes"] == 60 and info["data"]["train"]["source"].endswith("nsynth-train")
    git = info["git"]
    assert git is None or (re.fullmatch(r"[0-9a-f]{40}", git["commit"]) and isinstance(git["dirty"], bool))
    summary = eval_run(run, None, "valid", out=tmp_path, progress=False)["report"].splitlines()  # run: read-only
    assert summary[0].startswith(f"run {run}: cnn on the family task, 1 epochs of batch 16, lr 0.001, seed 3")
    assert "trained on 60 notes from" in summary[1] and "torch" in summary[1]


def test_git_commit_without_git_or_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_dir.git_commit(tmp_path) is None  # not a checkout
    monkeypatch.setenv("PATH", str(tmp_path))  # no git at all
    assert run_dir.git_commit(Path(__file__).resolve().parents[2]) is None


@pytest.mark.parametrize("options", [{"epochs": 0}, {"batch_size": 0}, {"lr": 0.0}, {"lr": -1e-3},
                                     {"lr": float("nan")}, {"epochs": -3}, {"l2": -1.0}, {"seed": -1},
                                     {"patience": -1}, {"epochs": 2.5}, {"device": "tpu"}])
def test_zero_means_zero(options: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError):
        TrainConfig(**options)


def test_none_means_the_preset() -> None:
    c = TrainConfig(model="lstm").resolved()
    assert (c.epochs, c.batch_size, c.lr, c.drop_last) == (30, 768, 3e-3, True)


@pytest.mark.parametrize(("option", "value"), [("--epochs", "0"), ("--batch-size", "0"), ("--lr", "0"),
                                               ("--lr", "-0.1"), ("--seed", "-1")])
def test_cli_refuses_non_positive_values(option: str, value: str, tmp_path: Path, cli: Callable[..., Result]) -> None:
    result = cli("train", "--cache", str(tmp_path), option, value)
    assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.stderr


def test_training_stops_when_the_loss_becomes_nan(caches: Path, tmp_path: Path) -> None:
    with pytest.raises(Diverged, match=r"training stopped in epoch 1: the loss became nan.*lower --lr"):
        _train(_config(caches, lr=1e30), tmp_path / "run")
    assert not (tmp_path / "run" / "last.pt").exists()
    # Gradients that overflow Adam's moments while the loss still looks finite.
    with pytest.raises(Diverged, match="non-finite"):
        _train(_config(caches, lr=1e3, epochs=3), tmp_path / "run2")
    for name in ("best.pt", "last.pt"):
        if (tmp_path / "run2" / name).exists():
            checkpoint.load(tmp_path / "run2" / name)  # whatever was saved is finite


def _poison(path: Path, key: str = "model") -> None:
    state = torch.load(path, weights_only=True)
    tensors = state[key] if key == "model" else state[key]["state"][0]
    name = next(iter(tensors))
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    torch.save(state, path)


def test_nan_checkpoints_are_refused(caches: Path, finished: Path, tmp_path: Path, cli: Callable[..., Result]) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    _poison(run / "best.pt")
    _poison(run / "last.pt")
    with pytest.raises(CheckpointError, match="non-finite weights"):
        evaluate_run(run, None, "test", progress=False)
    with pytest.raises(CheckpointError, match=r"non-finite weights.*cannot be scored or resumed"):
        _train(_config(caches, seed=3), run, resume=True)
    result = cli("eval", str(run), "--device", "cpu")
    assert result.exit_code == 1 and "non-finite weights" in result.stderr and "accuracy" not in result.stdout
    assert len(result.stderr.strip().splitlines()) == 1
    # NaN in the optimizer state only: eval may score the weights, resume refuses.
    run2 = tmp_path / "run2"
    shutil.copytree(finished, run2)
    _poison(run2 / "last.pt", "optimizer")
    with pytest.raises(CheckpointError, match="non-finite optimizer state"):
        _train(_config(caches, seed=3), run2, resume=True)


def test_damaged_checkpoints_are_one_line(finished: Path, tmp_path: Path, cli: Callable[..., Result]) -> None:
    good = (finished / "best.pt").read_bytes()
    cases = {"empty": b"", "garbage": os.urandom(5000), "text": b"epoch,train_loss\n1,2.3\n",
             "zip-ish": b"PK\x03\x04" + b"\0" * 200}
    for cut in (4, 100, len(good) // 2, len(good) - 10):
        cases[f"cut{cut}"] = good[:cut]
    for name, data in cases.items():
        path = tmp_path / f"{name}.pt"
        path.write_bytes(data)
        with pytest.raises(CheckpointError, match=re.escape(str(path))):
            checkpoint.load(path)
    with pytest.raises(CheckpointError, match="empty file"):
        checkpoint.load(tmp_path / "empty.pt")
    state = torch.load(finished / "best.pt", weights_only=True)
    del state["model"]
    torch.save(state, tmp_path / "nomodel.pt")
    with pytest.raises(CheckpointError, match="damaged checkpoint \\('model'"):
        checkpoint.load(tmp_path / "nomodel.pt")
    for target in (finished / "history.csv", tmp_path / "empty.pt", tmp_path / "cut100.pt"):
        result = cli("eval", str(target))  # (raises what would be a traceback)
        assert result.exit_code == 1 and result.stderr.startswith("error: ")
        assert "IndexError" not in result.stderr and "pop from empty list" not in result.stderr
    assert "not a checkpoint" in cli("eval", str(finished / "history.csv")).stderr
