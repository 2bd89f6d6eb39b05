"""The report in a real browser: headless Chromium opens it from disk, renders it without a
console error, a confusion cell opens its notes, and their audio element has a playable source.
Skipped, with the install hint, where Chromium is absent."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from browser import INSTALL_HINT, Browser, chromium  # tests/report/browser.py (pytest puts this folder on the path)

from nsynth_train.report import write_report

pytestmark = pytest.mark.skipif(chromium() is None, reason=INSTALL_HINT)

OPEN_A_CELL = """(function () {
  var cells = document.querySelectorAll('button.cell');
  var cell = cells[cells.length - 1];
  var panel = document.getElementById(cell.dataset.panel);
  var before = panel.hidden;
  cell.click();
  var others = Array.from(document.querySelectorAll('.panel[data-head="0"]')).filter(function (p) { return !p.hidden; });
  return {cells: cells.length, before: before, after: panel.hidden, open: others.length,
          audio: panel.querySelectorAll('audio').length, images: panel.querySelectorAll('img').length};
})()"""

PLAY = """new Promise(function (done) {
  var a = document.querySelector('.panel:not([hidden]) audio');
  a.addEventListener('loadedmetadata', function () { done({duration: a.duration, wav: a.canPlayType('audio/wav')}); });
  a.addEventListener('error', function () { done({error: a.error ? a.error.code : -1}); });
  a.preload = 'auto';
  a.load();
})"""

IMAGES = """Array.from(document.images).filter(function (i) { return i.complete && i.naturalWidth === 0; }).length"""


@pytest.mark.slow
def test_the_report_in_headless_chromium(finished_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    page = write_report(run, device="cpu")
    executable = chromium()
    assert executable is not None
    browser = Browser(executable)
    try:
        browser.open(page)
        assert browser.evaluate("document.title").startswith("cnn / family task")
        opened = browser.evaluate(OPEN_A_CELL)
        assert opened["cells"] > 0 and opened["before"] is True and opened["after"] is False
        assert opened["open"] == 1 and opened["audio"] >= 1 and opened["images"] == opened["audio"]
        played = browser.evaluate(PLAY)
        assert "error" not in played and played["duration"] > 0.5 and played["wav"] in ("maybe", "probably")
        browser.evaluate("Promise.all(Array.from(document.images).map(function (i) { i.loading = 'eager'; "
                         "return i.decode().catch(function () {}); }))")
        assert browser.evaluate(IMAGES) == 0  # no broken image
        assert browser.errors == [], browser.errors
    finally:
        browser.close()
