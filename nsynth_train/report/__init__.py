"""The listening error-analysis report of a run (``nsynth report``): one static HTML page with
its notes' audio and pictures beside it (:func:`write_report`)."""

from __future__ import annotations

from nsynth_train.report.build import write_report

__all__ = ["write_report"]
