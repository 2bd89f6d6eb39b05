"""The report page as HTML text: one file, its style and its few lines of script inline, every
other file beside it by relative path, so it opens from disk with no server and no network."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import Any

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1180px;padding:0 16px 40px;color:#222}
h1{font-size:22px;margin:18px 0 4px}h2{font-size:18px;border-bottom:1px solid #ccc;margin-top:28px}h3{font-size:15px}
table{border-collapse:collapse}td,th{padding:2px 8px;text-align:right}th{background:#f2f2f2}
td.l,th.l{text-align:left}.muted{color:#666}.kv td{text-align:left;vertical-align:top}
.cm td{padding:0}.cm th.r{writing-mode:vertical-rl;transform:rotate(180deg);height:90px;text-align:left}
.cm button{width:46px;height:34px;border:1px solid #fff;cursor:pointer;font:inherit}
.cm button.open{outline:3px solid #D55E00}.cm button:disabled{cursor:default}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid #ddd;border-radius:6px;padding:6px;width:250px}
.card img{display:block;width:240px;image-rendering:pixelated}.card audio{width:240px;height:32px}
.card .n{font-weight:600;word-break:break-all}.bad{color:#b00}.ok{color:#070}.panel{margin:10px 0;padding:8px;background:#fafafa}
.chart .title{font-size:12px;font-weight:600}.chart .tick{font-size:10px;fill:#444}.charts{display:flex;flex-wrap:wrap;gap:12px}
pre{background:#f6f6f6;padding:8px;overflow:auto;max-height:320px}
"""

SCRIPT = """
document.querySelectorAll('button.cell').forEach(function (b) {
  b.addEventListener('click', function () {
    var head = b.dataset.head;
    document.querySelectorAll('.panel[data-head="' + head + '"]').forEach(function (p) { p.hidden = p.id !== b.dataset.panel; });
    document.querySelectorAll('button.cell[data-head="' + head + '"]').forEach(function (x) { x.classList.toggle('open', x === b); });
    document.getElementById(b.dataset.panel).scrollIntoView({block: 'nearest'});
  });
});
"""


@dataclass
class Note:
    """One listed note: its files and what the model said of it in one head."""

    name: str
    wav: str
    png: str
    true: str
    predicted: str
    top: list[tuple[str, float]]  # the head's best classes with their probabilities, best first
    detail: str = ""  # pitch, velocity


@dataclass
class Head:
    """One head's section: classes, confusion counts, per-class metrics and the listed notes."""

    name: str
    classes: list[str]
    cm: list[list[int]]
    metrics: dict[str, Any]
    cells: dict[tuple[int, int], list[Note]]
    errors: list[Note]
    boundary: dict[int, list[Note]]  # -1: over all classes (a head too wide for one list per class)
    matrix: bool = True  # False: too many classes for a clickable matrix (or a multi-label head)
    flag_errors: dict[tuple[int, str], list[Note]] = field(default_factory=dict)  # multi-label: (label, kind)


@dataclass
class Page:
    title: str
    subtitle: str
    settings: list[tuple[str, str]]
    config: dict[str, Any] | None
    curves: list[str]
    heads: list[Head]
    footer: str
    extra: list[str] = field(default_factory=list)


def e(text: object) -> str:
    return html.escape(str(text))


def card(note: Note) -> str:
    ok = note.true == note.predicted
    top = ", ".join(f"{e(c)} {100 * p:.1f}%" for c, p in note.top)
    return (f'<div class="card"><div class="n">{e(note.name)}</div>'
            f'<div>true <b>{e(note.true)}</b> · predicted <b class="{"ok" if ok else "bad"}">{e(note.predicted)}</b></div>'
            f'<div class="muted">{top}{" · " + e(note.detail) if note.detail else ""}</div>'
            f'<audio controls preload="none" src="{e(note.wav)}"></audio>'
            f'<img src="{e(note.png)}" alt="waveform and log-mel of {e(note.name)}" loading="lazy"></div>')


def cards(notes: list[Note]) -> str:
    return '<div class="cards">' + "".join(card(n) for n in notes) + "</div>" if notes else \
        '<p class="muted">none</p>'


def confusion(head: Head, index: int) -> str:
    """The matrix as a table of buttons (count, shaded by the row's share); each non-empty cell
    opens a panel listing its notes."""
    rows = [f'<tr><th class="l">true \\ predicted</th>{"".join(f"<th class=r>{e(c)}</th>" for c in head.classes)}</tr>']
    panels = []
    for t, name in enumerate(head.classes):
        total = max(1, sum(head.cm[t]))
        tds = []
        for p, count in enumerate(head.cm[t]):
            share = count / total
            bg = f"rgba({'0,114,178' if t == p else '213,94,0'},{0.08 + 0.92 * share:.2f})" if count else "#f4f4f4"
            fg = "#fff" if share > 0.5 else "#222"
            pid = f"h{index}-c{t}-{p}"
            listed = head.cells.get((t, p), [])
            attrs = (f'class="cell" data-head="{index}" data-panel="{pid}" title="{e(name)} as '
                     f'{e(head.classes[p])}: {count} notes"') if count else "disabled"
            tds.append(f'<td><button {attrs} style="background:{bg};color:{fg}">{count or ""}</button></td>')
            if count:
                shown = f"{len(listed)} of {count}" if len(listed) < count else f"all {count}"
                panels.append(f'<div class="panel" id="{pid}" data-head="{index}" hidden><h3>true {e(name)}, '
                              f'predicted {e(head.classes[p])}: {shown} notes listed (most confident first)</h3>'
                              f"{cards(listed)}</div>")
        rows.append(f'<tr><th class="l">{e(name)}</th>{"".join(tds)}</tr>')
    return f'<table class="cm">{"".join(rows)}</table>' + "".join(panels)


def per_class(head: Head) -> str:
    acc, f1 = head.metrics["per_class_accuracy"], head.metrics.get("per_class_f1", {})
    rows = ['<tr><th class="l">class</th><th>notes</th><th>accuracy</th><th>F1</th></tr>']
    for t, name in enumerate(head.classes):
        a, f = acc.get(name), f1.get(name)
        rows.append(f'<tr><td class="l">{e(name)}</td><td>{sum(head.cm[t])}</td>'
                    f'<td>{"-" if a is None else f"{100 * a:.1f}%"}</td><td>{"-" if f is None else f"{f:.3f}"}</td></tr>')
    return f"<table>{''.join(rows)}</table>"


def head_section(head: Head, index: int) -> str:
    if "per_quality" in head.metrics:
        return flags_section(head, index)
    m = head.metrics
    boundary = "".join(f"<h3>{'all classes' if c < 0 else 'true ' + e(head.classes[c])}</h3>{cards(notes)}"
                       for c, notes in head.boundary.items())
    matrix = (f"<div><h3>confusion matrix (click a cell to list its notes)</h3>{confusion(head, index)}</div>"
              if head.matrix else f'<div><p class="muted">{len(head.classes)} classes: too many for a matrix '
                                  f"to click through; it is drawn in the run's figures/ folder.</p></div>")
    return (f'<h2 id="head-{index}">{e(head.name)} head</h2>'
            f"<p>accuracy <b>{100 * m['accuracy']:.2f}%</b> · macro-F1 <b>{m['macro_f1']:.3f}</b> · "
            f"{m['notes']:,} notes · chance {100 / max(1, len(head.classes)):.0f}%</p>"
            f'<div class="charts"><div><h3>per class</h3>{per_class(head)}</div>{matrix}</div>'
            f"<h3>most confident errors</h3>{cards(head.errors)}"
            f"<h3>nearest the decision boundary{', per true class' if head.matrix else ''} "
            f"(smallest top-two margin)</h3>{boundary}")


def flags_section(head: Head, index: int) -> str:
    """A multi-label head: per label AP, F1 and its misses and false alarms (p >= 0.5 is a yes)."""
    m = head.metrics

    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    rows = ['<tr><th class="l">quality</th><th>notes with it</th><th>AP</th><th>precision</th><th>recall</th>'
            "<th>F1</th></tr>"]
    for name, q in m["per_quality"].items():
        rows.append(f'<tr><td class="l">{e(name)}</td><td>{q["positives"]}</td><td>{num(q["ap"], ".3f")}</td>'
                    f'<td>{num(q["precision"], ".3f")}</td><td>{num(q["recall"], ".3f")}</td>'
                    f'<td>{num(q["f1"], ".3f")}</td></tr>')
    lists = "".join(f"<h3>{e(head.classes[q])}: {'missed (most confident no first)' if kind == 'missed' else 'false alarms (most confident yes first)'}</h3>"
                    f"{cards(notes)}" for (q, kind), notes in sorted(head.flag_errors.items()))
    return (f'<h2 id="head-{index}">{e(head.name)} head</h2>'
            f"<p>mAP <b>{num(m['mAP'], '.3f')}</b> · micro-F1 <b>{m['micro_f1']:.3f}</b> · macro-F1 "
            f"<b>{m['macro_f1']:.3f}</b> · every label right on {100 * m['subset_accuracy']:.1f}% of "
            f"{m['notes']:,} notes · a label is said at p >= {m['threshold']}</p>"
            f"<table>{''.join(rows)}</table>{lists or '<p class=muted>no errors</p>'}")


def render(page: Page) -> str:
    """The whole page."""
    settings = "".join(f'<tr><td class="l">{e(k)}</td><td class="l">{e(v)}</td></tr>' for k, v in page.settings)
    config = (f"<details><summary>config.json</summary><pre>{e(json.dumps(page.config, indent=1))}</pre></details>"
              if page.config else '<p class="muted">no config.json beside the checkpoint</p>')
    nav = " · ".join(f'<a href="#head-{i}">{e(h.name)} head</a>' for i, h in enumerate(page.heads))
    curves = f'<div class="charts">{"".join(page.curves)}</div>' if page.curves else \
        '<p class="muted">no training history in the checkpoint</p>'
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(page.title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{e(page.title)}</h1><p class=\"muted\">{e(page.subtitle)}</p><p>{nav}</p>"
            f"<h2>settings and provenance</h2><table class=\"kv\">{settings}</table>{config}"
            f"<h2>learning curves</h2>{curves}{''.join(page.extra)}"
            + "".join(head_section(h, i) for i, h in enumerate(page.heads))
            + f'<hr><p class="muted">{e(page.footer)}</p><script>{SCRIPT}</script></body></html>\n')
