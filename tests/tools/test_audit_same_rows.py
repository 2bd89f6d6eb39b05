"""audit's grouping of identical notes (one (N, 16) digest array and ``np.unique``) against the
plain dict of digest -> rows it replaced: the same groups, in the same order."""

from __future__ import annotations

import numpy as np

from nsynth_prep.tools.audit import _same_rows


def _reference(digests: np.ndarray) -> list[list[int]]:
    groups: dict[bytes, list[int]] = {}
    for row, d in enumerate(digests):
        groups.setdefault(d.tobytes(), []).append(row)
    return [g for g in groups.values() if len(g) > 1]


def test_same_rows_groups_as_a_dict_of_digests_does() -> None:
    rng = np.random.default_rng(0)
    for n, kinds in [(0, 1), (1, 1), (2, 1), (50, 50), (200, 30), (1000, 990)]:
        table = rng.integers(0, 256, (max(kinds, 1), 16), dtype=np.uint8)
        digests = table[rng.integers(0, max(kinds, 1), n)] if n else np.zeros((0, 16), np.uint8)
        assert _same_rows(digests) == _reference(digests), (n, kinds)
    same_but_last_byte = np.zeros((3, 16), np.uint8)
    same_but_last_byte[1, 15] = 1
    assert _same_rows(same_but_last_byte) == [[0, 2]]
