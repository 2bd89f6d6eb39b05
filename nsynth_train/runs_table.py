"""``nsynth runs``: every run under some folders as one table, runs that differ only in their
seed grouped into one row (mean +- std and n), as text, JSON, CSV or an HTML page with the
learning curves overlaid. Reads only what run folders hold (config.json, metrics.json,
history.csv); imports no torch.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nsynth_prep.errors import ConfigError
from nsynth_train.report.svg import COLOURS, line_chart
from nsynth_train.run_dir import read_config

# Columns of a row, in order; the per-head accuracy/F1 columns follow "lr".
SETTINGS = ("model", "task", "feature", "epochs", "batch", "lr", "seed")
TAIL = ("epochs_run", "train_notes", "notes_per_s", "date", "git", "run")
NUMERIC_TAIL = ("epochs_run", "train_notes", "notes_per_s")


def find_runs(folders: Iterable[Path]) -> list[Path]:
    """Every run folder (a config.json of an nsynth run) at or under ``folders``, sorted."""
    found: set[Path] = set()
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise ConfigError(f"{folder}: no such folder")
        for config in [folder / "config.json", *folder.rglob("*/config.json")]:
            if config.is_file() and read_config(config.parent) is not None:
                found.add(config.parent)
    return sorted(found)


def read_history(run: Path) -> list[dict[str, float]]:
    """history.csv as floats ([] when absent or unreadable)."""
    try:
        with open(run / "history.csv", newline="") as f:
            return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]
    except (OSError, ValueError):
        return []


def head_metrics(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{head: {"accuracy" or "mAP", "macro_f1"}}`` of a metrics.json: the first head under its
    split (named by the task), others under ``<head>_head`` keys, or every head under ``heads``
    (a run of several heads). A multi-label head (qualities) has its mAP instead of an accuracy."""
    if not metrics:
        return {}
    split = metrics.get("split", "test")
    if isinstance(metrics.get("heads"), dict):
        heads = dict(metrics["heads"])
    else:
        first = metrics.get("task", "task") if metrics.get("task") != "both" else "family"
        heads = {first: metrics.get(split, {})}
        heads.update({k.removesuffix("_head"): v for k, v in metrics.items()
                      if k.endswith("_head") and isinstance(v, dict) and "accuracy" in v})
    out = {}
    for h, m in heads.items():
        if "accuracy" in m:
            out[h] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
        elif m.get("mAP") is not None:
            out[h] = {"mAP": m["mAP"], "macro_f1": m["macro_f1"]}
    return out


def run_row(run: Path) -> dict[str, Any]:
    """One run's row: settings, per-head test accuracy and macro-F1 (``acc <head>``, ``F1 <head>``),
    epochs run, train notes, mean notes/s over the epochs, date, git commit, folder."""
    info = read_config(run) or {}
    c = info.get("config", {})
    try:
        metrics = json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        metrics = {}
    history = read_history(run)
    git = info.get("git") or {}
    row: dict[str, Any] = {"model": c.get("model"), "task": c.get("task"), "feature": info.get("feature"),
                           "epochs": c.get("epochs"), "batch": c.get("batch_size"), "lr": c.get("lr"),
                           "seed": c.get("seed")}
    for head, m in head_metrics(metrics).items():
        score = "acc" if "accuracy" in m else "mAP"
        row[f"{score} {head}"], row[f"F1 {head}"] = m.get("accuracy", m.get("mAP")), m["macro_f1"]
    speeds = [h["notes_per_s"] for h in history if "notes_per_s" in h]
    row.update({"epochs_run": len(history), "train_notes": info.get("data", {}).get("train", {}).get("notes"),
                "notes_per_s": statistics.fmean(speeds) if speeds else None,
                "date": str(info.get("created", ""))[:19], "git": (git.get("commit") or "")[:10]
                + ("+" if git.get("dirty") else ""), "run": str(run)})
    row["_group"] = json.dumps({k: v for k, v in c.items() if k != "seed"}, sort_keys=True)
    return row


def group_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs whose settings differ only in the seed as one row each: numbers as ``{"mean",
    "std", "n"}`` (std over the runs, 0 for one), seeds listed, folders listed."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for one in rows:
        groups.setdefault(one["_group"], []).append(one)
    out = []
    for members in groups.values():
        first = members[0]
        row: dict[str, Any] = {k: first[k] for k in SETTINGS if k != "seed"}
        row["seed"] = ",".join(str(m["seed"]) for m in sorted(members, key=lambda m: m["seed"] or 0))
        row["n"] = len(members)
        for key in [k for k in first if k.startswith(("acc ", "mAP ", "F1 "))] + list(NUMERIC_TAIL):
            values = [m[key] for m in members if isinstance(m.get(key), int | float)]
            if values and key in NUMERIC_TAIL[:2] and len(set(values)) == 1:
                row[key] = values[0]  # the same epochs and train notes in every run: one number
            else:
                row[key] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1
                            else 0.0, "n": len(values)} if values else None
        row.update({"date": max(m["date"] for m in members), "git": ",".join(sorted({m["git"] for m in members})),
                    "run": ",".join(m["run"] for m in members), "_group": first["_group"]})
        out.append(row)
    return out


def table(folders: Iterable[Path], group: bool = True, sort: str | None = None) -> list[dict[str, Any]]:
    """The rows of every run under ``folders`` (grouped over seeds unless not ``group``), sorted
    by the column ``sort`` (highest first for numbers; default: by model, task, then seed)."""
    runs = find_runs(folders)
    rows = [run_row(r) for r in runs]
    rows = group_rows(rows) if group else rows
    if sort:
        columns = {k for r in rows for k in r}
        if sort not in columns:
            raise ConfigError(f"no column {sort!r} to sort by; the columns: {', '.join(c for c in columns_of(rows))}")
        numeric = [r for r in rows if _number(r.get(sort)) is not None]
        rest = [r for r in rows if _number(r.get(sort)) is None]
        if numeric:
            rows = sorted(numeric, key=lambda r: -(_number(r[sort]) or 0.0)) + rest
        else:
            rows = sorted(rows, key=lambda r: str(r.get(sort)))
    return rows


def columns_of(rows: list[dict[str, Any]]) -> list[str]:
    heads = sorted({k for r in rows for k in r if k.startswith(("acc ", "mAP ", "F1 "))},
                   key=lambda k: (k.partition(" ")[2], k.startswith("F1 ")))  # per head: acc or mAP, then F1
    extra = ["n"] if any("n" in r for r in rows) else []
    return [*SETTINGS, *extra, *heads, *TAIL]


def _number(value: Any) -> float | None:
    if isinstance(value, dict):
        return float(value["mean"])
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def cell(key: str, value: Any) -> str:
    """A value as the text table, CSV and HTML show it."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return f"{cell(key, value['mean'])} ± {cell(key, value['std'])}"
    if key.startswith("acc "):
        return f"{100 * value:.2f}%"
    if key.startswith("F1 "):
        return f"{value:.3f}"
    if key == "notes_per_s":
        return f"{value:,.0f}"
    if isinstance(value, float):
        return f"{value:g}" if key != "epochs_run" else f"{value:.1f}"
    return str(value)


def to_text(rows: list[dict[str, Any]]) -> str:
    """An aligned plain-text table (the run column last, unpadded)."""
    if not rows:
        return "no runs found"
    cols = columns_of(rows)
    cells = [cols, *([cell(c, r.get(c)) for c in cols] for r in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cols) - 1)]
    return "\n".join("  ".join([*(v.ljust(w) for v, w in zip(line[:-1], widths, strict=True)), line[-1]])
                     for line in cells)


def to_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows], indent=1)


def to_csv(rows: list[dict[str, Any]]) -> str:
    """CSV; a grouped number is three columns: ``<col>``, ``<col> std``, ``<col> n``."""
    cols = columns_of(rows)
    flat_cols: list[str] = []
    for c in cols:
        flat_cols += [c, f"{c} std", f"{c} n"] if any(isinstance(r.get(c), dict) for r in rows) else [c]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, flat_cols, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        flat: dict[str, Any] = {}
        for c in cols:
            v = r.get(c)
            if isinstance(v, dict):
                flat.update({c: v["mean"], f"{c} std": v["std"], f"{c} n": v["n"]})
            else:
                flat[c] = v
        writer.writerow(flat)
    return buffer.getvalue()


def to_html(rows: list[dict[str, Any]], title: str = "nsynth runs") -> str:
    """The table and the learning curves of every run overlaid (valid accuracy, train loss),
    one colour per row (the seeds of a group share it); static, no network."""
    cols = columns_of(rows)
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in ["", *cols])
    body = "".join(
        f'<tr><td style="background:{COLOURS[i % len(COLOURS)]}">&nbsp;</td>'
        + "".join(f"<td>{e(cell(c, r.get(c)))}</td>" for c in cols) + "</tr>" for i, r in enumerate(rows))
    acc, loss = [], []
    for i, r in enumerate(rows):
        label = f"{i + 1}: {r['model']} {r['task']}"
        for run in str(r["run"]).split(","):
            h = read_history(Path(run))
            epochs = [x["epoch"] for x in h]
            acc.append((label, epochs, [x.get("valid_accuracy", math.nan) for x in h], "solid"))
            loss.append((label, epochs, [x.get("train_loss", math.nan) for x in h], "solid"))
    charts = line_chart(acc, "valid accuracy per epoch (every run)", "accuracy", 560, 320, (0.0, 1.0)) + \
        line_chart(loss, "train loss per epoch (every run)", "loss", 560, 320)
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(title)}</title><style>body{{font:13px system-ui,sans-serif;margin:16px}}"
            "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:2px 6px;white-space:nowrap}"
            "th{background:#f2f2f2}.chart .title{font-size:12px;font-weight:600}.chart .tick{font-size:10px}"
            f"</style></head><body><h1>{e(title)}</h1><table><tr>{head}</tr>{body}</table>"
            f"<p>runs that differ only in their seed are one row: mean ± std over n runs.</p>"
            f'<div style="display:flex;flex-wrap:wrap;gap:12px">{charts}</div></body></html>\n')
