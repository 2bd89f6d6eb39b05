"""One colour per family and per source, shared by every figure (hex strings, no matplotlib)."""

from __future__ import annotations

from nsynth_prep.labels import FAMILIES, SOURCES

# Matplotlib's tab10 plus one grey, in NSynth family id order, so a family looks the same in
# the inspect figures and the training figures.
_TAB = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
        "#bcbd22", "#555555", "#17becf")
FAMILY_COLORS: dict[str, str] = dict(zip(FAMILIES, _TAB, strict=True))
SOURCE_COLORS: dict[str, str] = dict(zip(SOURCES, ("#4c72b0", "#dd8452", "#55a868"), strict=True))


def color_of(name: str) -> str:
    """The colour of a family or source name (grey for anything else)."""
    return FAMILY_COLORS.get(name) or SOURCE_COLORS.get(name) or "#333333"
