"""Describe a cache offline: what it holds, how it was built, how its labels are spread.

Pure data and text; the figures are in :mod:`nsynth_prep.display.notes`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from nsynth_prep.cache import format as cache_format
from nsynth_prep.cache.skipped import skipped_notes
from nsynth_prep.errors import CacheError
from nsynth_prep.storage.store import Where, disk_bytes


def describe(path: Where) -> dict[str, Any]:
    """Everything ``nsynth inspect`` prints, as plain data (JSON-serialisable); ``path``: a folder or URL."""
    c = cache_format.open_cache(path)
    meta = c.meta
    labels = c.labels()
    features = {}
    for name, feature in meta.features.items():
        arr = c.array(name)
        features[name] = {
            "shape": list(arr.shape), "dtype": str(feature.dtype), "scale": feature.scale, "chunks": list(arr.chunks),
            "compressors": [type(x).__name__ + _codec_args(x) for x in arr.compressors],
            "disk_bytes": disk_bytes(c.path / name), "raw_bytes": int(arr.nbytes),
            "params": feature.spec.to_dict(),
        }
    counts = meta.counts or cache_format.Counts.of(labels)
    pitch_by_family = {}
    for f, name in enumerate(meta.families):
        p = labels.pitch[labels.family == f]
        if len(p):
            pitch_by_family[name] = [int(p.min()), int(p.max())]
    build = meta.build
    return {
        "path": str(c.path), "split": meta.split, "format_version": cache_format.FORMAT_VERSION,
        "notes": len(c), "disk_bytes": disk_bytes(c.path), "features": features,
        "building": list(meta.building), "source": dataclasses.asdict(build.source), "seed": build.rows.seed,
        "filters": {"families": list(build.rows.families), "exclude_families": list(build.rows.exclude_families),
                    **({"exclude_notes": build.rows.exclude_notes} if build.rows.exclude_notes else {})},
        "families": list(meta.families), "sources": list(meta.sources),
        "family_source": [list(row) for row in counts.family_source],
        "pitch": [int(labels.pitch.min()), int(labels.pitch.max())] if len(c) else None,
        "pitch_by_family": pitch_by_family,
        "velocity": sorted({int(v) for v in labels.velocity}),
        "instruments": len(np.unique(labels.instrument)),
        "qualities": {q: int(n) for q, n in zip(meta.qualities, labels.qualities.sum(0).tolist(), strict=True)},
        "skipped": [dataclasses.asdict(s) for s in skipped_notes(c)],  # the whole list, beside the attrs when long
    }


def _codec_args(codec: Any) -> str:
    cname = getattr(codec, "cname", None)
    level = getattr(codec, "clevel", getattr(codec, "level", None))
    parts = [str(getattr(cname, "value", cname))] if cname else []
    if level is not None:
        parts.append(f"level {level}")
    return f"({', '.join(parts)})" if parts else ""


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def format_description(info: dict[str, Any]) -> str:
    """One screen of text for a :func:`describe` dict."""
    src = info["source"]
    lines = [
        f"{info['path']}: {info['split']} split, {info['notes']:,} notes from {info['instruments']} instruments, "
        f"{_size(info['disk_bytes'])} on disk (format version {info['format_version']})",
        f"built from {src['format']} {src['path']} (row-order seed {info['seed']}"
        + (f", families {','.join(info['filters']['families'])}" if info["filters"]["families"] else "")
        + (f", excluding {','.join(info['filters']['exclude_families'])}" if info["filters"]["exclude_families"] else "")
        + (f", excluding the notes of {info['filters']['exclude_notes']}" if "exclude_notes" in info["filters"] else "")
        + ")",
        "",
        f"{'feature':<9} {'shape':<20} {'dtype':<8} {'scale':<8} {'chunk':<18} {'compression':<26} {'on disk':>10}",
    ]
    for name, f in info["features"].items():
        ratio = f["disk_bytes"] / f["raw_bytes"] if f["raw_bytes"] else 0
        scale = "1" if f["scale"] == 1 else f"1/{round(1 / f['scale'])}"
        lines.append(f"{name:<9} {'x'.join(map(str, f['shape'])):<20} {f['dtype']:<8} {scale:<8} "
                     f"{'x'.join(map(str, f['chunks'])):<18} {', '.join(f['compressors']) or 'none':<26} "
                     f"{_size(f['disk_bytes']):>10} ({ratio:.0%})")
    if info["building"]:
        lines.append(f"being built (not readable yet): {', '.join(info['building'])}")
    lines += ["", "notes per family and source:"]
    sources = info["sources"]
    lines.append(f"  {'':<11}" + "".join(f"{s:>11}" for s in sources) + f"{'total':>9}")
    table = np.array(info["family_source"])
    for f, name in enumerate(info["families"]):
        if table[f].sum():
            pr = info["pitch_by_family"].get(name)
            lines.append(f"  {name:<11}" + "".join(f"{v:>11,}" for v in table[f]) + f"{table[f].sum():>9,}"
                         + (f"   pitch {pr[0]}..{pr[1]}" if pr else ""))
    lines.append(f"  {'total':<11}" + "".join(f"{v:>11,}" for v in table.sum(0)) + f"{table.sum():>9,}")
    lines.append("")
    if info["pitch"]:
        lines.append(f"pitch {info['pitch'][0]}..{info['pitch'][1]}; velocities {', '.join(map(str, info['velocity']))}")
    flagged = {q: n for q, n in info["qualities"].items() if n}
    lines.append("qualities: " + (", ".join(f"{q} {n:,}" for q, n in flagged.items()) or "none flagged"))
    skipped = info["skipped"]
    lines.append(f"skipped at build: {len(skipped)} note(s)" if skipped else "skipped at build: none")
    lines += [f"  {s['note']}: {s['reason']}" for s in skipped[:5]]
    if len(skipped) > 5:
        lines.append(f"  ... and {len(skipped) - 5} more")
    return "\n".join(lines)


def find_note(c: cache_format.Cache, note_str: str) -> tuple[int, dict[str, Any]]:
    """Row and labels of one note; ``CacheError`` naming near matches when it is not there."""
    names = np.asarray(c.label("note_str").tolist())
    hits = np.flatnonzero(names == note_str)
    if not len(hits):
        prefix = note_str.rsplit("-", 2)[0]
        near = [str(n) for n in names if str(n).startswith(prefix)][:5]
        raise CacheError(f"{c.path}: no note {note_str!r}" + (f"; same instrument: {', '.join(near)}" if near else ""))
    row = int(hits[0])
    families, sources, qualities = c.meta.families, c.meta.sources, c.meta.qualities
    labels = {name: cache_format.read(c.array(name), row) for name in ("family", "source", "pitch", "velocity",
                                                                        "instrument", "note", "qualities")}
    info = {
        "note_str": note_str, "row": row,
        "family": f"{int(labels['family'])} ({families[int(labels['family'])]})",
        "source": f"{int(labels['source'])} ({sources[int(labels['source'])]})",
        "pitch": int(labels["pitch"]), "velocity": int(labels["velocity"]),
        "instrument": int(labels["instrument"]), "note": int(labels["note"]),
        "qualities": [q for q, f in zip(qualities, labels["qualities"].tolist(), strict=True) if f],
    }
    return row, info


def format_note(info: dict[str, Any]) -> str:
    width = max(len(k) for k in info)
    return "\n".join(f"{k:<{width}}  {', '.join(v) if isinstance(v, list) else v}" for k, v in info.items())


def inspect_cache(path: Where, note_str: str | None = None, plot_dir: Path | None = None,
                  as_json: bool = False) -> str:
    """What ``nsynth inspect`` prints: the cache's description (or one note's labels with
    ``note_str``), as text or JSON, and with ``plot_dir`` the figures written there (one line each).

    Raises
    ------
    CacheError
        The cache cannot be opened, or has no note ``note_str``.
    """
    from nsynth_prep.display import notes  # matplotlib only when figures are asked for

    if note_str:
        c = cache_format.open_cache(path)
        row, info = find_note(c, note_str)
        lines = [json.dumps(info, indent=2) if as_json else format_note(info)]
        if plot_dir:
            plot_dir.mkdir(parents=True, exist_ok=True)
            lines.append(f"figure: {notes.plot_note(c, row, note_str, plot_dir / f'{note_str}.png')}")
        return "\n".join(lines)
    info = describe(path)
    lines = [json.dumps(info, indent=2) if as_json else format_description(info)]
    if plot_dir:
        lines += [f"figure: {figure}" for figure in notes.write_overview(cache_format.open_cache(path), plot_dir)]
    return "\n".join(lines)
