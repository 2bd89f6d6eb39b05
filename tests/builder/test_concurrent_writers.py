"""Concurrent writers (real processes racing for one cache split) and builds killed at the create step."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from nsynth_prep.builder.pipeline import BuildConfig, build_cache
from nsynth_prep.cache import format as cache
from nsynth_prep.cache.verify import verify_cache

ROOT = Path(__file__).resolve().parents[2]

# The real command line, held just before it writes its first chunk (it holds the lock by then)
# until the test creates the file argv[1]; argv[2] appears once it is there.
HELD_CLI = """
import sys, time
from pathlib import Path
import cli
from nsynth_prep.builder import pipeline as build
go, holding = Path(sys.argv[1]), Path(sys.argv[2])
original = build._write_features
def held(*args, **kwargs):
    holding.write_text("holding")
    for _ in range(1200):
        if go.exists():
            break
        time.sleep(0.05)
    return original(*args, **kwargs)
build._write_features = held
cli.main(sys.argv[3:])
"""


def _held(tmp_path: Path, *args: object) -> tuple[subprocess.Popen[str], Path]:
    go, holding = tmp_path / "go", tmp_path / "holding"
    proc = subprocess.Popen([sys.executable, "-c", HELD_CLI, str(go), str(holding), *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(1200):
        if holding.exists() or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert holding.exists(), proc.communicate()
    return proc, go


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "cli.py", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def _names(path: Path) -> list[str]:
    return sorted(np.asarray(zarr.open_group(path, mode="r")["note_str"][...]).tolist())


def test_second_writer_is_refused_and_the_first_completes(corpus: Path, tmp_path: Path) -> None:
    """The issue's race: nsynth-train into C, and meanwhile nsynth-valid --split train into C."""
    c = tmp_path / "cache"
    first, go = _held(tmp_path, "-q", "prep", "build-cache", corpus / "nsynth-train", "--cache", c, "--workers", "1")
    second = _cli("-q", "prep", "build-cache", corpus / "nsynth-valid", "--split", "train", "--cache", c)
    assert second.returncode == 1, second.stdout + second.stderr
    line = second.stderr.strip()
    assert line.count("\n") == 0 and "Traceback" not in line
    assert f"cache {c / 'train.zarr'} is being written by pid {first.pid} " in line and "--wait" in line
    go.touch()
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert _cli("prep", "verify", c / "train.zarr").returncode == 0
    entries = json.loads((corpus / "nsynth-train" / "examples.json").read_text())
    assert _names(c / "train.zarr") == sorted(entries) and len(cache.open_cache(c / "train.zarr")) == 60
    # Run again once the first is done: another source, refused, the cache untouched.
    again = _cli("prep", "build-cache", corpus / "nsynth-valid", "--split", "train", "--cache", c)
    assert again.returncode == 1 and "nsynth-valid is another source" in again.stderr
    assert _names(c / "train.zarr") == sorted(entries)


def test_two_feature_adds_at_once(corpus: Path, tmp_path: Path) -> None:
    c = tmp_path / "cache"
    build_cache(corpus / "nsynth-test", c, BuildConfig(), progress=False)
    first, go = _held(tmp_path, "-q", "prep", "build-cache", corpus / "nsynth-test", "--cache", c,
                      "--feature", "framed", "--workers", "1")
    refused = _cli("-q", "prep", "build-cache", corpus / "nsynth-test", "--cache", c, "--feature", "trimmed")
    assert refused.returncode == 1 and refused.stderr.strip().count("\n") == 0
    assert f"is being written by pid {first.pid}" in refused.stderr
    waiting = subprocess.Popen([sys.executable, "cli.py", "-q", "prep", "build-cache", str(corpus / "nsynth-test"),
                                "--cache", str(c), "--feature", "trimmed", "--wait"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    assert waiting.poll() is None  # it waits for the lock
    go.touch()
    assert first.wait(timeout=300) == 0
    out, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, err
    assert "built trimmed" in out
    assert sorted(cache.open_cache(c / "test.zarr").meta.features) == ["framed", "pooled", "trimmed"]
    assert verify_cache(c / "test.zarr") == []
    for proc in (first, waiting):
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


# --- killed while the cache group is created --------------------------------------------------

KILL_AT_CREATE = """
import os, signal, sys
from pathlib import Path
from nsynth_prep.builder import pipeline as build
from nsynth_prep.cache import format as cache
if sys.argv[3] == "in-create":  # label arrays written, the metadata not yet
    def save_meta(group, meta):
        os.kill(os.getpid(), signal.SIGKILL)
    cache.save_meta = save_meta
else:  # the group and its plan are there, no feature yet
    original_create = cache.create
    def create(*args, **kwargs):
        original_create(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
    cache.create = create
build.build_cache(Path(sys.argv[1]), Path(sys.argv[2]), build.BuildConfig(workers=1), progress=False)
"""


@pytest.mark.parametrize("point", ["in-create", "after-create"])
def test_killed_at_the_create_step_then_resumed(corpus: Path, tmp_path: Path, point: str) -> None:
    proc = subprocess.run([sys.executable, "-c", KILL_AT_CREATE, str(corpus / "nsynth-test"), str(tmp_path / "c"),
                           point], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    attrs = zarr.open_group(tmp_path / "c" / "test.zarr", mode="r").attrs
    if point == "in-create":  # labels written, no metadata: not a cache yet (format 1 had partial attrs here)
        assert "family" in zarr.open_group(tmp_path / "c" / "test.zarr", mode="r") and "nsynth" not in attrs
    else:
        assert attrs["nsynth"]["state"] == "building"  # type: ignore[index,call-overload]
    done = build_cache(corpus / "nsynth-test", tmp_path / "c", BuildConfig(), progress=False)[0]
    ref = build_cache(corpus / "nsynth-test", tmp_path / "ref", BuildConfig(), progress=False)[0]
    for name in ("pooled", "family", "note_str"):
        np.testing.assert_array_equal(zarr.open_group(done.path, mode="r")[name][...],
                                      zarr.open_group(ref.path, mode="r")[name][...])
    assert verify_cache(done.path) == []
    assert not (tmp_path / "c" / "test.zarr.build").exists()
