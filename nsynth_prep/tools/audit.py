"""Data-quality checks over caches, streamed chunk by chunk.

Per cache: silent or near-silent notes, clipped notes, noise-like notes (spectral flatness of
the sustained part above a threshold, :mod:`.noise`), notes whose audio is identical to
another's, pitches outside the usual range, NaN/inf values. Across caches: instruments that
appear in more than one split (NSynth's splits are instrument-disjoint; a leak inflates
accuracy). Silence and clipping need real samples (``trimmed`` or ``framed``); a cache with
only ``pooled`` gets the other checks and says so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nsynth_prep.cache import format as cache_format
from nsynth_prep.cache.checked import CheckedArray
from nsynth_prep.labels import PIANO_RANGE
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


def audit_cache(path: Where, config: AuditConfig = AuditConfig()) -> CacheAudit:
    """Every per-cache check of one cache (one pass over its chunks)."""
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
    for name in feats:
        feature = CheckedArray(c, name)  # a chunk that fails its build-time checksum stops the audit
        buf = feature.buffer(1)
        for chunk in range(feature.num_chunks):
            start = chunk * feature.chunk_rows
            data = buf[: feature.read_into(chunk, buf)]
            data = data.reshape(len(data), -1)  # (rows, values per note), as stored
            if data.dtype.kind == "f":  # int16 audio cannot hold NaN or inf
                for r in np.flatnonzero(~np.isfinite(data).all(axis=1)):
                    report.non_finite.append({"note": names[start + r], "row": int(start + r), "feature": name})
            if name == audio:
                # The thresholds are in [-1, 1] terms; int16 samples are compared in their own units
                # (widened first: |-32768| does not fit int16).
                magnitude = np.abs(np.nan_to_num(data).astype(np.float32 if data.dtype.kind == "f" else np.int32))
                peak = magnitude.max(axis=1) * feature.scale
                full = (magnitude >= config.clip_level / feature.scale).sum(axis=1)
                for r in np.flatnonzero(peak < config.silent_peak):
                    report.silent.append({"note": names[start + r], "row": int(start + r), "peak": float(peak[r])})
                for r in np.flatnonzero(full >= config.clip_samples):
                    report.clipped.append({"note": names[start + r], "row": int(start + r),
                                           "full_scale_samples": int(full[r])})
                sounding = np.flatnonzero(peak >= config.silent_peak)  # silence is reported as silence
                flatness = _flatness(data[sounding], feature.scale)
                if len(flatness) and (report.flattest is None or flatness.max() > report.flattest["flatness"]):
                    top = start + int(sounding[int(np.argmax(flatness))])
                    report.flattest = {"note": names[top], "row": top, "flatness": float(flatness.max())}
                for r, f in zip(sounding[flatness > config.noise_flatness].tolist(),
                                flatness[flatness > config.noise_flatness].tolist(), strict=True):
                    report.noise_like.append({"note": names[start + r], "row": int(start + r), "flatness": float(f)})
            if name == hashed:
                for k in range(len(data)):
                    digests[start + k] = np.frombuffer(hashlib.blake2b(data[k].tobytes(), digest_size=16).digest(),
                                                       np.uint8)
    silent_rows = {s["row"] for s in report.silent}
    groups = _same_rows(digests) if hashed else []
    report.duplicates = [[str(names[r]) for r in group] for group in groups if not all(r in silent_rows for r in group)]
    return report


def _same_rows(digests: np.ndarray) -> list[list[int]]:
    """Groups of rows with the same digest ((N, 16) uint8), each in row order, the groups in the
    order of their first row; rows alone left out."""
    _, inverse, counts = np.unique(digests.view("V16").ravel(), return_inverse=True, return_counts=True)
    groups: dict[int, list[int]] = {}
    for row in np.flatnonzero(counts[inverse] > 1).tolist():
        groups.setdefault(int(inverse[row]), []).append(row)
    return sorted(groups.values(), key=lambda g: g[0])


def _flatness(data: np.ndarray, scale: float, block: int = 32) -> np.ndarray:
    """(rows,) spectral flatness of stored audio rows (rows, samples), ``block`` rows at a time
    (each row's frames are held as float64 while its spectrum is made)."""
    out = np.zeros(len(data))
    for b in range(0, len(data), block):
        out[b : b + block] = spectral_flatness(np.nan_to_num(data[b : b + block].astype(np.float64) * scale))
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


def audit(paths: Sequence[Where], config: AuditConfig = AuditConfig()) -> AuditReport:
    """Audit each cache, and look for instrument leaks between them."""
    return AuditReport([audit_cache(p, config) for p in paths], find_leaks(paths) if len(paths) > 1 else [], config)


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
