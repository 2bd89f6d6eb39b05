"""The names the prep side's command line offers, written once: imports nothing (no numpy, no
numba), so ``cli.py`` reads them at start-up and ``nsynth --help`` stays instant.

The modules that give the names meaning read them from here (the corpus layouts) or key their
registries by them (:data:`nsynth_prep.features.FEATURES`; a test holds the two equal).
"""

from __future__ import annotations

FEATURE_NAMES = ("pooled", "framed", "trimmed")  # the cached features (nsynth_prep.features)
FORMATS = ("jsonwav", "targz", "tfrecord")  # NSynth's shipped layouts the corpus makers write
ON_ERROR = ("fail", "skip")  # what a build does with a bad note (BuildConfig.on_error, --on-error)
