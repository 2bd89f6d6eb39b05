"""Training under torchrun: 2 gloo processes on the CPU, and the sharding they rely on.

The multi-process tests start two ranks of this file (``python3 tests/test_ddp.py train ...``,
see the end) with torchrun's variables set, or through torchrun itself. Each rank records in a
folder the cache rows of every training batch it yields and the optimizer steps it takes, so the
tests can check that every note is seen exactly once per epoch across the ranks and that the
ranks ran the same number of steps. The caches have 8-row chunks so that 60 notes are 8 chunks,
shared out unevenly between the ranks.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def small_chunks(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Caches of the session corpus with 8-row pooled chunks (60 train notes: 8 chunks)."""
    from nsynth_prep import features
    from nsynth_prep.builder.pipeline import BuildConfig, build_cache

    out = tmp_path_factory.mktemp("ddp-caches")
    mp = pytest.MonkeyPatch()
    mp.setattr(features.Pooled, "chunk_rows", 8)  # recorded in the cache; readers follow the record
    try:
        for split in ("train", "valid", "test"):
            build_cache(corpus / f"nsynth-{split}", out, BuildConfig(features=("pooled",)), progress=False)
    finally:
        mp.undo()
    return out


def _task_rows(caches: Path, split: str = "train") -> np.ndarray:
    from nsynth_prep.cache.format import cache_path, open_cache
    from nsynth_train.tasks import get_task

    task = get_task("family")
    return np.flatnonzero(task.classes_of(open_cache(cache_path(caches, split), ("pooled",)).label(task.column)) >= 0)


def _ranks(args: list[str], record: Path, stop_after: int = 0, world: int = 2,
           timeout: float = 90) -> list[subprocess.CompletedProcess[str]]:
    """Run ``nsynth <args>`` as ``world`` ranks (torchrun's variables set by hand, 127.0.0.1)."""
    port = _free_port()
    procs = []
    for rank in range(world):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "RANK": str(rank), "WORLD_SIZE": str(world),
               "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "NSYNTH_DDP_TIMEOUT": "60", "NSYNTH_TEST_RECORD": str(record),
               "NSYNTH_TEST_STOP_AFTER": str(stop_after)}
        procs.append(subprocess.Popen([sys.executable, __file__, *args], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    done = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return done


def _train_args(caches: Path, out: Path, *extra: str) -> list[str]:
    return ["-q", "train", "--model", "cnn", "--cache", str(caches), "--epochs", "2", "--batch-size", "7", "--device", "cpu",
            "--out", str(out), *extra]


def _check_epoch(record: Path, epoch: int, rows: np.ndarray) -> None:
    """Exactly once across the two ranks, the same number of optimizer steps on each."""
    seen = [np.load(record / f"rows-r{r}-e{epoch}.npy") for r in range(2)]
    assert not set(seen[0].tolist()) & set(seen[1].tolist())  # disjoint shares
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), rows)  # every note once
    steps = [json.loads((record / f"steps-r{r}-e{epoch}.json").read_text()) for r in range(2)]
    assert steps[0]["steps"] == steps[1]["steps"] >= max(s["batches"] for s in steps)
    assert steps[0]["notes"] == steps[1]["notes"] == len(rows)  # run_epoch's all-reduced count


@pytest.mark.slow  # rank processes (torchrun, DDP), each importing torch
def test_two_ranks_exactly_once_resume_and_metrics(small_chunks: Path, tmp_path: Path) -> None:
    from nsynth_train import checkpoint
    from nsynth_train.evaluate import evaluate_run

    run, record = tmp_path / "run", tmp_path / "record"
    record.mkdir()
    rows = _task_rows(small_chunks)
    # Stopped (as by Ctrl-C on rank 0) after epoch 1 is saved: rank 0 exits 130, rank 1 follows.
    first = _ranks(_train_args(small_chunks, run, "--resident", "no"), record, stop_after=1)
    assert first[0].returncode == 130, first[0].stderr
    assert "torchrun --nproc_per_node 2 --no-python nsynth train" in first[0].stderr  # how to continue
    assert first[1].returncode == 1 and "rank 0 failed" in first[1].stderr.strip().splitlines()[-1]
    _check_epoch(record, 1, rows)
    resumed = _ranks(_train_args(small_chunks, run, "--resident", "no", "--resume"), record)
    assert [p.returncode for p in resumed] == [0, 0], resumed[0].stderr + resumed[1].stderr
    assert "test split (30 notes" in resumed[0].stdout and resumed[1].stdout == ""  # rank 0 reports
    assert (record / "figures-r0").read_text() == str(run / "figures") and not (record / "figures-r1").exists()
    _check_epoch(record, 2, rows)
    shares = [[len(np.load(record / f"rows-r{r}-e{e}.npy")) for r in range(2)] for e in (1, 2)]
    assert any(-(-a // 7) != -(-b // 7) for a, b in shares)  # some rank took padding steps
    history = (run / "history.csv").read_text().splitlines()
    assert history[0].endswith(",train_notes") and [h.split(",")[-1] for h in history[1:]] == ["57", "57"]

    last = checkpoint.load(run / "last.pt")
    assert not any(k.startswith("module.") for k in last["model"])  # the plain model's weights
    assert last["extra"]["world_size"] == 2 and len(last["extra"]["history"]) == 2
    config = json.loads((run / "config.json").read_text())
    assert config["distributed"]["notes_per_step"] == 14 and len(config["resumed"]) == 1
    # The 2-rank metrics equal one process's evaluation of the same weights.
    test = json.loads((run / "metrics.json").read_text())["test"]
    alone = evaluate_run(run / "best.pt", small_chunks, "test", tmp_path / "alone", device="cpu",
                         progress=False, figures=False)["test"]
    assert (test["confusion_matrix"], test["accuracy"]) == (alone["confusion_matrix"], alone["accuracy"])
    valid = evaluate_run(run / "last.pt", small_chunks, "valid", tmp_path / "alone", device="cpu",
                         progress=False, figures=False)["valid"]
    assert last["extra"]["history"][-1]["valid_accuracy"] == valid["accuracy"]  # sharded and all-reduced

    # Resuming on another number of processes is refused (the notes per step would change).
    from nsynth_prep.errors import RunError
    from nsynth_train import resume_state
    from nsynth_train.loop import TrainConfig

    cfg = TrainConfig.from_dict(last["config"])
    with pytest.raises(RunError, match="trained on 2 processes and is resumed on 1"):
        resume_state.read(run / "last.pt", cfg, 1)


@pytest.mark.slow  # rank processes (torchrun, DDP), each importing torch
def test_batchnorm_ranks_validate_the_weights_rank_0_saves(caches_of: Callable[..., Path], tmp_path: Path) -> None:
    """mel-cnn has BatchNorm: each rank's running statistics drift from rank 0's with its own last
    forward (padding steps included), so validation must run on rank 0's buffers, the ones saved."""
    from nsynth_train import checkpoint
    from nsynth_train.evaluate import evaluate_run

    caches = caches_of("pooled", "trimmed")  # the mel-cnn tests' caches
    run, record = tmp_path / "run", tmp_path / "record"
    record.mkdir()
    args = ["-q", "train", "--cache", str(caches), "--model", "mel-cnn", "--epochs", "1", "--batch-size", "8",
            "--device", "cpu", "--resident", "yes", "--out", str(run)]
    done = _ranks(args, record)
    assert [p.returncode for p in done] == [0, 0], done[0].stderr + done[1].stderr
    last = checkpoint.load(run / "last.pt")
    epoch = last["extra"]["history"][-1]
    valid = evaluate_run(run / "last.pt", caches, "valid", tmp_path / "alone", device="cpu", progress=False,
                         figures=False)["valid"]
    assert epoch["valid_accuracy"] == valid["accuracy"]
    # The loss is continuous, so it shows other running statistics where the accuracy may not.
    from nsynth_train.config import TrainConfig
    from nsynth_train.evaluate import predict
    from nsynth_train.models import build_model
    from nsynth_train.splits import Split
    from nsynth_train.tasks import get_task

    config, task = TrainConfig.from_dict(last["config"]), get_task("family")
    model = build_model("mel-cnn", task.outputs)
    model.load_state_dict(last["model"])
    probs, y, _ = predict(model, Split(caches / "valid.zarr", config, task, torch.device("cpu"), False), None, task)
    loss = float(-np.log(probs[np.arange(len(y)), y]).mean())
    assert epoch["valid_loss"] == pytest.approx(loss, rel=1e-4)


@pytest.mark.slow  # rank processes (torchrun, DDP), each importing torch
def test_torchrun_refusal_stops_every_rank(small_chunks: Path, tmp_path: Path) -> None:
    """Rank 0 refuses a folder that holds a run: both ranks stop at once with one line each."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.csv").write_text("epoch\n1\n")
    port = _free_port()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--rdzv-backend", "c10d",
           "--rdzv-endpoint", f"127.0.0.1:{port}", "--no-python", sys.executable, __file__,
           *_train_args(small_chunks, run)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NSYNTH_DDP_TIMEOUT": "60", "NSYNTH_TEST_RECORD": str(tmp_path)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=90)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2, proc.stderr
    assert any("holds a run" in e and "--overwrite" in e for e in errors)
    assert any("rank 1 stopped: rank 0 failed" in e for e in errors)
    assert (run / "history.csv").read_text() == "epoch\n1\n" and not (run / "config.json").exists()


def test_chunk_stream_shards_cover_every_row_once(small_chunks: Path) -> None:
    from nsynth_train.data import ChunkStream
    from nsynth_train.tasks import get_task

    rows = _task_rows(small_chunks)
    for world in (2, 3):
        streams = [ChunkStream(small_chunks / "train.zarr", "pooled", get_task("family"), 5, buffer_chunks=2)
                   for _ in range(world)]
        for rank, s in enumerate(streams):
            s.shard(rank, world)
        for epoch in (1, 2):
            got = []
            for s in streams:
                s.set_epoch(epoch)
                got.append(np.concatenate([r.numpy() for _, _, r in s]))
            assert [len(g) for g in got] == streams[0].shares()  # the plan the loop steps by
            np.testing.assert_array_equal(np.sort(np.concatenate(got)), rows)


def test_resident_split_shards_cover_every_row_once(small_chunks: Path) -> None:
    from nsynth_train.splits import DeviceSplit
    from nsynth_train.tasks import get_task

    rows = _task_rows(small_chunks)
    split = DeviceSplit(small_chunks / "train.zarr", "pooled", get_task("family"), torch.device("cpu"))
    for epoch in (1, 2):
        got = [torch.cat([r for _, _, r in split.batches(7, True, 0, epoch, False, rank, 2)]).numpy()
               for rank in range(2)]
        assert [len(g) for g in got] == split.shares(2) == [29, 28]
        np.testing.assert_array_equal(np.sort(np.concatenate(got)), rows)
    # Each epoch reshuffles across the ranks: a note need not stay on the same rank.
    first = torch.cat([r for _, _, r in split.batches(7, True, 0, 1, False, 0, 2)])
    second = torch.cat([r for _, _, r in split.batches(7, True, 0, 2, False, 0, 2)])
    assert set(first.tolist()) != set(second.tolist())


def test_lockstep_plan_and_weights() -> None:
    from nsynth_train.distributed import lockstep, lockstep_sizes, step_weights

    sizes = lockstep_sizes([23, 9], 7, drop_last=False)
    assert sizes == [[7, 7, 7, 2], [7, 2, 0, 0]]
    # rank loss x n_rank * W / n_step: DDP's mean over ranks is then the mean over the step's notes
    assert step_weights(sizes, 0) == [1.0, 2 * 7 / 9, 2.0, 2.0]
    assert step_weights(sizes, 1) == [1.0, 2 * 2 / 9, 0.0, 0.0]
    assert lockstep_sizes([23, 9], 7, drop_last=True) == [[7, 7, 7], [7, 0, 0]]
    batches = [(torch.ones(7, 3), torch.zeros(7, dtype=torch.int64), torch.arange(7)),
               (torch.ones(2, 3), torch.zeros(2, dtype=torch.int64), torch.arange(7, 9))]
    steps = list(lockstep(iter(batches), [7, 2, 0, 0], lambda: batches[0]))
    assert [n for _, n in steps] == [7, 2, 0, 0] and [len(b[1]) for b, _ in steps] == [7, 2, 1, 1]
    with pytest.raises(RuntimeError, match="do not follow its plan"):
        list(lockstep(iter(batches), [7, 7], lambda: batches[0]))


def test_without_torchrun_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    from nsynth_prep.errors import ConfigError
    from nsynth_train.distributed import TORCHRUN_VARS, setup

    for name in TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)
    dist = setup("cpu")
    assert (dist.enabled, dist.rank, dist.world, dist.all_sum([2.0, 3.0])) == (False, 0, 1, [2.0, 3.0])
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ConfigError, match="not LOCAL_RANK, MASTER_ADDR, MASTER_PORT"):
        setup("cpu")


@pytest.mark.slow  # rank processes (torchrun, DDP), each importing torch
@pytest.mark.parametrize("resident", ["no", "yes"])
def test_two_ranks_share_the_class_balanced_draw(small_chunks: Path, tmp_path: Path, resident: str) -> None:
    """--balance sample under DDP: the ranks together use each note its drawn count of times."""
    from nsynth_prep.cache.format import cache_path, open_cache
    from nsynth_train.recipe import balanced_counts
    from nsynth_train.tasks import get_task

    record = tmp_path / "record"
    record.mkdir()
    done = _ranks(_train_args(small_chunks, tmp_path / "run", "--resident", resident, "--balance", "sample"), record)
    assert [p.returncode for p in done] == [0, 0], done[0].stderr + done[1].stderr
    task = get_task("family")
    classes = task.classes_of(open_cache(cache_path(small_chunks, "train"), ("pooled",)).label(task.column))
    for epoch in (1, 2):
        want = balanced_counts(classes, 0, epoch)
        if resident == "yes":  # the resident split draws over the task's rows only
            want = np.zeros(len(classes), np.int64)
            want[classes >= 0] = balanced_counts(classes[classes >= 0], 0, epoch)
        seen = np.concatenate([np.load(record / f"rows-r{r}-e{epoch}.npy") for r in range(2)])
        np.testing.assert_array_equal(np.bincount(seen, minlength=len(classes)), want)
        steps = [json.loads((record / f"steps-r{r}-e{epoch}.json").read_text()) for r in range(2)]
        assert steps[0]["steps"] == steps[1]["steps"] and steps[0]["notes"] == int(want.sum())


def _worker() -> None:
    """One rank of the tests' jobs: the nsynth command line, recording what the rank trains on.

    ``NSYNTH_TEST_RECORD``: folder for ``rows-r<rank>-e<epoch>.npy`` (the cache rows of each
    training batch) and ``steps-r<rank>-e<epoch>.json``, and ``figures-r<rank>`` where the rank
    would draw the figures (drawing them, tested elsewhere, is left out: seconds of each run).
    ``NSYNTH_TEST_STOP_AFTER=k``: Ctrl-C on rank 0 right after epoch k's history is written.
    """
    sys.path.insert(0, str(ROOT))
    import cli
    from nsynth_train import loop, plots, run_dir, splits

    record = Path(os.environ["NSYNTH_TEST_RECORD"])
    rank = os.environ.get("RANK", "0")
    stop_after = int(os.environ.get("NSYNTH_TEST_STOP_AFTER") or 0)
    batches, run_epoch, write_history = splits.Split.batches, loop.run_epoch, run_dir.write_history
    counts: dict[int, int] = {}

    def recording_batches(self: splits.Split, epoch: int, drop_last: bool):  # type: ignore[no-untyped-def]
        seen = []
        for batch in batches(self, epoch, drop_last):
            seen.append(batch[2].cpu().numpy())
            yield batch
        if self.shuffle:  # the train split
            counts[epoch] = len(seen)
            np.save(record / f"rows-r{rank}-e{epoch}.npy", np.concatenate(seen) if seen else np.zeros(0, np.int64))

    def counting_epoch(model, split, config, epoch, optimizer, *args, **kwargs):  # type: ignore[no-untyped-def]
        objective = args[4] if len(args) > 4 else kwargs.get("objective")
        before = objective.step if objective is not None else 0
        result = run_epoch(model, split, config, epoch, optimizer, *args, **kwargs)
        if optimizer is not None:
            (record / f"steps-r{rank}-e{epoch}.json").write_text(json.dumps(
                {"steps": objective.step - before, "batches": counts[epoch], "notes": result[2]}))
        return result

    def stopping_history(path: Path, history: list[dict[str, float]]) -> None:
        write_history(path, history)
        if stop_after and len(history) == stop_after:
            raise KeyboardInterrupt

    def figures_at(fig_dir: Path, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        (record / f"figures-r{rank}").write_text(str(fig_dir))

    plots.write_all = figures_at
    splits.Split.batches = recording_batches  # type: ignore[method-assign]
    loop.run_epoch = counting_epoch
    run_dir.write_history = stopping_history
    sys.argv = ["nsynth", *sys.argv[1:]]
    cli.main()


if __name__ == "__main__":
    _worker()
