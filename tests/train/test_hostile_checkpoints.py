"""Crafted checkpoints: a few KB that would hang or exhaust memory when walked, JSON nested past
the recursion limit, class lists that are not the task's; each one line, at once."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import torch
from click.testing import Result

from nsynth_prep.errors import CheckpointError
from nsynth_train import checkpoint, resume_state
from nsynth_train.config import TrainConfig
from nsynth_train.predict import Predictor


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail with TimeoutError after ``seconds`` instead of hanging (before the fix these ran for ever)."""
    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def shared_list(levels: int) -> list[Any]:
    """A list holding the same list twice, ``levels`` deep: 2**levels paths to walk, a few bytes to store."""
    a: list[Any] = []
    for _ in range(levels):
        a = [a, a]
    return a


def crafted(finished_run: Path, tmp_path: Path, name: str, change: Callable[[dict[str, Any]], None]) -> Path:
    """The finished run's best.pt with ``change`` made to its raw state, saved as ``name``."""
    state = torch.load(finished_run / "best.pt", weights_only=True)
    change(state)
    path = tmp_path / name
    torch.save(state, path)
    return path


def refused(cli: Callable[..., Result], path: Path, match: str) -> None:
    """``checkpoint.load``, ``eval``, ``predict`` and ``--resume``'s reading each refuse ``path``
    in one line naming it, within seconds."""
    with deadline(20):
        with pytest.raises(CheckpointError, match=match) as exc:
            checkpoint.load(path)
        assert str(path) in str(exc.value) and "\n" not in str(exc.value)
        with pytest.raises(CheckpointError, match=match):
            Predictor.load(path)
        with pytest.raises(CheckpointError, match=match):
            resume_state.read(path, TrainConfig(), 1)
        result = cli("eval", str(path))
        assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
        assert str(path) in result.stderr and "Traceback" not in result.stderr


def test_a_list_shared_2_to_the_90_times(finished_run: Path, tmp_path: Path, cli: Callable[..., Result]) -> None:
    """``a=[a,a]`` 90 times: 2 KB on disk, 2**90 paths for a walk that does not remember what it saw."""
    def in_model(state: dict[str, Any]) -> None:
        state["model"]["bomb"] = shared_list(90)

    def in_optimizer(state: dict[str, Any]) -> None:
        state["optimizer"]["state"] = {0: {"exp_avg": shared_list(90)}}

    for name, change in (("model.pt", in_model), ("optimizer.pt", in_optimizer)):
        path = crafted(finished_run, tmp_path, name, change)
        refused(cli, path, r"nested more than \d+ deep")


def test_shallow_but_wide_sharing_is_walked_once(finished_run: Path, tmp_path: Path) -> None:
    """25 lists of 30 references to the one below: within the depth bound, 30**25 paths, 750 values."""
    def wide(state: dict[str, Any]) -> None:
        a: list[Any] = [torch.zeros(3)]
        for _ in range(25):
            a = [a] * 30
        state["optimizer"]["state"] = {0: {"exp_avg": a}}

    path = crafted(finished_run, tmp_path, "wide.pt", wide)
    with deadline(20):
        state = checkpoint.load(path)
        assert checkpoint.non_finite(state["optimizer"]) == []


def test_a_tensor_repeating_one_stored_number(finished_run: Path, tmp_path: Path, cli: Callable[..., Result]) -> None:
    """A stride-0 view: 4 bytes stored, 2**40 elements claimed (checking it for NaN wants 1 TB)."""
    def huge(state: dict[str, Any]) -> None:
        state["model"]["conv1.weight"] = torch.zeros(1).expand(1 << 40)

    refused(cli, crafted(finished_run, tmp_path, "huge.pt", huge), "tensor that repeats the 4 bytes it stores")


def test_config_json_nested_200000_deep(finished_run: Path, tmp_path: Path, cli: Callable[..., Result]) -> None:
    def deep(state: dict[str, Any]) -> None:
        state["config"] = "[" * 200_000 + "]" * 200_000

    refused(cli, crafted(finished_run, tmp_path, "deep.pt", deep), "'config' is JSON nested too deep")


def test_a_class_list_one_short_of_the_tasks(finished_run: Path, tmp_path: Path, cli: Callable[..., Result]) -> None:
    """The family task's ids and names less the last, with weights that fit them: predict used to
    name 9 classes for a 10-class task; another task's name or renamed classes are refused too."""
    def short(state: dict[str, Any]) -> None:
        task = json.loads(state["task"])
        task["class_ids"], task["class_names"] = task["class_ids"][:-1], task["class_names"][:-1]
        state["task"] = json.dumps(task)
        for key in ("out.weight", "out.bias"):
            state["model"][key] = state["model"][key][:-1].clone()

    refused(cli, crafted(finished_run, tmp_path, "short.pt", short), "family task has 9 classes")

    def renamed(state: dict[str, Any]) -> None:
        task = json.loads(state["task"])
        task["class_names"] = task["class_names"][::-1]
        state["task"] = json.dumps(task)

    refused(cli, crafted(finished_run, tmp_path, "renamed.pt", renamed), "other class ids or names")

    def unknown(state: dict[str, Any]) -> None:
        state["task"] = json.dumps({**json.loads(state["task"]), "name": "tempo"})

    refused(cli, crafted(finished_run, tmp_path, "unknown.pt", unknown), "task 'tempo': unknown task 'tempo'")

    def as_pitch(state: dict[str, Any]) -> None:  # pitch's classes vary, but its names are its MIDI numbers
        state["task"] = json.dumps({**json.loads(state["task"]), "name": "pitch", "column": "pitch"})

    refused(cli, crafted(finished_run, tmp_path, "as_pitch.pt", as_pitch), "pitch task has 10 classes or other")
