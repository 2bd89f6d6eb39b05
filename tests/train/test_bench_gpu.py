"""bench/bench_gpu.py end to end at a tiny size on the CPU: the corpus described and rendered into
real caches, one epoch of every preset resident and streamed through the training code, the table.
(The GPU run itself is never needed by the tests.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nsynth_prep.cache.format import open_cache
from nsynth_prep.cache.verify import verify_cache

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.bench
@pytest.mark.slow
def test_bench_gpu_tiny_on_cpu(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "bench/bench_gpu.py", "--notes", "64", "--device", "cpu", "--batch-size",
                           "16", "--workers", "2", "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    rows = {(r["preset"], r["mode"]): r for r in results["results"]}
    assert sorted(rows) == sorted((p, m) for p in ("cnn", "cnn-reg", "lstm", "blstm", "mel-cnn") for m in ("resident", "streamed"))
    train = open_cache(tmp_path / "caches" / "train.zarr")
    in_task = int((train.label("family") != 9).sum())  # the family task leaves synth_lead out
    for (preset, _), r in rows.items():  # lstm, blstm and mel-cnn drop the last partial batch, as their presets say
        assert r["notes"] == (in_task if preset in ("cnn", "cnn-reg") else in_task // 16 * 16) and r["epoch_s"] > 0
    table = (tmp_path / "results.md").read_text()
    assert "| lstm | framed | streamed | 16 | off |" in table and "| 2:03 |" in table and "| 6:26 |" in table
    assert "| mel-cnn | trimmed | resident | 16 |" in table
    assert "trimmed, one streamed pass" in table
    caches = tmp_path / "caches"
    assert open_cache(caches / "train.zarr").meta.build.source.format == "synth"
    assert verify_cache(caches / "train.zarr") == [] and verify_cache(caches / "valid.zarr") == []
