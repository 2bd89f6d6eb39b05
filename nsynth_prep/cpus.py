"""The cores this process may use, and the one way nsynth runs work in other processes.

:func:`cpu_threads` is the count that sizes every thread pool of nsynth (checked reads, the
training loader's decode threads, the threads of each DDP rank); :func:`process_map` runs jobs in
worker processes for the TFRecord scan, the cache builder and the SoundFont renderer.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

J = TypeVar("J")
R = TypeVar("R")


def cpu_threads() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def process_map(fn: Callable[[J], R], jobs: Iterable[J], workers: int, start: str = "fork", ordered: bool = True,
                initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = ()) -> Generator[R, None, None]:
    """``fn(job)`` for every job, in ``workers`` processes started by ``start`` ("fork" or
    "spawn"): results in job order (``ordered``) or as they finish.

    concurrent.futures rather than ``multiprocessing.Pool``: when a job raises, leaving a Pool
    calls ``terminate()``, which can wait for ever on its task thread (a worker stopped while it
    held the result queue: seen in this project's tests, in the TFRecord scan and the builder).
    Here the jobs not started are cancelled and the running ones end on their own, also when the
    caller stops early or is interrupted (the generator's ``finally``).
    """
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(start), initializer=initializer,
                               initargs=initargs)
    try:
        futures = [pool.submit(fn, job) for job in jobs]
        for future in futures if ordered else as_completed(futures):
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
