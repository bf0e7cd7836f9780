"""The HTML file itself: self-contained, one table per scenario, details that survive hostile text.

What it looks like in a browser is checked in test_report_chromium.py.
"""
from __future__ import annotations

import base64
import gzip
import json
import re
from html.parser import HTMLParser

from harness.cell import Cell
from harness.matrix import build_report
from harness.outcome import Observation, Outcome
from harness.report.html import render_html
from harness.results import CellResult, Run

HOSTILE = '</script><script>document.title="pwned"</script> & "quotes"'


def sample_report():
    spec = [("A", "A1", "host", "wildcard", "vm", "parent", Outcome.O, Observation(Outcome.O, elapsed_ms=2, reply="Hello: World!")),
            ("A", "A7", "vm", "loopback", "host", "server", Outcome.X, Observation(Outcome.O, reply=HOSTILE,
                                                                                   commands=["probe connect " + HOSTILE])),
            ("C", "C2", "host", "wildcard", "guest", "parent", Outcome.O, Observation(Outcome.E, detail="ssh: timed out")),
            ("C", None, "guest", "wildcard", "host", "children", None, Observation(Outcome.NA, detail="vsock has no CHILDREN"))]
    cells = [CellResult.from_cell(Cell(s, srv, b, cl, t, 19000, e, label=l, source="000"), o,
                                  baseline=Observation(Outcome.O))
             for s, l, srv, b, cl, t, e, o in spec]
    return build_report(Run("20260102T000000Z-bbbbbb", {"started": "2026-01-02T00:00:00Z",
                                                        "baseline": {"run_id": "20260101T000000Z-aaaaaa"}}, cells))


class Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def parse(page: str) -> Collect:
    collect = Collect()
    collect.feed(page)
    return collect


def test_self_contained_no_network():
    page = render_html(sample_report())
    tags = parse(page).tags
    assert not [t for t, a in tags if t in ("link", "img", "iframe") or (t == "script" and "src" in a)]
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page


def test_one_table_per_scenario_with_cells_and_marks():
    page = render_html(sample_report())
    tags = parse(page).tags
    tables = [a["data-scenario"] for t, a in tags if t == "table"]
    assert tables == ["A", "C"]
    cells = [a for t, a in tags if t == "div" and "data-i" in a]
    assert [c["class"] for c in cells] == ["k O", "k O mm", "k E mm fl", "k NA fl"]
    assert cells[1]["title"].splitlines()[:3] == [
        "A7[vm:loopback-from-host:server]", "observed: O", "expected: X - DIFFERS"]
    # flips are listed before the first matrix
    assert page.index('id="flips"') < page.index('id="scenario-A"')


def test_hostile_reply_cannot_break_out_of_the_details_script():
    page = render_html(sample_report())
    collect = parse(page)
    assert HOSTILE not in page  # escaped in the title and in the JSON
    blob = next(s for s, (t, a) in zip(collect.scripts, [x for x in collect.tags if x[0] == "script"], strict=False)
                if a.get("id") == "cell-details")
    details = json.loads(blob)
    assert len(details) == 4
    assert details[1]["commands"] == ["probe connect " + HOSTILE]
    titles = [a["title"] for t, a in collect.tags if t == "div" and "data-i" in a]
    assert f"reply: {HOSTILE!r}" in titles[1]


def details_blob(page: str) -> tuple[str, str]:
    collect = parse(page)
    scripts = [a for t, a in collect.tags if t == "script"]
    index = next(i for i, a in enumerate(scripts) if a.get("id") == "cell-details")
    return scripts[index]["data-encoding"], collect.scripts[index]


def test_large_details_are_embedded_compressed_and_decode_to_the_same_data():
    report = sample_report()
    encoding, plain = details_blob(render_html(report))
    assert encoding == "json"
    encoding, packed = details_blob(render_html(report, inline_limit=0))
    assert encoding == "gzip+base64"
    assert json.loads(gzip.decompress(base64.b64decode(packed))) == json.loads(plain)


class Grid(HTMLParser):
    """Rows of one matrix table as [row header, cell symbols...] (symbols with marks, like the terminal)."""

    def __init__(self):
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None
        self._in = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr":
            self.rows.append([])
        elif tag == "th" and attrs.get("scope") == "row":
            self._in = "th"
        elif tag == "td":
            self.rows[-1].append("")
        elif tag == "div" and "data-i" in attrs:
            classes = attrs["class"].split()
            symbol = {"NA": "n/a"}.get(classes[1], classes[1])
            self.rows[-1][-1] += ("/" if self.rows[-1][-1] else "") + ("*" if "fl" in classes else "") + symbol

    def handle_endtag(self, tag):
        if tag == "th":
            self._in = None

    def handle_data(self, data):
        if self._in == "th":
            self.rows[-1].append(data)


def test_html_matrix_agrees_with_the_terminal_matrix():
    from harness.report.terminal import render_matrix

    report = sample_report()
    page = render_html(report)
    for matrix in report.matrices:
        start = page.index(f'data-scenario="{matrix.scenario}"')
        grid = Grid()
        grid.feed(page[start:page.index("</table>", start)])
        html_rows = [r for r in grid.rows if r]
        term_rows = [line.split() for line in render_matrix(matrix)[2:]]
        # terminal cells carry the expectation mark (X!O, O?); the HTML shows it separately
        strip = lambda text: text.split("!")[0].rstrip("?")
        assert [[r[0]] + [c or "." for c in r[1:]] for r in html_rows] == \
               [[r[0]] + [strip(c) for c in r[1:]] for r in term_rows]
