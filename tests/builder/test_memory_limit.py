"""A build that runs out of memory says so in one line, naming the limit (not a traceback)."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from nsynth_prep.corpus.synth import write_corpus
from nsynth_prep.errors import out_of_memory

ROOT = Path(__file__).resolve().parents[2]


def test_what_counts_as_running_out_of_memory() -> None:
    line = out_of_memory(MemoryError("Unable to allocate 3.91 MiB for an array"))
    assert line is not None and line.startswith("out of memory: Unable to allocate 3.91 MiB for an array; ")
    assert out_of_memory(ValueError("no")) is None
    assert out_of_memory(OSError("Could not find/load shared object file 'libllvmlite.so'")) is None  # no limit set


@pytest.mark.slow
@pytest.mark.parametrize("mib", [300])  # numba's compiler or a block of audio: each says so
def test_a_build_under_a_memory_limit_is_one_line(tmp_path: Path, mib: int) -> None:
    write_corpus(tmp_path / "corpus", {"train": 200, "valid": 2, "test": 2}, progress=False, workers=1)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (mib << 20, mib << 20))

    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "-q", "prep", "build-cache",
                             str(tmp_path / "corpus" / "nsynth-train"), "--cache", str(tmp_path / "cache"),
                             "--feature", "trimmed", "--feature", "framed", "--workers", "2"],
                            capture_output=True, text=True, timeout=300, preexec_fn=limit)
    if result.returncode == 0:
        pytest.skip(f"the build fitted in {mib} MiB on this machine")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: out of memory: ") and f"at most {mib} MiB of address space" in line
