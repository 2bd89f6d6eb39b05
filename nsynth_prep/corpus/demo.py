"""The data half of ``nsynth demo``: a synthetic corpus in ``<data>/nsynth`` (made once) and its
caches in ``<data>/cache``. The training half is :func:`nsynth_train.api.demo_run`; the CLI's
``demo`` command runs the two (training never imports the corpus makers).
"""

from __future__ import annotations

import logging
from pathlib import Path

from nsynth_prep.builder.pipeline import BuildConfig, build_cache
from nsynth_prep.corpus.synth import parse_notes_per_split, write_corpus
from nsynth_prep.errors import ConfigError

# Small enough that the whole demo takes under a minute on 2 cores (docs/benchmarks.md#the-demo),
# large enough that mel-cnn learns the families well past chance.
DEMO_NOTES = "1200,200,200"
DEMO_FEATURES = ("trimmed", "pooled", "framed")  # what mel-cnn, the CNNs and the LSTMs read
COMPLETE = ".complete"  # in the corpus folder once it is whole: the notes per split it was made with

log = logging.getLogger(__name__)


def demo_caches(data_dir: Path, notes_per_split: str | None = None, progress: bool = True) -> tuple[Path, str]:
    """Synthesize the demo corpus into ``data_dir/nsynth`` once (``notes_per_split``, default
    :data:`DEMO_NOTES`) and build (or finish) its caches in ``data_dir/cache``.

    Returns
    -------
    The cache folder, and the build's report (one paragraph per split).

    Raises
    ------
    ConfigError
        ``notes_per_split`` differs from the corpus already made in ``data_dir``.
    """
    corpus, caches = data_dir / "nsynth", data_dir / "cache"
    marker = corpus / COMPLETE
    if marker.exists():
        made = marker.read_text().strip()
        if notes_per_split and parse_notes_per_split(notes_per_split) != parse_notes_per_split(made):
            raise ConfigError(f"{corpus} holds the demo corpus made with --notes-per-split {made}; remove "
                              f"{corpus} and {caches} to make one of {notes_per_split}, or leave the option out")
    else:
        notes_per_split = notes_per_split or DEMO_NOTES
        log.info("synthesizing the demo corpus into %s", corpus)
        write_corpus(corpus, parse_notes_per_split(notes_per_split), ("jsonwav",), seed=0, progress=progress)
        marker.write_text(notes_per_split + "\n")
    summaries = build_cache(corpus, caches, BuildConfig(features=DEMO_FEATURES, workers=2), progress=progress)
    return caches, "\n".join(s.report() for s in summaries)
