"""A real full disk (a tmpfs of a few MB, mounted for the test), not a simulated errno: the
archive spool (numpy writes: a short write without an errno) and train's checkpoints (torch's zip
writer: a RuntimeError) each end in one line that says how to go on. Skipped where mounting is not
allowed (not root, or a container without the capability)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nsynth_prep.builder.pipeline import BuildConfig, build_cache
from nsynth_prep.corpus.synth import write_corpus

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # mounts, and a subprocess each


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _nsynth(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), "-q", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("targz")
    write_corpus(out, {"train": 60, "valid": 20, "test": 20}, formats=("targz",), progress=False, workers=1)
    return out


def test_a_full_disk_while_spooling_an_archive_is_one_line(archives: Path, tmp_path: Path) -> None:
    with small_disk(tmp_path / "small", "1m") as small:
        result = _nsynth("prep", "build-cache", str(archives / "nsynth-train.jsonwav.tar.gz"), "--cache", str(small),
                         "--feature", "framed")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: ") and "spool: cannot write (disk full)" in line
    assert "run the same command again: it resumes" in line


def test_a_full_disk_while_saving_a_checkpoint_says_how_to_resume(archives: Path, tmp_path: Path,
                                                                   cli: Callable[..., object]) -> None:
    for split in ("train", "valid", "test"):
        build_cache(archives / f"nsynth-{split}.jsonwav.tar.gz", tmp_path / "cache", BuildConfig(features=("pooled",)),
                    progress=False)
    with small_disk(tmp_path / "runs", "2m") as runs:  # config.json fits, the CNN's 13 MB checkpoint does not
        result = _nsynth("train", "--model", "cnn", "--cache", str(tmp_path / "cache"), "--epochs", "1",
                         "--batch-size", "8", "--device", "cpu", "--out", str(runs / "r"))
        left = sorted(p.name for p in (runs / "r").iterdir())
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    line = result.stderr.strip().splitlines()[-1]
    assert "best.pt: cannot write (disk full); no epoch was saved. Free some space, then continue with: " \
           "nsynth train --task family --model cnn" in line and line.endswith(f"--resume --out {runs / 'r'}")
    assert left == [".lock", "config.json"]  # no half-written checkpoint or temporary file left behind
