"""Screenshot of a report as docs/report.png shows it: ``python3 tests/report/screenshot.py
RUN/report/index.html OUT.png [HEAD]``. Opens the page in headless Chromium (the browser test's
driver), clicks the busiest off-diagonal cell of head HEAD (default 0), scrolls to that head's
matrix, and captures the viewport."""

from __future__ import annotations

import sys
from pathlib import Path

from browser import Browser, chromium

CLICK = """(function (head) {
  var cells = Array.from(document.querySelectorAll('button.cell[data-head="' + head + '"]'));
  var off = cells.filter(function (c) { var p = c.dataset.panel.split('-'); return p[1] !== 'c' + p[2]; });
  var pick = (off.length ? off : cells).sort(function (a, b) { return b.textContent - a.textContent; })[0];
  pick.click();
  document.getElementById('head-' + head).scrollIntoView();
  return pick.title;
})(%d)"""


def main() -> None:
    page, out = Path(sys.argv[1]), Path(sys.argv[2])
    head = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    executable = chromium()
    if executable is None:
        sys.exit("needs Chromium: apt-get install -y chromium")
    browser = Browser(executable)
    try:
        browser.call("Emulation.setDeviceMetricsOverride", session=True, width=1200, height=1500,
                     deviceScaleFactor=1, mobile=False)
        browser.open(page)
        print("clicked:", browser.evaluate(CLICK % head))
        browser.evaluate("Promise.all(Array.from(document.images).map(function (i) { i.loading = 'eager'; "
                         "return i.decode().catch(function () {}); }))")
        browser.screenshot(out, 1200, 1500)
        if browser.errors:
            sys.exit(f"console errors: {browser.errors}")
    finally:
        browser.close()


if __name__ == "__main__":
    main()
