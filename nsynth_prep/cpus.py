"""How many cores this process may use: the one count that sizes every thread pool of nsynth
(checked reads, the training loader's decode threads, the threads of each DDP rank)."""

from __future__ import annotations

import os


def cpu_threads() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
