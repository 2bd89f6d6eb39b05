"""nsynth prep: NSynth as shipped (JSON+WAV folders, ``.jsonwav.tar.gz`` archives, TFRecord files)
into checked zarr caches of the features models eat, with every label.

The names below are the Python API; import them from here (``from nsynth_prep import
build_cache``): the modules inside may move, these names stay.

Build and read caches
    :func:`build_cache` (:class:`BuildConfig` -> list of :class:`BuildSummary`),
    :func:`open_cache` (-> :class:`Cache`), :func:`cache_path`, :func:`verify_cache`,
    :class:`CheckedArray` (a feature array whose chunks are checked as they are read).
Make NSynth-format corpora
    :func:`write_corpus` (synthetic tones, any layout), :func:`write_descriptors` (a large
    synthetic corpus described, synthesized at build time), :func:`parse_notes_per_split`,
    :func:`render_corpus` (:class:`RenderConfig`; SoundFonts through FluidSynth),
    :func:`demo_caches` (the demo's corpus, made once, and its caches: ``nsynth demo``'s data half).
Look at caches
    :func:`inspect_cache` (``nsynth inspect``: text, JSON, figures), :func:`describe` /
    :func:`format_description` (its data and text), :func:`audit` (:class:`AuditConfig`),
    :func:`export_hdf5`.
Vocabularies and features
    :data:`FAMILIES`, :data:`SOURCES`, :data:`QUALITIES`, :data:`FEATURES`, :func:`feature_spec`.
Errors
    :class:`NsynthError`: every error nsynth raises on bad input is one of its subclasses,
    :class:`ConfigError`, :class:`SourceError` (:class:`LabelError`, :class:`WavFormatError`,
    :class:`TFRecordError`), :class:`CacheError`, :class:`LockedError`, :class:`CheckpointError`,
    :class:`RunError`, :class:`StorageError`, :class:`RenderError`.

Layout (data flows down this list's reverse: kernels < readers/storage < cache < build < tools):
``kernels/`` numba kernels, ``readers/`` sources, ``storage/`` paths, URLs, locks, atomic writes,
``cache/`` the format, ``build/`` cache building, ``corpus/`` corpus makers, ``tools/`` inspect,
audit, export, ``display/`` figures.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> module that defines it; imported on first use, so ``import nsynth_prep.errors`` does not
# pull in zarr, numba or matplotlib.
_WHERE = {
    "BuildConfig": "builder.pipeline", "BuildSummary": "builder.pipeline", "build_cache": "builder.pipeline",
    "Cache": "cache.format", "cache_path": "cache.format", "open_cache": "cache.format",
    "CheckedArray": "cache.checked", "verify_cache": "cache.verify",
    "write_corpus": "corpus.synth", "write_descriptors": "corpus.synth", "parse_notes_per_split": "readers.tones",
    "RenderConfig": "corpus.render", "render_corpus": "corpus.render", "demo_caches": "corpus.demo",
    "describe": "tools.inspect", "format_description": "tools.inspect", "inspect_cache": "tools.inspect",
    "AuditConfig": "tools.audit", "audit": "tools.audit", "export_hdf5": "tools.export",
    "FAMILIES": "labels", "SOURCES": "labels", "QUALITIES": "labels",
    "FEATURES": "features", "feature_spec": "features",
    "NsynthError": "errors", "ConfigError": "errors", "SourceError": "errors", "LabelError": "errors",
    "WavFormatError": "errors", "TFRecordError": "errors", "CacheError": "errors", "LockedError": "errors",
    "CheckpointError": "errors", "RunError": "errors", "StorageError": "errors", "RenderError": "errors",
}

__all__ = [
    "FAMILIES",
    "FEATURES",
    "QUALITIES",
    "SOURCES",
    "AuditConfig",
    "BuildConfig",
    "BuildSummary",
    "Cache",
    "CacheError",
    "CheckedArray",
    "CheckpointError",
    "ConfigError",
    "LabelError",
    "LockedError",
    "NsynthError",
    "RenderConfig",
    "RenderError",
    "RunError",
    "SourceError",
    "StorageError",
    "TFRecordError",
    "WavFormatError",
    "audit",
    "build_cache",
    "cache_path",
    "demo_caches",
    "describe",
    "export_hdf5",
    "feature_spec",
    "format_description",
    "inspect_cache",
    "open_cache",
    "parse_notes_per_split",
    "render_corpus",
    "verify_cache",
    "write_corpus",
    "write_descriptors",
]
assert set(_WHERE) == set(__all__)  # one list of names, two uses

if TYPE_CHECKING:
    from nsynth_prep.builder.pipeline import BuildConfig, BuildSummary, build_cache
    from nsynth_prep.cache.checked import CheckedArray
    from nsynth_prep.cache.format import Cache, cache_path, open_cache
    from nsynth_prep.cache.verify import verify_cache
    from nsynth_prep.corpus.demo import demo_caches
    from nsynth_prep.corpus.render import RenderConfig, render_corpus
    from nsynth_prep.corpus.synth import write_corpus, write_descriptors
    from nsynth_prep.errors import (
        CacheError,
        CheckpointError,
        ConfigError,
        LabelError,
        LockedError,
        NsynthError,
        RenderError,
        RunError,
        SourceError,
        StorageError,
        TFRecordError,
        WavFormatError,
    )
    from nsynth_prep.features import FEATURES, feature_spec
    from nsynth_prep.labels import FAMILIES, QUALITIES, SOURCES
    from nsynth_prep.readers.tones import parse_notes_per_split
    from nsynth_prep.tools.audit import AuditConfig, audit
    from nsynth_prep.tools.export import export_hdf5
    from nsynth_prep.tools.inspect import describe, format_description, inspect_cache


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'nsynth_prep' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"nsynth_prep.{_WHERE[name]}"), name)
    globals()[name] = value  # next time without this hook
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
