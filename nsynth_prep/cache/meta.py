"""The metadata of a cache (``attrs['nsynth']`` in its ``zarr.json``) as typed, frozen dataclasses.

:class:`CacheMeta` holds the cache's state, size, label vocabularies and checksums, its
:class:`BuildMeta` (where the rows came from and with which options) and one
:class:`FeatureMeta` per built feature (how it was computed, its dtype and scale, its chunk
checksums). Each class has ``to_attrs()`` (plain JSON) and ``from_attrs()``, which validates
with the plain ``parse_*`` functions below and raises :class:`MetaError` naming the key at
fault. Nothing outside :mod:`nsynth_prep.cache.format` uses this module's key names; readers get the
classes from :mod:`nsynth_prep.cache.format`, which re-exports them and turns a ``MetaError`` into a
``CacheError`` naming the file.
"""

from __future__ import annotations

import dataclasses
import math
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nsynth_prep.features import FEATURES, FeatureSpec, spec_from_dict
from nsynth_prep.labels import FAMILIES, QUALITIES, SOURCES, LabelTable
from nsynth_prep.readers.fingerprint import SourceFingerprint
from nsynth_prep.storage.store import Location
from nsynth_prep.vocabulary import ON_ERROR

FORMAT = "nsynth-cache"
FORMAT_VERSION = 2
CHECKSUM = "crc32c"  # of every feature chunk's and label array's bytes; see cache.checksum
STATES = ("building", "complete")
SOURCE_FORMATS = ("jsonwav", "targz", "tfrecord", "synth")
_CRC_RE = re.compile(r"[0-9a-f]{8}\Z")


class MetaError(ValueError):
    """A metadata value that is missing or malformed; the message names its key."""


# --- parse functions: a JSON value, or MetaError naming ``what`` -------------------------------


def parse_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MetaError(f"{what} is {_show(value)}, not an object")
    return value


def parse_int(value: Any, what: str, low: int = 0) -> int:
    if type(value) is not int or value < low:  # bool is an int subclass: refused by the type check
        raise MetaError(f"{what} is {_show(value)}, not an integer >= {low}")
    return value


def parse_str(value: Any, what: str, choices: tuple[str, ...] = ()) -> str:
    if not isinstance(value, str) or (choices and value not in choices):
        expected = f"one of {', '.join(choices)}" if choices else "a string"
        raise MetaError(f"{what} is {_show(value)}, not {expected}")
    return value


def parse_bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise MetaError(f"{what} is {_show(value)}, not true or false")
    return value


def parse_strs(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MetaError(f"{what} is {_show(value)}, not a list of strings")
    return tuple(value)


def parse_crc(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _CRC_RE.match(value):
        raise MetaError(f"{what} is {_show(value)}, not a checksum (8 hex digits)")
    return value


def parse_scale(value: Any, what: str) -> float:
    if type(value) not in (int, float) or not (math.isfinite(value) and value > 0):
        raise MetaError(f"{what} is {_show(value)}, not a positive number")
    return float(value)


def _show(value: Any) -> str:
    text = repr(value)
    return "missing" if value is None else text if len(text) <= 60 else text[:57] + "..."


# --- the classes ---------------------------------------------------------------------------------


def _source_fingerprint(value: Any, where: str) -> SourceFingerprint:
    """A :class:`SourceFingerprint` from its attrs dict, each field checked."""
    d = parse_dict(value, where)
    return SourceFingerprint(parse_int(d.get("scheme"), f"{where}.scheme", 1), parse_str(d.get("kind"), f"{where}.kind"),
                             parse_int(d.get("files"), f"{where}.files"), parse_int(d.get("bytes"), f"{where}.bytes"),
                             parse_str(d.get("digest"), f"{where}.digest"))


@dataclass(frozen=True)
class SourceMeta:
    """The source a cache was built from: its path when built, its format and fingerprint."""

    path: str
    format: str  # "jsonwav" | "targz" | "tfrecord" | "synth" (a described synthetic corpus, rendered into the cache)
    fingerprint: SourceFingerprint

    def to_attrs(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.format, "fingerprint": self.fingerprint.to_attrs()}

    @classmethod
    def from_attrs(cls, value: Any, where: str) -> SourceMeta:
        d = parse_dict(value, where)
        return cls(parse_str(d.get("path"), f"{where}.path"),
                   parse_str(d.get("format"), f"{where}.format", SOURCE_FORMATS),
                   _source_fingerprint(d.get("fingerprint"), f"{where}.fingerprint"))


@dataclass(frozen=True)
class RowOptions:
    """The build options that decide which notes are rows and in which order."""

    families: tuple[str, ...] = ()  # keep only these (empty: all)
    exclude_families: tuple[str, ...] = ()
    seed: int = 0  # row-order seed
    on_error: str = "fail"  # "fail" or "skip"
    # --exclude-notes: the list's source, size and hash (nsynth_prep.exclusions.NoteList.digest); "" for none
    exclude_notes: str = ""

    def differences(self, now: RowOptions) -> list[str]:
        """``--option was X, now Y`` for each option that differs between ``self`` and ``now``."""
        return [f"--{f.name.replace('_', '-')} was {_cli(getattr(self, f.name))}, now {_cli(getattr(now, f.name))}"
                for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(now, f.name)]


def _cli(value: Any) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


@dataclass(frozen=True)
class Skipped:
    """A note left out by ``--on-error skip``, and why."""

    note: str
    reason: str


# Skipped notes listed in the attrs; a longer list is kept whole in the cache's skipped/ arrays
# (.format.SKIPPED): 300,000 in zarr.json made it 62 MB, parsed on every open.
SKIPPED_IN_ATTRS = 20


@dataclass(frozen=True)
class BuildMeta:
    """How the cache's rows were made. ``skipped``: the first :data:`SKIPPED_IN_ATTRS` notes skipped
    (an older cache's: all), ``skipped_count`` of them in all, ``skipped_checksum`` that of the
    ``skipped/`` arrays holding a longer list whole (else None)."""

    split: str
    source: SourceMeta
    rows: RowOptions
    workers: int
    allow_empty: bool
    skipped: tuple[Skipped, ...] = ()
    skipped_count: int = 0
    skipped_checksum: str | None = None

    def to_attrs(self) -> dict[str, Any]:
        crc = {} if self.skipped_checksum is None else {"skipped_checksum": self.skipped_checksum}
        return {"split": self.split, "source": self.source.to_attrs(), "families": list(self.rows.families),
                "exclude_families": list(self.rows.exclude_families), "seed": self.rows.seed,
                "on_error": self.rows.on_error, "workers": self.workers, "allow_empty": self.allow_empty,
                "skipped": [{"note": s.note, "reason": s.reason} for s in self.skipped],
                "skipped_count": self.skipped_count, **crc,
                # only when given: a cache built without a list has the attrs it always had
                **({"exclude_notes": self.rows.exclude_notes} if self.rows.exclude_notes else {})}

    @classmethod
    def from_attrs(cls, value: Any, where: str = "build") -> BuildMeta:
        d = parse_dict(value, where)
        families = parse_strs(d.get("families"), f"{where}.families")
        excluded = parse_strs(d.get("exclude_families"), f"{where}.exclude_families")
        for name in (*families, *excluded):
            parse_str(name, f"{where}.families", FAMILIES)
        rows = RowOptions(families, excluded, parse_int(d.get("seed"), f"{where}.seed"),
                          parse_str(d.get("on_error"), f"{where}.on_error", ON_ERROR),
                          parse_str(d.get("exclude_notes", ""), f"{where}.exclude_notes"))
        skipped = d.get("skipped")
        if not isinstance(skipped, list):
            raise MetaError(f"{where}.skipped is {_show(skipped)}, not a list")
        notes = []
        for i, s in enumerate(skipped):
            s = parse_dict(s, f"{where}.skipped[{i}]")
            notes.append(Skipped(parse_str(s.get("note"), f"{where}.skipped[{i}].note"),
                                 parse_str(s.get("reason"), f"{where}.skipped[{i}].reason")))
        count, crc = _skipped_count(d, where, len(notes))
        return cls(parse_str(d.get("split"), f"{where}.split"), SourceMeta.from_attrs(d.get("source"), f"{where}.source"),
                   rows, parse_int(d.get("workers"), f"{where}.workers", 1),
                   parse_bool(d.get("allow_empty"), f"{where}.allow_empty"), tuple(notes), count, crc)


def _skipped_count(d: dict[str, Any], where: str, listed: int) -> tuple[int, str | None]:
    """``skipped_count`` and ``skipped_checksum``, checked against the ``listed`` notes (an older cache: all)."""
    count = parse_int(d.get("skipped_count", listed), f"{where}.skipped_count")
    if listed != min(count, SKIPPED_IN_ATTRS) and "skipped_count" in d:
        raise MetaError(f"{where}.skipped lists {listed} notes of {count}, not the first {min(count, SKIPPED_IN_ATTRS)}")
    if count <= SKIPPED_IN_ATTRS or "skipped_count" not in d:
        return count, None
    return count, parse_crc(d.get("skipped_checksum"), f"{where}.skipped_checksum")


@dataclass(frozen=True)
class FeatureMeta:
    """A built feature: how it was computed, how it is stored, the CRC of each chunk.

    ``stored values * scale`` are the feature as floats in [-1, 1] (int16 audio: 1/32768).
    """

    spec: FeatureSpec
    chunk_rows: int
    checksums: tuple[str, ...]  # one per chunk of ``chunk_rows`` rows, over the rows' stored bytes

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.spec.dtype

    @property
    def scale(self) -> float:
        return self.spec.scale

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.spec.row_shape

    def to_attrs(self) -> dict[str, Any]:
        return {"params": self.spec.to_dict(), "dtype": str(self.dtype), "scale": self.scale,
                "chunk_rows": self.chunk_rows, "checksums": list(self.checksums)}

    @classmethod
    def from_attrs(cls, value: Any, where: str) -> FeatureMeta:
        d = parse_dict(value, where)
        try:
            spec = spec_from_dict(d.get("params"))  # type: ignore[arg-type]
        except ValueError as exc:
            raise MetaError(f"{where}.params: {exc}") from None
        # dtype and scale are stored for plain-zarr readers; they must be what this nsynth writes.
        dtype = parse_str(d.get("dtype"), f"{where}.dtype", (str(spec.dtype),))
        scale = parse_scale(d.get("scale"), f"{where}.scale")
        if scale != spec.scale:
            raise MetaError(f"{where}.scale is {scale!r}; {spec.name} stored as {dtype} has scale {spec.scale!r}")
        sums = d.get("checksums")
        if not isinstance(sums, list):
            raise MetaError(f"{where}.checksums is {_show(sums)}, not a list")
        return cls(spec, parse_int(d.get("chunk_rows"), f"{where}.chunk_rows", 1),
                   tuple(parse_crc(s, f"{where}.checksums[{i}]") for i, s in enumerate(sums)))


@dataclass(frozen=True)
class Counts:
    """Notes per family x source (NSynth ids index both axes)."""

    family_source: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, labels: LabelTable) -> Counts:
        table = np.zeros((len(FAMILIES), len(SOURCES)), np.int64)
        np.add.at(table, (labels.family.astype(np.int64), labels.source.astype(np.int64)), 1)
        return cls(tuple(tuple(row) for row in table.tolist()))

    @property
    def notes(self) -> int:
        return sum(map(sum, self.family_source))

    @property
    def family(self) -> dict[str, int]:
        return {name: sum(row) for name, row in zip(FAMILIES, self.family_source, strict=True)}

    @property
    def source(self) -> dict[str, int]:
        return {name: sum(col) for name, col in zip(SOURCES, zip(*self.family_source, strict=True), strict=True)}

    def to_attrs(self) -> dict[str, Any]:
        return {"notes": self.notes, "family_source": [list(r) for r in self.family_source], "family": self.family,
                "source": self.source}

    @classmethod
    def from_attrs(cls, value: Any, where: str = "counts") -> Counts:
        d = parse_dict(value, where)
        table = d.get("family_source")
        shape_ok = (isinstance(table, list) and len(table) == len(FAMILIES)
                    and all(isinstance(r, list) and len(r) == len(SOURCES) for r in table))
        if not shape_ok:
            raise MetaError(f"{where}.family_source is not a {len(FAMILIES)} x {len(SOURCES)} table")
        counts = cls(tuple(tuple(parse_int(v, f"{where}.family_source") for v in r) for r in table))  # type: ignore[union-attr]
        if counts.to_attrs() != d:
            raise MetaError(f"{where}: the totals do not agree with family_source")
        return counts


@dataclass(frozen=True)
class CacheMeta:
    """Everything a cache says about itself."""

    state: str  # "building" until every array is written, then "complete"
    notes: int
    build: BuildMeta
    label_checksums: Mapping[str, str]  # label column -> checksum of the whole array
    features: Mapping[str, FeatureMeta] = field(default_factory=dict)  # finished features only
    building: tuple[str, ...] = ()  # features being added now (not readable yet)
    counts: Counts | None = None  # once complete
    families: tuple[str, ...] = FAMILIES
    sources: tuple[str, ...] = SOURCES
    qualities: tuple[str, ...] = QUALITIES

    @property
    def complete(self) -> bool:
        return self.state == "complete"

    @property
    def split(self) -> str:
        return self.build.split

    def to_attrs(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "state": self.state, "notes": self.notes,
            "families": list(self.families), "sources": list(self.sources), "qualities": list(self.qualities),
            "checksum": CHECKSUM, "label_checksums": dict(self.label_checksums),
            "features": {name: f.to_attrs() for name, f in self.features.items()}, "building": list(self.building),
            "build": self.build.to_attrs(),
        }
        if self.counts is not None:
            attrs["counts"] = self.counts.to_attrs()
        return attrs

    @classmethod
    def from_attrs(cls, value: Any) -> CacheMeta:
        """Parse and cross-check ``attrs['nsynth']`` of a format-2 cache.

        Raises
        ------
        MetaError
            The first key that is missing, malformed or inconsistent with the rest.
        """
        d = parse_dict(value, "attrs")
        parse_str(d.get("format"), "format", (FORMAT,))
        if d.get("format_version") != FORMAT_VERSION:
            raise MetaError(f"format_version is {_show(d.get('format_version'))}, not {FORMAT_VERSION}")
        parse_str(d.get("checksum"), "checksum", (CHECKSUM,))
        for key, want in (("families", FAMILIES), ("sources", SOURCES), ("qualities", QUALITIES)):
            if parse_strs(d.get(key), key) != want:
                raise MetaError(f"{key} are not NSynth's: {d.get(key)}")
        state = parse_str(d.get("state"), "state", STATES)
        notes = parse_int(d.get("notes"), "notes")
        sums = parse_dict(d.get("label_checksums"), "label_checksums")
        if sorted(sums) != sorted(LabelTable.COLUMNS):
            raise MetaError(f"label_checksums has {sorted(sums)}, expected {sorted(LabelTable.COLUMNS)}")
        label_checksums = {k: parse_crc(v, f"label_checksums.{k}") for k, v in sums.items()}
        features = {}
        for name, f in parse_dict(d.get("features"), "features").items():
            meta = FeatureMeta.from_attrs(f, f"features.{name}")
            if meta.name != name:
                raise MetaError(f"features.{name} holds the params of {meta.name}")
            if len(meta.checksums) != math.ceil(notes / meta.chunk_rows):
                raise MetaError(f"features.{name}: {len(meta.checksums)} chunk checksums for "
                                f"{math.ceil(notes / meta.chunk_rows)} chunks")
            features[name] = meta
        building = parse_strs(d.get("building"), "building")
        counts = Counts.from_attrs(d.get("counts")) if "counts" in d or state == "complete" else None
        if counts is not None and counts.notes != notes:
            raise MetaError(f"counts add up to {counts.notes} notes, not {notes}")
        return cls(state, notes, BuildMeta.from_attrs(d.get("build")), label_checksums, features, building, counts)


def rebuild_command(path: Location, own: dict[str, Any]) -> str:
    """The shell command that replaces an older cache with one built the same way (from what its
    attrs say, where they say it; placeholders in capitals where they do not)."""
    def part(d: dict[str, Any], key: str) -> dict[str, Any]:
        return d[key] if isinstance(d.get(key), dict) else {}

    build = part(own, "build")
    source = part(build, "source")
    features = part(own, "features")
    args = ["nsynth", "prep", "build-cache", str(source.get("path") or "SOURCE"), "--cache", str(path.parent),
            "--split", str(build.get("split") or path.name.removesuffix(".zarr"))]
    for name in [f for f in FEATURES if f in features] or ["pooled"]:
        args += ["--feature", name]
    for option in ("families", "exclude_families"):
        if isinstance(build.get(option), list) and build[option]:
            args += [f"--{option.replace('_', '-')}", ",".join(map(str, build[option]))]
    for option in ("seed", "on_error"):
        if build.get(option) not in (None, 0, "fail"):
            args += [f"--{option.replace('_', '-')}", str(build[option])]
    return f"rm -r {shlex.quote(str(path))} && {shlex.join(args)}"
