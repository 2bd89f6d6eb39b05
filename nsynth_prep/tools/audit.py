"""Data-quality checks over caches, streamed chunk by chunk.

Per cache: silent or near-silent notes, clipped notes, noise-like notes (spectral flatness of
the sustained part above a threshold, :mod:`.noise`), notes whose audio is identical to
another's, pitches outside the usual range, NaN/inf values. Across caches: instruments that
appear in more than one split (NSynth's splits are instrument-disjoint; a leak inflates
accuracy). Silence and clipping need real samples (``trimmed`` or ``framed``); a cache with
only ``pooled`` gets the other checks and says so.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nsynth_prep.cache import format as cache_format
from nsynth_prep.cache.checked import CheckedArray
from nsynth_prep.cpus import process_map
from nsynth_prep.labels import PIANO_RANGE
from nsynth_prep.progress import Progress
from nsynth_prep.storage.store import Where
from nsynth_prep.tools.noise import SAMPLE_RATE, SUSTAIN_FROM, SUSTAIN_TO, spectral_flatness, sustained_spectrum


@dataclass(frozen=True)
class AuditConfig:
    """Thresholds; stored in the JSON report."""

    silent_peak: float = 1e-3  # peak |x| below this (-60 dBFS; 32 int16 steps) is near-silent
    clip_level: float = 0.999  # |x| at or above this (32,736 int16 steps) counts as full scale
    clip_samples: int = 16  # this many full-scale samples make a note clipped
    pitch_range: tuple[int, int] = PIANO_RANGE
    # Spectral flatness of the sustained part above this: noise, not a note (white noise ~1, tones
    # ~0; 10,965 notes of a General MIDI SoundFont measured at most 0.092: docs/cli.md#noise-notes)
    noise_flatness: float = 0.5


@dataclass
class CacheAudit:
    path: str
    split: str
    notes: int
    audio_feature: str | None  # feature used for silence/clipping/duplicates
    silent: list[dict[str, Any]] = field(default_factory=list)
    clipped: list[dict[str, Any]] = field(default_factory=list)
    noise_like: list[dict[str, Any]] = field(default_factory=list)
    flattest: dict[str, Any] | None = None  # the sounding note of highest flatness, noise-like or not (for a threshold)
    duplicates: list[list[str]] = field(default_factory=list)
    pitch_out_of_range: list[dict[str, Any]] = field(default_factory=list)
    non_finite: list[dict[str, Any]] = field(default_factory=list)
    not_checked: list[str] = field(default_factory=list)

    def problem_count(self) -> int:
        """Findings: each silent, clipped, odd-pitch or non-finite note, and each group of identical notes."""
        return (len(self.silent) + len(self.clipped) + len(self.noise_like) + len(self.duplicates)
                + len(self.pitch_out_of_range) + len(self.non_finite))


def audit_cache(path: Where, config: AuditConfig = AuditConfig(), workers: int = 1,
                progress: bool = False) -> CacheAudit:
    """Every per-cache check of one cache (one pass over its chunks, in ``workers`` processes).

    The report does not depend on ``workers``: the chunks' findings are merged in chunk order.
    """
    c = cache_format.open_cache(path)
    labels = c.labels()
    names = labels.note_str  # (N,) Python strings, as read: a copy as a numpy str array costs ~120 B a note
    feats = c.meta.features
    audio = next((f for f in ("trimmed", "framed") if f in feats), None)
    hashed = audio or next((f for f in ("pooled",) if f in feats), None)
    report = CacheAudit(str(path), c.split, len(c), audio)
    if audio is None:
        report.not_checked.append("silence, clipping and noise (need the trimmed or framed feature)")
    lo, hi = config.pitch_range
    for row in np.flatnonzero((labels.pitch < lo) | (labels.pitch > hi)):
        report.pitch_out_of_range.append({"note": names[row], "row": int(row), "pitch": int(labels.pitch[row])})
    # A 16-byte digest per note, side by side (a dict of bytes -> list of rows took ~190 B a note:
    # 55 MB at NSynth train's size, most of the audit's memory)
    digests = np.zeros((len(c), 16), np.uint8)
    jobs = [(name, chunk) for name in feats for chunk in range(len(c.feature(name).checksums))]
    checker = _ChunkChecker(c.path, audio, hashed, config)
    with Progress(len(jobs), f"audit {c.split}", unit="chunks", enabled=progress) as bar, \
            contextlib.closing(_check_all(checker, jobs, workers)) as found:
        for (name, _), f in zip(jobs, found, strict=True):
            bar.update(1)
            report.non_finite += [{"note": names[r], "row": r, "feature": name} for r in f.non_finite]
            report.silent += [{"note": names[r], "row": r, "peak": peak} for r, peak in f.silent]
            report.clipped += [{"note": names[r], "row": r, "full_scale_samples": n} for r, n in f.clipped]
            report.noise_like += [{"note": names[r], "row": r, "flatness": flat} for r, flat in f.noise_like]
            if f.flattest is not None and (report.flattest is None or f.flattest[1] > report.flattest["flatness"]):
                report.flattest = {"note": names[f.flattest[0]], "row": f.flattest[0], "flatness": f.flattest[1]}
            if f.digests is not None:
                digests[f.first_row : f.first_row + len(f.digests)] = f.digests
    silent_rows = {s["row"] for s in report.silent}
    groups = _same_rows(digests) if hashed else []
    report.duplicates = [[str(names[r]) for r in group] for group in groups if not all(r in silent_rows for r in group)]
    return report


@dataclass(frozen=True)
class _Findings:
    """What one chunk of one feature holds for the audit; rows are the cache's."""

    first_row: int
    non_finite: list[int]
    silent: list[tuple[int, float]]  # (row, peak)
    clipped: list[tuple[int, int]]  # (row, full-scale samples)
    noise_like: list[tuple[int, float]]  # (row, flatness)
    flattest: tuple[int, float] | None  # the chunk's sounding row of highest flatness
    digests: np.ndarray | None  # (rows, 16) uint8, for the feature duplicates are found in


class _ChunkChecker:
    """Checks one chunk of one feature (``(name, chunk)``), in whichever process calls it: the
    arrays are opened there, on first use, not pickled."""

    def __init__(self, path: Where, audio: str | None, hashed: str | None, config: AuditConfig) -> None:
        self.path, self.audio, self.hashed, self.config = path, audio, hashed, config
        self._open: dict[str, tuple[CheckedArray, np.ndarray]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_open": {}}

    def __call__(self, job: tuple[str, int]) -> _Findings:
        name, chunk = job
        if name not in self._open:
            feature = CheckedArray(cache_format.open_cache(self.path, (name,)), name)
            self._open[name] = feature, feature.buffer(1)
        feature, buf = self._open[name]
        start, config = chunk * feature.chunk_rows, self.config
        data = buf[: feature.read_into(chunk, buf)]  # a chunk that fails its build-time checksum stops the audit
        data = data.reshape(len(data), -1)  # (rows, values per note), as stored
        non_finite: list[int] = []
        if data.dtype.kind == "f":  # int16 audio cannot hold NaN or inf
            non_finite = (start + np.flatnonzero(~np.isfinite(data).all(axis=1))).tolist()
        silent: list[tuple[int, float]] = []
        clipped: list[tuple[int, int]] = []
        noise_like: list[tuple[int, float]] = []
        flattest = None
        if name == self.audio:
            # The thresholds are in [-1, 1] terms; int16 samples are compared in their own units
            # (widened first: |-32768| does not fit int16).
            floats = data.dtype.kind == "f"
            magnitude = np.abs(np.nan_to_num(data).astype(np.float32) if floats else data.astype(np.int32))
            peak = magnitude.max(axis=1) * feature.scale
            full = (magnitude >= config.clip_level / feature.scale).sum(axis=1)
            silent = [(start + r, float(peak[r])) for r in np.flatnonzero(peak < config.silent_peak).tolist()]
            clipped = [(start + r, int(full[r])) for r in np.flatnonzero(full >= config.clip_samples).tolist()]
            sounding = np.flatnonzero(peak >= config.silent_peak)  # silence is reported as silence
            flatness = _flatness(data[sounding], feature.scale, floats)
            if len(flatness):
                flattest = start + int(sounding[int(np.argmax(flatness))]), float(flatness.max())
            noisy = flatness > config.noise_flatness
            noise_like = [(start + r, float(f)) for r, f in zip(sounding[noisy].tolist(), flatness[noisy].tolist(),
                                                                strict=True)]
        digests = None
        if name == self.hashed:
            digests = np.array([np.frombuffer(hashlib.blake2b(row.tobytes(), digest_size=16).digest(), np.uint8)
                                for row in data], np.uint8).reshape(len(data), 16)
        return _Findings(start, non_finite, silent, clipped, noise_like, flattest, digests)


# In a pool process: the checker it was started with (set once per process by the initializer,
# inherited at fork), so that each job pickles only its (feature, chunk).
_POOL_CHECKER: list[_ChunkChecker] = []


def _set_pool_checker(checker: _ChunkChecker) -> None:
    _POOL_CHECKER[:] = [checker]


def _pool_check(job: tuple[str, int]) -> _Findings:
    return _POOL_CHECKER[0](job)


def _check_all(checker: _ChunkChecker, jobs: list[tuple[str, int]], workers: int
               ) -> Generator[_Findings, None, None]:
    """Each job's findings, in job order: here, or in ``workers`` forked processes."""
    if min(workers, len(jobs)) <= 1:
        return (checker(job) for job in jobs)
    return process_map(_pool_check, jobs, min(workers, len(jobs)), initializer=_set_pool_checker,
                       initargs=(checker,))


def _same_rows(digests: np.ndarray) -> list[list[int]]:
    """Groups of rows with the same digest ((N, 16) uint8), each in row order, the groups in the
    order of their first row; rows alone left out."""
    _, inverse, counts = np.unique(digests.view("V16").ravel(), return_inverse=True, return_counts=True)
    groups: dict[int, list[int]] = {}
    for row in np.flatnonzero(counts[inverse] > 1).tolist():
        groups.setdefault(int(inverse[row]), []).append(row)
    return sorted(groups.values(), key=lambda g: g[0])


def _flatness(data: np.ndarray, scale: float, floats: bool, block: int = 32) -> np.ndarray:
    """(rows,) spectral flatness of stored audio rows (rows, samples), ``block`` rows at a time
    (each row's frames are held as float64 while its spectrum is made). ``floats``: the rows are
    floats, whose NaN and inf are made finite first (int16 rows have none: a pass saved)."""
    out = np.zeros(len(data))
    for b in range(0, len(data), block):
        rows = data[b : b + block].astype(np.float64) * scale
        out[b : b + block] = spectral_flatness(np.nan_to_num(rows) if floats else rows)
    return out


def find_leaks(paths: Sequence[Where]) -> list[dict[str, Any]]:
    """Instruments whose notes are in more than one of the caches' splits."""
    seen: dict[int, dict[str, Any]] = {}
    for path in paths:
        c = cache_format.open_cache(path)
        labels = c.labels()
        ids, first, counts = np.unique(labels.instrument, return_index=True, return_counts=True)
        for i, f, n in zip(ids.tolist(), first.tolist(), counts.tolist(), strict=True):
            entry = seen.setdefault(i, {"instrument": i, "name": str(labels.note_str[f]).rsplit("-", 2)[0],
                                        "splits": {}})
            entry["splits"][f"{c.split} ({path})"] = n
    return [e for e in seen.values() if len(e["splits"]) > 1]


@dataclass
class AuditReport:
    caches: list[CacheAudit]
    leaks: list[dict[str, Any]]
    config: AuditConfig

    def problem_count(self) -> int:
        return sum(c.problem_count() for c in self.caches) + len(self.leaks)

    def to_dict(self) -> dict[str, Any]:
        return {"problems": self.problem_count(), "config": asdict(self.config),
                "caches": [asdict(c) for c in self.caches], "leaks": self.leaks}

    def text(self, examples: int = 5) -> str:
        lines = []
        for c in self.caches:
            lines.append(f"{c.path} ({c.split}, {c.notes:,} notes; audio checks on "
                         f"{c.audio_feature or 'none'}): {c.problem_count()} problem(s)")
            sections: list[tuple[str, list[Any], Any]] = [
                ("silent or near-silent", c.silent, lambda s: f"{s['note']} (peak {s['peak']:.2g})"),
                ("clipped", c.clipped, lambda s: f"{s['note']} ({s['full_scale_samples']} full-scale samples)"),
                (f"noise-like (spectral flatness > {self.config.noise_flatness:g})", c.noise_like,
                 lambda s: f"{s['note']} (flatness {s['flatness']:.2f})"),
                ("identical audio", c.duplicates, lambda g: " = ".join(g)),
                (f"pitch outside {self.config.pitch_range[0]}..{self.config.pitch_range[1]}", c.pitch_out_of_range,
                 lambda s: f"{s['note']} (pitch {s['pitch']})"),
                ("NaN or inf", c.non_finite, lambda s: f"{s['note']} ({s['feature']})"),
            ]
            for title, items, show in sections:
                flattest = c.flattest if title.startswith("noise-like") else None
                lines.append(f"  {title}: {len(items)}" + (f" (flattest note: {flattest['note']}, "
                                                          f"{flattest['flatness']:.3f})" if flattest else ""))
                lines += [f"    {show(i)}" for i in items[:examples]]
                if len(items) > examples:
                    lines.append(f"    ... and {len(items) - examples} more (--json for all)")
            lines += [f"  not checked: {n}" for n in c.not_checked]
        if len(self.caches) > 1:
            lines.append(f"instruments in more than one split: {len(self.leaks)}")
            for leak in self.leaks[:examples]:
                where = ", ".join(f"{k}: {v} notes" for k, v in leak["splits"].items())
                lines.append(f"    {leak['name']} (id {leak['instrument']}): {where}")
        else:
            lines.append("instrument leaks across splits: give several caches to check")
        lines.append(f"total: {self.problem_count()} problem(s)")
        return "\n".join(lines)


def audit(paths: Sequence[Where], config: AuditConfig = AuditConfig(), workers: int = 1,
          progress: bool = False) -> AuditReport:
    """Audit each cache (its chunks checked in ``workers`` processes), and look for instrument
    leaks between them."""
    return AuditReport([audit_cache(p, config, workers, progress) for p in paths],
                       find_leaks(paths) if len(paths) > 1 else [], config)


def plot_noise_like(report: AuditReport, out_dir: Path) -> list[Path]:
    """``noise_like.png`` in ``out_dir`` for each cache with a noise-like note: the flattest one
    (prefixed with the split when several caches were audited). Returns the files written."""
    from nsynth_prep.display.noise import noise_figure

    written = []
    for c in report.caches:
        if not c.noise_like or c.audio_feature is None:
            continue
        worst = max(c.noise_like, key=lambda n: n["flatness"])
        cache = cache_format.open_cache(c.path)
        audio = cache.floats(c.audio_feature, np.array([worst["row"]])).reshape(-1)
        spectrum = sustained_spectrum(audio[None])[0]
        fig = noise_figure(audio, spectrum, worst["flatness"], report.config.noise_flatness, worst["note"],
                           SAMPLE_RATE, (SUSTAIN_FROM, SUSTAIN_TO), f"{c.path} ({c.audio_feature} feature)")
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / (f"{c.split}_noise_like.png" if len(report.caches) > 1 else "noise_like.png")
        fig.savefig(path, dpi=100)
        written.append(path)
    return written
