"""``nsynth report``: score a run (or an ``eval`` output's checkpoint) on a split and write the
listening error-analysis page, ``<folder>/report/index.html`` with its notes' files in
``report/notes/``.

Size bound: per head, at most :data:`~.select.PER_CELL` notes per non-empty confusion cell,
:data:`~.select.CONFIDENT_ERRORS` confident errors and :data:`~.select.BOUNDARY_PER_CLASS` notes
per class near the boundary; each note is one 16-bit 16 kHz WAV (100 KiB for 3.2 s of ``trimmed``;
at most 125 KiB, a 4 s source WAV) and one PNG of about 10 KiB, written once however often it is
listed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

import nsynth_train.report.media as media
import nsynth_train.report.page as page
import nsynth_train.report.select as select
import nsynth_train.report.svg as svg
from nsynth_prep.display.notes import audio_feature
from nsynth_prep.errors import RunError
from nsynth_prep.labels import SAMPLE_RATE
from nsynth_prep.readers.wav_any import read_wav_any
from nsynth_prep.storage.store import Where
from nsynth_train import run_dir
from nsynth_train.evaluate import Scores, _full_history, resolve_checkpoint, score
from nsynth_train.head_metrics import THRESHOLD, HeadScores, multilabel_summary
from nsynth_train.metrics import summarize

log = logging.getLogger(__name__)
INDEX = "index.html"
# A head with more classes than this (pitch: up to 88) gets no clickable matrix and no notes per
# cell (its matrix is figures/pitch.png); its errors and boundary notes are still listed.
MATRIX_MAX_CLASSES = 24


def resolve(target: Path, split: str | None, cache_dir: Where | None) -> tuple[Path, str, Where | None, Path]:
    """(checkpoint, split, cache folder or None for the run's own, default report folder) of a
    run folder, a checkpoint file, or a folder ``nsynth eval --out`` wrote."""
    target = Path(target)
    if target.is_dir() and not (target / "best.pt").exists():
        found = sorted(target.glob("metrics*.json"))
        if split:
            found = [p for p in found if p.name == ("metrics.json" if split == "test" else f"metrics-{split}.json")]
        if len(found) != 1:
            raise RunError(f"{target}: neither a run folder (best.pt) nor one eval output (metrics-<split>.json"
                           f"{'' if split else '; pass --split to choose'})")
        try:
            scored = json.loads(found[0].read_text())
            ckpt, split = Path(scored["checkpoint"]), split or scored["split"]
            cache_dir = cache_dir or str(Path(scored["cache"]).parent)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RunError(f"{found[0]}: not an eval output ({exc})") from None
        folder = target
    else:
        ckpt = resolve_checkpoint(target)
        folder = ckpt.parent
    split = split or "test"
    return ckpt, split, cache_dir, folder / ("report" if split == "test" else f"report-{split}")


def write_report(target: Path, out: Path | None = None, split: str | None = None, cache_dir: Where | None = None,
                 per_cell: int = select.PER_CELL, device: str = "auto", overwrite: bool = False,
                 scores: Scores | None = None) -> Path:
    """Write the report of ``target`` (a run folder, checkpoint or eval output) on ``split``
    (default test, or the eval output's) into ``out`` (default ``<run>/report``; other splits
    ``report-<split>``); returns the page's path. ``scores``: already scored (skips scoring).

    Raises
    ------
    RunError
        ``out`` holds a report and ``overwrite`` is not set.
    """
    ckpt, split, cache_dir, default = resolve(target, split, cache_dir)
    out = Path(out) if out else default
    if (out / INDEX).exists() and not overwrite:
        raise RunError(f"{out} holds a report; pass --overwrite to write it again")
    out.parent.mkdir(parents=True, exist_ok=True)
    with run_dir.locked(out.parent):  # not while a train or eval writes that folder
        scores = scores or score(ckpt, cache_dir, split, device)
        _write(scores, out, per_cell)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    log.info("report: %s (%d files, %.1f MiB)", out / INDEX, sum(1 for _ in out.rglob("*")), size / 2**20)
    return out / INDEX


def _write(scores: Scores, out: Path, per_cell: int) -> None:
    """The page and its notes into a work folder beside ``out``, renamed to ``out`` at the end:
    a report is never half there."""
    for stale in out.parent.glob(f".{out.name}.*.tmp"):  # a killed writer's (the caller holds the lock)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    (tmp / "notes").mkdir(parents=True)
    try:
        text = page.render(_page(scores, tmp / "notes", per_cell))
        (tmp / INDEX).write_text(text, encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class NoteFiles:
    """Writes each listed note's WAV and PNG once, from the audio the cache holds."""

    def __init__(self, scores: Scores, folder: Path) -> None:
        self.cache, self.rows, self.folder = scores.cache, scores.rows, folder
        self.labels = scores.cache.labels()
        self.feature = audio_feature(scores.cache)
        self.written: dict[int, tuple[str, str]] = {}
        self.what = {"trimmed": "the cache's trimmed audio (first 3.2 s)", "framed": "the cache's framed audio "
                     "(first 1 s)", "pooled": "the source WAV where it is found, else the cache's 25-sample means "
                     "held for 25 samples each (a low-passed sketch of the note)"}[self.feature]

    def files(self, i: int) -> tuple[str, str]:
        """(wav, png) paths relative to the page of scored note ``i``."""
        if i not in self.written:
            row = int(self.rows[i])
            note = str(self.labels.note_str[row])
            wav, png = media.write_note(self.folder, note, self._audio(row, note), SAMPLE_RATE)
            self.written[i] = (f"notes/{wav}", f"notes/{png}")
        return self.written[i]

    def _audio(self, row: int, note: str) -> np.ndarray:
        if self.feature != "pooled":
            return self.cache.floats(self.feature, np.array([row])).reshape(-1)
        source = self.cache.meta.build.source
        wav = Path(source.path) / "audio" / f"{note}.wav"
        if source.format == "jsonwav" and wav.is_file():
            samples, rate = read_wav_any(wav)
            if rate == SAMPLE_RATE:
                return samples.mean(1)
        spec = self.cache.feature("pooled").spec
        return np.repeat(self.cache.floats("pooled", np.array([row])).reshape(-1), getattr(spec, "stride", 25))


def _notes(files: NoteFiles, head: HeadScores, indices: np.ndarray, top: int = 3) -> list[page.Note]:
    names = head.head.class_names
    out = []
    for i in indices.tolist():
        wav, png = files.files(i)
        p = head.probs[i]
        best = np.argsort(-p, kind="stable")[:top]
        row = int(files.rows[i])
        out.append(page.Note(str(files.labels.note_str[row]), wav, png, names[head.y[i]], names[int(p.argmax())],
                             [(names[c], float(p[c])) for c in best],
                             f"pitch {int(files.labels.pitch[row])}, velocity {int(files.labels.velocity[row])}"))
    return out


def _head(files: NoteFiles, head: HeadScores, per_cell: int) -> page.Head:
    names = list(head.head.class_names)
    if head.head.multilabel:
        return _flags_head(files, head, per_cell)
    metrics = summarize(head.cm, names)  # from the head's own matrix, whatever metrics.json calls it
    if len(names) > MATRIX_MAX_CLASSES:
        return page.Head(head.head.name, names, head.cm.tolist(), metrics, {},
                         _notes(files, head, select.confident_errors(head.probs, head.y)),
                         {-1: _notes(files, head, select.nearest_boundary(head.probs, head.y))}, matrix=False)
    cells = {k: _notes(files, head, v) for k, v in select.cell_notes(head.probs, head.y, per_cell).items()}
    return page.Head(head.head.name, names, head.cm.tolist(), metrics, cells,
                     _notes(files, head, select.confident_errors(head.probs, head.y)),
                     {c: _notes(files, head, v) for c, v in select.boundary_notes(head.probs, head.y).items()})


def _flags_head(files: NoteFiles, head: HeadScores, per_cell: int) -> page.Head:
    """A multi-label head (qualities): per label its AP and F1, and its most confident misses and
    false alarms to listen to."""
    names = list(head.head.class_names)
    metrics = multilabel_summary(head.y, head.probs, names)

    def listed(indices: np.ndarray) -> list[page.Note]:
        out = []
        for i in indices.tolist():
            wav, png = files.files(i)
            p, row = head.probs[i], int(files.rows[i])
            true = ", ".join(n for n, f in zip(names, head.y[i], strict=True) if f > 0.5) or "none"
            said = ", ".join(n for n, q in zip(names, p, strict=True) if q >= THRESHOLD) or "none"
            best = np.argsort(-p, kind="stable")[:3]
            out.append(page.Note(str(files.labels.note_str[row]), wav, png, true, said,
                                 [(names[c], float(p[c])) for c in best],
                                 f"pitch {int(files.labels.pitch[row])}, velocity {int(files.labels.velocity[row])}"))
        return out

    errors = {(q, kind): listed(v) for (q, kind), v in select.flag_errors(head.probs, head.y, per_cell).items()}
    return page.Head(head.head.name, names, [], metrics, {}, [], {}, matrix=False, flag_errors=errors)


def _settings(scores: Scores, info: dict[str, Any] | None) -> list[tuple[str, str]]:
    c = info["config"] if info else scores.state["config"]
    rows = [("model", c["model"]), ("task", c["task"]), ("epochs", f"{c['epochs']} (checkpoint of epoch "
            f"{scores.state['epoch']})"), ("batch size", c["batch_size"]), ("learning rate", c["lr"]),
            ("seed", c["seed"]), ("cache", c["cache_dir"]), ("scored", f"{scores.result['split']} split: "
                                                                       f"{scores.result['cache']}"),
            ("checkpoint", str(scores.ckpt_path))]
    if info:
        git = info.get("git")
        rows += [("created", info.get("created")), ("command", info.get("command")), ("host", info.get("host")),
                 ("device", info.get("device")), ("parameters", f"{info.get('parameters', 0):,}"),
                 ("git", f"{git['commit']}{' (modified)' if git['dirty'] else ''}" if git else "not a git checkout"),
                 ("versions", ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items()))]
        for name, d in info.get("data", {}).items():
            rows.append((f"data: {name}", f"{d.get('notes', '?')} notes from {d.get('source')} "
                                          f"({d.get('format')}), checksum {d.get('checksum')}"))
    return [(k, str(v)) for k, v in rows]


def _page(scores: Scores, folder: Path, per_cell: int) -> page.Page:
    files = NoteFiles(scores, folder)
    result, split = scores.result, scores.result["split"]
    heads = [_head(files, h, per_cell) for h in scores.heads]
    info = run_dir.read_config(scores.ckpt_path.parent)
    if info is not None and not run_dir.same_settings(info.get("config") or {}, scores.state["config"]):
        info = None  # a checkpoint copied away from its run: its own config only
    history = _full_history(scores.ckpt_path, scores.state)
    footer = (f"{len(files.written)} notes listed (per head: at most {per_cell} per confusion cell, "
              f"{select.CONFIDENT_ERRORS} confident errors, {select.BOUNDARY_PER_CLASS} per class near the boundary); "
              f"audio: {files.what}; images: waveform (scaled to the note's peak) above the log-mel "
              f"(64 bands, 20 Hz-8 kHz, 60 dB). Written by nsynth report.")
    return page.Page(f"{result['model']} / {result['task']} task: {split} split",
                     f"{result[split]['notes']:,} notes, {scores.ckpt_path}", _settings(scores, info),
                     info, list(svg.learning_curves(history)) if history else [], heads, footer)
