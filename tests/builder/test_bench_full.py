"""bench/bench_full.py end to end at a tiny size: NSynth's split proportions, the train build killed
(SIGKILL to its process group) and resumed, the chunks in flight at each kill computed again and an
uninterrupted build compared, verify and audit, one streamed epoch and one evaluation pass of each
feature, and the table with every step's time, memory, disk and files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nsynth_prep.cache.format import open_cache
from nsynth_prep.cache.verify import verify_cache

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from bench_full import NSYNTH, split_sizes  # noqa: E402


def test_split_sizes_keep_nsynths_proportions() -> None:
    assert split_sizes(305_979) == NSYNTH and split_sizes(10**6) == NSYNTH
    s = split_sizes(32_000)
    assert sum(s.values()) == 32_000 and s == {"train": 30_246, "valid": 1_326, "test": 428}
    assert split_sizes(300) == {"train": 268, "valid": 16, "test": 16}  # the small splits keep a few notes


@pytest.mark.bench
@pytest.mark.slow
def test_bench_full_small(tmp_path: Path) -> None:
    # 560 notes: train's 521 rows are framed chunks ending at rows 256, 512 and 521 (pooled's one
    # chunk at 521), so between the first kill point (the first chunk marked) and the next mark
    # lie 256 notes to render: time for the bench's poll loop to see it on a loaded machine. With
    # 268 train rows that gap was 12 notes, and a late look found every chunk already marked.
    assert split_sizes(560)["train"] == 521
    proc = subprocess.run([sys.executable, "bench/bench_full.py", "--notes", "560", "--workers", "2", "--trimmed", "no",
                           "--reference", "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    (size,) = json.loads((tmp_path / "results.json").read_text())["sizes"]
    assert size["notes"] == 560 and size["features"] == ["pooled", "framed"]
    steps = {r["step"]: r for r in size["rows"]}
    assert list(steps) == ["build train", "build valid", "build test", "verify", "audit", "stream pooled (loader)",
                           "eval pooled (cnn)", "stream framed (loader)", "eval framed (lstm)"]
    for r in steps.values():
        assert r["seconds"] > 0 and r["peak_rss_mib"] > 20 and r["peak_rss_sum_mib"] >= r["peak_rss_mib"]
        assert r["disk_bytes"] > 0 and r["files"] > 0 and r["zarr_json_bytes"] > 0
    build = steps["build train"]
    assert size["kills"] and build["resumes"] == len(build["segments_s"]) - 1 >= 1
    # What a kill left to write: some chunk of some feature (which one, and whether a late kill
    # found only the last metadata to write, depends on the machine's pace).
    assert any(any(k["unmarked"].values()) for k in size["kills"])
    # Every run with something left to write wrote a chunk: its time to it (the first run always).
    left = [True] + [any(k["unmarked"].values()) for k in size["kills"]]
    assert all(x is not None and x > 0 for x, todo in zip(build["first_mark_s"], left, strict=True) if todo)
    assert all(r["anon_rss_mib"] > 10 for r in steps.values())
    # CPU time of the step's processes: the build's workers too, more than the watched process alone
    assert all(r["cpu_s"] > 0.2 and 0 <= r["steal"] < 1 for r in steps.values())
    assert build["cpu_s"] > steps["verify"]["cpu_s"]
    ident = size["identity"]
    assert ident["chunks_recomputed"] >= 1 and ident["differ"] == [] and ident["reference_identical"] is True
    caches = tmp_path / "notes-560" / "caches"
    train = open_cache(caches / "train.zarr")
    assert len(train) == 521 and train.meta.build.source.format == "synth"
    assert all(verify_cache(caches / f"{s}.zarr") == [] for s in ("train", "valid", "test"))
    in_task = int((train.label("family") != 9).sum())  # the family task leaves synth_lead out
    assert steps["stream pooled (loader)"]["notes"] == steps["stream framed (loader)"]["notes"] == in_task
    assert steps["eval pooled (cnn)"]["notes"] == len(open_cache(caches / "test.zarr"))
    table = (tmp_path / "results.md").read_text()
    assert "| build train |" in table and "killed" in table and "all identical" in table
    assert "an uninterrupted build: identical checksums" in table
