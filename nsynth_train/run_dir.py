"""Files of a run folder, each written atomically (a temporary file, then a rename)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

HISTORY_FIELDS = ("epoch", "train_loss", "train_accuracy", "valid_loss", "valid_accuracy", "seconds", "notes_per_s")


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in h.items()} for h in history)
    os.replace(tmp, path)
