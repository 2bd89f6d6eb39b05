"""bench/bench_audit.py end to end at a tiny size: the cache built, audit run in one process and in
two in turns, the table, and the reports identical."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.bench
@pytest.mark.slow
def test_bench_audit_tiny(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "bench/bench_audit.py", "--notes", "100", "--runs", "1", "--out",
                           str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["notes"] == 100 and result["identical"] is True
    assert [r["workers"] for r in result["runs"]] == [1, 2]
    assert all(r["seconds"] > 0 and r["cpu_s"] > 0.3 for r in result["runs"])  # the audit and its workers
    table = (tmp_path / "results.md").read_text()
    assert "| 1 | 1 |" in table and "| 1 | 2 |" in table and "reports identical: True" in table
