"""A dependency-free progress bar on stderr: count, rate and time left."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``with Progress(total, "train", unit="notes") as bar: bar.update(k)``.

    Draws on a terminal at most 10 times a second; when stderr is not a terminal (CI, logs)
    it prints a line every 10 % instead, so logs stay short.
    """

    def __init__(self, total: int, desc: str, unit: str = "notes", stream: TextIO | None = None,
                 enabled: bool = True) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.done = 0
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._last_decile = -1
        self.postfix = ""

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty and now - self._last_draw >= 0.1:
            self._last_draw = now
            self.stream.write("\r" + self.line())
            self.stream.flush()
        elif not self.tty and self.total:
            decile = 10 * self.done // self.total
            if decile > self._last_decile and decile < 10:
                self._last_decile = decile
                self.stream.write(self.line() + "\n")

    def line(self) -> str:
        frac = self.done / self.total if self.total else 1.0
        width = 24
        filled = int(frac * width)
        bar = "#" * filled + "-" * (width - filled)
        rate = self.rate
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        post = f" {self.postfix}" if self.postfix else ""
        return (f"{self.desc} [{bar}] {self.done:,}/{self.total:,} {self.unit} "
                f"{rate:,.0f} {self.unit}/s, {_clock(time.perf_counter() - self.start)} "
                f"elapsed, {_clock(left)} left{post}")

    def close(self) -> None:
        if self.enabled:
            self.stream.write(("\r" if self.tty else "") + self.line() + "\n")
            self.stream.flush()
            self.enabled = False


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
