"""The listening error-analysis report of a run (``nsynth report``): one static HTML page with
its notes' audio and pictures beside it (:func:`write_report`). Imported on first use, so that
``nsynth runs`` reads :mod:`.svg` without loading torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["write_report"]

if TYPE_CHECKING:
    from nsynth_train.report.build import write_report


def __getattr__(name: str) -> Any:
    if name == "write_report":
        from nsynth_train.report.build import write_report

        return write_report
    raise AttributeError(f"module 'nsynth_train.report' has no attribute {name!r}")
