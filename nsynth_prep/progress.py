"""Progress bars: a thin layer over ``tqdm.auto`` (a terminal bar, or a widget in notebooks).

Every long step (scans, builds, synthesis, training epochs, export) reports through
:class:`Progress`, so ``nsynth -q`` turns all of them off in one place. Byte counts use
``unit="B"`` and are shown scaled (KiB, MiB, GiB), so a total is exact, not rounded to MiB.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm.auto import tqdm


class Progress:
    """``with Progress(total, "train", unit="notes") as bar: bar.update(k)``.

    Parameters
    ----------
    total
        Units of work in all (notes, or bytes with ``unit="B"``).
    desc
        What the bar is doing, shown first.
    unit
        ``"notes"``, ``"MiB"``... or ``"B"`` for byte counts (shown as KiB/MiB/GiB).
    stream
        Where to draw (stderr by default). When it is not a terminal (CI, log files) the bar
        is redrawn at most every 10 s, so logs stay short.
    enabled
        False draws nothing (``nsynth -q``).
    """

    def __init__(self, total: int, desc: str, unit: str = "notes", stream: TextIO | None = None,
                 enabled: bool = True) -> None:
        stream = stream or sys.stderr
        tty = stream.isatty()
        scaled = unit == "B"
        self._bar = tqdm(total=total, desc=desc, unit=unit, file=stream, disable=not enabled,
                         unit_scale=scaled, unit_divisor=1024 if scaled else 1000, dynamic_ncols=tty,
                         mininterval=0.1 if tty else 10.0, leave=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def done(self) -> int:
        """Units counted so far."""
        return int(self._bar.n)

    @property
    def postfix(self) -> str:
        return str(self._bar.postfix or "")

    @postfix.setter
    def postfix(self, text: str) -> None:
        """Text after the counts (e.g. running loss and accuracy), drawn with the next update."""
        self._bar.set_postfix_str(text, refresh=False)

    def update(self, n: int = 1) -> None:
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()
