"""The command line: one real end to end (synth -> build-cache -> verify -> train -> eval, in
subprocesses, every figure drawn), the rest in this process with click's CliRunner (``cli``)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

CLI = [sys.executable, str(Path(__file__).resolve().parents[1] / "cli.py")]


def nsynth(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)
    assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
    return proc


def test_end_to_end(tmp_path: Path, cli: Callable[..., Result]) -> None:
    """The real command, as a user runs it; the refusals along the way in this process."""
    corpus, cache, run = tmp_path / "corpus", tmp_path / "cache", tmp_path / "run"
    out = nsynth("prep", "synth", str(corpus), "--notes-per-split", "80,30,30", "--format", "jsonwav",
                 "--format", "tfrecord").stdout
    assert "train 80, valid 30, test 30" in out
    assert (corpus / "nsynth-train" / "examples.json").exists() and (corpus / "nsynth-test.tfrecord").exists()
    assert cli("prep", "build-cache", str(corpus), "--cache", str(cache)).exit_code == 1  # two formats of each split
    for split in ("train", "valid"):
        nsynth("-q", "prep", "build-cache", str(corpus / f"nsynth-{split}"), "--cache", str(cache))
    out = nsynth("prep", "build-cache", str(corpus / "nsynth-test.tfrecord"), "--cache", str(cache),
                 "--exclude-families", "synth_lead").stdout
    assert "test:" in out and "30 notes" in out
    assert nsynth("prep", "verify", *(str(cache / f"{s}.zarr") for s in ("train", "valid", "test"))).stdout.count(": ok") == 3
    out = nsynth("-q", "train", "--model", "cnn", "--cache", str(cache), "--epochs", "2", "--batch-size", "32", "--out", str(run)).stdout
    assert "accuracy" in out and "metrics.json" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["model"] == "cnn" and len(metrics["classes"]) == 10
    assert (run / "best.pt").exists() and (run / "figures" / "confusion_normalized.png").exists()
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["epochs"] == 2 and config["config"]["batch_size"] == 32 and config["seed"] == 0
    assert config["command"].startswith("nsynth -q train --model cnn --cache")
    out = nsynth("-q", "eval", str(run), "--split", "valid").stdout
    assert "valid split (30 notes" in out and (run / "metrics-valid.json").exists()
    assert out.startswith(f"run {run}: cnn on the family task, 2 epochs of batch 32") and "trained on 80 notes" in out
    assert "holds a run" in cli("-q", "train", "--model", "cnn", "--cache", str(cache), "--out", str(run)).stderr


def test_errors_are_one_clear_line(tmp_path: Path, cli: Callable[..., Result]) -> None:
    # (cli raises what would be a traceback: "error:" lines only)
    result = cli("train", "--cache", str(tmp_path), "--epochs", "1")
    assert result.exit_code == 1 and "error:" in result.stderr and "no cache here" in result.stderr
    (tmp_path / "bad.pt").write_bytes(b"junk")
    result = cli("eval", str(tmp_path / "bad.pt"))
    assert result.exit_code == 1 and "not a checkpoint" in result.stderr
    result = cli("prep", "verify", str(tmp_path / "missing.zarr"))
    assert result.exit_code == 1 and "no cache here" in result.stdout
    result = cli("prep", "synth", str(tmp_path / "c"), "--notes-per-split", "1,2")
    assert result.exit_code != 0 and "TRAIN,VALID,TEST" in result.stderr


def test_help_is_fast_and_lists_commands(cli: Callable[..., Result]) -> None:
    out = nsynth("--help").stdout  # the real command: imports nothing heavy, so this one stays a process
    for command in ("prep", "train", "eval", "demo"):
        assert command in out
    assert "build-cache" in cli("prep", "--help").stdout


def test_inspect_audit_export_commands(tmp_path: Path, cli: Callable[..., Result]) -> None:
    def ok(*args: str) -> Result:
        result = cli(*args)
        assert result.exit_code == 0, result.stdout + result.stderr
        return result

    corpus, cache = tmp_path / "corpus", tmp_path / "cache"
    ok("-q", "prep", "synth", str(corpus), "--notes-per-split", "40,20,20")
    ok("-q", "prep", "build-cache", str(corpus), "--cache", str(cache), "--feature", "framed")
    out = ok("inspect", str(cache / "train.zarr"), "--plot", str(tmp_path / "fig")).stdout
    assert "train split, 40 notes" in out and out.count("figure:") == 4
    assert json.loads(ok("inspect", str(cache / "test.zarr"), "--json").stdout)["notes"] == 20
    result = cli("inspect", str(cache / "test.zarr"), "--note", "bad")
    err = result.stderr
    assert result.exit_code == 1
    assert err.startswith(f"error: {cache / 'test.zarr'}: no note 'bad'") and err.count("\n") == 1  # no stray quotes
    assert not err.rstrip().endswith(("'\"", "\"'")) and "KeyError" not in err
    caches = [str(cache / f"{s}.zarr") for s in ("train", "valid", "test")]
    assert "total: 0 problem(s)" in ok("audit", "--strict", *caches).stdout
    # The same notes built again as another split: every instrument leaks.
    ok("-q", "prep", "build-cache", str(corpus / "nsynth-test"), "--split", "valid", "--cache", str(tmp_path / "c2"))
    result = cli("audit", "--strict", str(cache / "test.zarr"), str(tmp_path / "c2" / "valid.zarr"))
    assert result.exit_code == 1 and "instruments in more than one split" in result.stdout
    assert cli("audit", str(cache / "test.zarr"), str(tmp_path / "c2" / "valid.zarr")).exit_code == 0
    out = ok("-q", "prep", "export", str(cache / "test.zarr"), str(tmp_path / "test.h5")).stdout
    assert "wrote" in out and (tmp_path / "test.h5").stat().st_size > 100_000


def test_the_cli_offers_exactly_the_library_s_names() -> None:
    """Every click.Choice of the CLI equals the registry the library checks against, and every
    TrainConfig field's option exists: the vocabulary is written once (nsynth_*/vocabulary.py)."""
    import dataclasses

    import click

    import cli
    from nsynth_prep.builder.pipeline import BuildConfig
    from nsynth_prep.corpus.layouts import FORMATS
    from nsynth_prep.errors import ConfigError
    from nsynth_prep.features import FEATURES
    from nsynth_prep.vocabulary import ON_ERROR
    from nsynth_train.config import CHOICES, OPTIONAL_CHOICES, TrainConfig
    from nsynth_train.models import PRESETS
    from nsynth_train.tasks import TASKS
    from nsynth_train.vocabulary import CLI_OPTIONS, TASK_NAMES

    def choices(command: click.Command) -> dict[str, tuple[str, ...]]:
        return {p.name: tuple(p.type.choices) for p in command.params
                if p.name and isinstance(p.type, click.Choice)}

    group = cli.main
    assert isinstance(group, click.Group)
    prep = group.commands["prep"]
    assert isinstance(prep, click.Group)
    train = group.commands["train"]
    registries = {"model": tuple(PRESETS), **CHOICES, **OPTIONAL_CHOICES}
    assert choices(train) == registries
    # --task takes a name or a comma list of heads (checked by the same vocabulary as TrainConfig):
    # the fixed tasks, and pitch, whose classes come from the train split.
    task = next(p for p in train.params if p.name == "task")
    assert set(TASK_NAMES) == {*TASKS, "pitch"} and all(task.type.convert(n, None, None) == n for n in TASK_NAMES)
    assert task.type.convert("family, pitch", None, None) == TrainConfig(task="family, pitch").task == "family,pitch"
    assert choices(prep.commands["build-cache"])["features"] == tuple(FEATURES)
    assert choices(prep.commands["build-cache"])["on_error"] == ON_ERROR
    with pytest.raises(ConfigError, match="on_error"):
        BuildConfig(on_error="ignore")
    for command in ("synth", "render"):
        assert choices(prep.commands[command])["formats"] == FORMATS
    for command in ("eval", "predict"):
        assert choices(group.commands[command])["device"] == CHOICES["device"]
    # Each TrainConfig field's option (the resume command spells them so) sets that very field.
    bound = {opt: p.name for p in train.params for opt in p.opts}
    assert {field: bound.get(option) for field, option in CLI_OPTIONS.items()} == {f: f for f in CLI_OPTIONS}
    assert set(CLI_OPTIONS) <= {f.name for f in dataclasses.fields(TrainConfig)}


def test_bad_notes_per_split_is_an_option_error(tmp_path: Path, cli: Callable[..., Result]) -> None:
    """A --notes-per-split that is not N or TRAIN,VALID,TEST is click's usage error, exit 2."""
    for command in (("prep", "synth", str(tmp_path / "c")), ("demo",)):
        result = cli(*command, "--notes-per-split", "10,abc,3")
        assert result.exit_code == 2, result.output
        assert "Invalid value for '--notes-per-split'" in result.stderr and "'10,abc,3'" in result.stderr
    assert not (tmp_path / "c").exists()


def test_resume_with_overwrite_is_an_option_error_before_torch(cli: Callable[..., Result]) -> None:
    """``train --resume --overwrite`` is refused by the option handling (exit 2), in a fraction of
    a second: the check comes before the import of torch."""
    result = nsynth("train", "--resume", "--overwrite", ok=False)
    assert result.returncode == 2 and "--resume" in result.stderr and "--overwrite" in result.stderr
    assert "error:" not in result.stderr and "Usage:" in result.stderr
    code = ("import sys; from click.testing import CliRunner; from cli import main; "
            "r = CliRunner().invoke(main, ['train', '--resume', '--overwrite']); "
            "print(r.exit_code, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout.split()
    assert out == ["2", "False"]


def test_top_level_help_lists_every_command_and_says_where_to_start(cli: Callable[..., Result]) -> None:
    """``nsynth --help``: the overview above the options names every command, predict included,
    and tells a newcomer to start with ``nsynth demo``."""
    overview = cli("--help").stdout.split("Options:")[0]
    for command in ("prep", "inspect", "audit", "train", "eval", "predict", "demo"):
        assert f"\n  {command} " in overview or f" {command} re-scores" in overview, command
    assert "Start with `nsynth demo`" in overview
