"""A run folder: its lock, its files (each written atomically), and the rules for reusing one.

One process at a time writes a run folder (``<run>/.lock``, held for the whole of ``train``
and of an ``eval`` that writes there). A folder that holds a run (any of :data:`RUN_FILES`) is
never overwritten silently: ``--resume`` continues it, ``--overwrite`` replaces it. Every file
is written under a temporary name (``.<name>.<pid>.<token>.tmp``, see :mod:`nsynth_prep.storage.atomic`)
and renamed, so a killed writer leaves at most such temporary files; the next writer of the folder
removes them.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from nsynth_prep.cache.format import Cache
from nsynth_prep.errors import LockedError, RunError
from nsynth_prep.storage.atomic import atomic_path, remove_stale
from nsynth_prep.storage.lock import exclusive, holder
from nsynth_prep.storage.store import storage_errors

HISTORY_FIELDS = ("epoch", "train_loss", "train_accuracy", "valid_loss", "valid_accuracy", "seconds", "notes_per_s",
                  "train_notes")  # train_notes: notes trained on in the epoch, over all ranks
RUN_FILES = ("last.pt", "best.pt", "history.csv", "metrics.json")  # any of these: the folder holds a run
LOCK = ".lock"
CONFIG = "config.json"
RUN_FORMAT, RUN_VERSION = "nsynth-run", 1
PACKAGES = ("nsynth", "torch", "numpy", "zarr", "numba")  # versions recorded in config.json

log = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic(path: Path) -> Iterator[Path]:
    """Yield a temporary name beside ``path``; rename it to ``path`` when the block succeeds (a
    refused write is one :class:`StorageError` line naming ``path``)."""
    with storage_errors(path), atomic_path(path) as tmp:
        yield tmp


def write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    with atomic(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in h.items()} for h in history)


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock while the block runs, after removing what killed writers left."""
    out = Path(out)
    with storage_errors(out):
        out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(exclusive(out / LOCK, f"run folder {out}"))
        except LockedError:
            raise LockedError(f"run folder {out} is in use by {holder(out / LOCK)}; wait for that run to "
                              "finish or stop it, or choose another --out") from None
        for stale in remove_stale_tmp(out):
            log.info("removed %s, left by an interrupted writer", stale)
        yield


def remove_stale_tmp(out: Path) -> list[Path]:
    """Delete the temporary files killed writers left in ``out`` and its figure folders. Call
    with the folder's lock held: then no live writer owns them."""
    return [stale for folder in (out, *sorted(f for f in out.glob("figures*") if f.is_dir()))
            for stale in remove_stale(folder)]


def claim(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to train into a folder that holds a run, unless resuming it or told to replace it.

    Raises
    ------
    RunError
        ``out`` holds a run and neither ``resume`` nor ``overwrite`` is set, or ``resume`` is
        set but the run left no ``last.pt`` to continue from.
    """
    present = [name for name in RUN_FILES if (out / name).exists()]
    if overwrite:
        clear(out)
    elif present and not resume:
        raise RunError(f"{out} holds a run ({describe_files(out)}); pass --resume to continue it, "
                       "--overwrite to replace it, or choose another --out")
    elif present and resume and not (out / "last.pt").exists():
        raise RunError(f"{out}: --resume needs last.pt, which this run folder lacks (it holds "
                       f"{', '.join(present)}); pass --overwrite to start it again")


def describe_files(out: Path) -> str:
    """``finished, test accuracy 81.2 %`` or ``3 epochs in history.csv``: what --overwrite would lose."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        metrics = json.loads((out / "metrics.json").read_text())
        return f"finished, test accuracy {100 * metrics['test']['accuracy']:.1f} %"
    with contextlib.suppress(OSError):
        epochs = len((out / "history.csv").read_text().splitlines()) - 1
        return f"{epochs} epoch{'s' * (epochs != 1)} in history.csv, not finished"
    return "checkpoints"


def clear(out: Path) -> None:
    """Remove a run's files (and nothing else the folder may hold)."""
    for name in (*RUN_FILES, CONFIG):
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
    # What train and report derive from the run: its HTML reports and TensorBoard events too.
    for path in [*out.glob("metrics-*.json"), *out.glob("figures"), *out.glob("figures-*"), *out.glob("report"),
                 *out.glob("report-*"), *out.glob("tensorboard")]:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def write_config(out: Path, config: dict[str, Any], task: dict[str, Any], run: dict[str, Any],
                 resumed_after: int | None = None) -> dict[str, Any]:
    """Write ``config.json``: the resolved settings, the class list, the data, and what ran it.

    Parameters
    ----------
    config
        Every setting after the presets are applied (``asdict(TrainConfig.resolved())``).
    task
        The task and its classes (``Task.to_dict()``).
    run
        What this process resolved: ``device``, ``amp``, ``feature``, ``parameters``, ``data``.
    resumed_after
        On ``--resume``: the epoch continued from. The first start's record is kept and the
        resume is appended under ``resumed``, with this process's versions.
    """
    path = out / CONFIG
    here = {"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command_line(), "host": socket.gethostname(),
            "versions": versions(), "git": git_commit(Path(__file__).resolve().parents[1])}
    previous = read_config(out) if resumed_after is not None else None
    if previous is not None:
        record = {**here, "after_epoch": resumed_after}
        before = previous.get("config", {}).get("epochs")
        if before is not None and before != config["epochs"]:  # --resume --epochs N: the run now has N
            record["epochs"] = {"from": before, "to": config["epochs"]}
            previous = {**previous, "config": {**previous["config"], "epochs": config["epochs"]}}
        data = {**previous, "resumed": [*previous.get("resumed", []), record]}
    else:
        data = {"format": RUN_FORMAT, "version": RUN_VERSION, "created": here["at"], "command": here["command"],
                "host": here["host"], "config": config, "seed": config["seed"], "task": task,
                "classes": task["class_names"], **run, "versions": here["versions"], "git": here["git"]}
        if resumed_after is not None:  # a run from before config.json existed
            data["resumed"] = [{**here, "after_epoch": resumed_after}]
    write_json(path, data)
    return data


def command_line() -> str:
    """This process's command, as ``nsynth train ...`` when it is the nsynth command line."""
    if Path(sys.argv[0]).name in ("nsynth", "cli.py"):
        return shlex.join(["nsynth", *sys.argv[1:]])
    return shlex.join(sys.argv)


def read_config(out: Path) -> dict[str, Any] | None:
    """A run folder's config.json, or None when it has none (or one that does not parse)."""
    try:
        data = json.loads((Path(out) / CONFIG).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == RUN_FORMAT else None


def versions() -> dict[str, str | None]:
    """Python's and each recorded package's version (None for one that is not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def git_commit(checkout: Path) -> dict[str, Any] | None:
    """The commit of the nsynth source when it runs from a git checkout (``checkout`` is its top
    folder), and whether tracked files differ from it; None without git or a checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        top, commit = git("rev-parse", "--show-toplevel", "HEAD").split("\n")
        if Path(top).resolve() != checkout.resolve():  # installed inside someone else's repository
            return None
        return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def data_record(cache: Cache, feature: str) -> dict[str, Any]:
    """What a run read from one cache split: path, notes, source, and a checksum of its data
    (a hash of the CRCs recorded at build time for the feature and the labels)."""
    meta = cache.meta
    crcs = json.dumps([list(meta.features[feature].checksums), dict(meta.label_checksums)], sort_keys=True)
    source = meta.build.source
    return {"path": str(cache.path), "notes": len(cache), "source": source.path,
            "format": source.format, "checksum": hashlib.sha256(crcs.encode()).hexdigest()[:12]}


def same_settings(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two configs of one run: equal but for ``epochs`` (a resume may extend a run, and its best
    checkpoint can predate that)."""
    return {**a, "epochs": None} == {**b, "epochs": None}


def summary(out: Path, checkpoint_config: dict[str, Any]) -> str:
    """One line saying where a run came from, for ``nsynth eval``: from config.json, or from
    the checkpoint's own config for a run folder without one."""
    info = read_config(out)
    if info is not None and not same_settings(info.get("config") or {}, checkpoint_config):
        info = None  # a checkpoint copied elsewhere
    c = info["config"] if info else checkpoint_config
    line = (f"run {out}: {c['model']} on the {c['task']} task, {c['epochs']} epochs of batch {c['batch_size']}, "
            f"lr {c['lr']:g}, seed {c['seed']}, cache {c['cache_dir']}")
    if info is None:
        return line + " (no config.json of this run beside the checkpoint)"
    v, git = info.get("versions", {}), info.get("git")
    made = f"nsynth {v.get('nsynth')}" + (f" (git {git['commit'][:10]}{', modified' if git['dirty'] else ''})"
                                          if git else "")
    train = info.get("data", {}).get("train", {})
    notes = f"{train['notes']:,}" if isinstance(train.get("notes"), int) else "?"
    source = f" from {train['source']}" if train.get("source") else ""
    return (f"{line}\n  trained on {notes} notes{source}, {info.get('created', '?')}, "
            f"{info.get('device', '?')}, {made}, torch {v.get('torch')}, python {v.get('python')}"
            + (f", resumed {len(info['resumed'])}x" if info.get("resumed") else ""))
