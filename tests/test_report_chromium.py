"""The report as a user sees it: headless Chromium renders matrix.html, we read the page back.

Two views of the same page: the DOM after JavaScript (--dump-dom; a small script appended to a
copy of the report writes computed colours, boxes and the details panel into attributes) and a
screenshot (--screenshot) whose pixels are read with a tiny PNG decoder.
"""
from __future__ import annotations

import json
import shutil
import struct
import subprocess
import tempfile
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.cell import Cell
from harness.outcome import Observation, Outcome
from harness.report import write_run_reports
from harness.results import Recorder, load_run

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.chromium,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (CI installs Debian's chromium)"),
]

HOSTILE = "</script><script>document.title='pwned'</script>"

# Written into a copy of the report only: records what the browser computed.
PROBE_JS = """
<script>
(function(){
  var out=[];
  document.querySelectorAll("div.k[data-i]").forEach(function(el){
    var s=getComputedStyle(el),r=el.getBoundingClientRect();
    el.setAttribute("data-bg",s.backgroundColor);el.setAttribute("data-bgimg",s.backgroundImage);el.setAttribute("data-fg",s.color);
    el.setAttribute("data-box",JSON.stringify([r.left,r.top,r.width,r.height]));
    el.setAttribute("data-strip-spans",el.querySelectorAll(".hs i").length);
  });
  var first=document.querySelector('div.k[title^="A7["]');
  first.click();
  var panel=document.getElementById("panel");
  var root=document.documentElement;
  root.setAttribute("data-panel-hidden",panel.hidden?"1":"0");
  root.setAttribute("data-panel-text",panel.textContent);
  root.setAttribute("data-doc-width",root.scrollWidth);
  root.setAttribute("data-viewport",window.innerWidth);
  root.setAttribute("data-title",document.title);
  var sc=document.querySelector(".scroll");
  root.setAttribute("data-scroll",JSON.stringify([sc.scrollWidth,sc.clientWidth]));
})();
</script>
"""


def build_reports(tmp_path: Path) -> Path:
    """Two real runs through the Recorder: last night's baseline and tonight's, with one flip."""
    cells = {
        "O": Cell("A", "hv-host", "wildcard", "win-vm", "parent", 19000, Outcome.O, label="A1", source="001 case 1"),
        "X": Cell("A", "win-vm", "loopback", "hv-host", "server", 19001, Outcome.X, label="A7", source="001 case 7"),
        "B": Cell("A", "win-vm", "node:hv-host", "hv-host", "server", 19002, None),
        "E": Cell("A", "hv-host", "children", "win-vm", "parent", 19003, Outcome.O, label="A9"),
        "NA": Cell("A", "win-vm", "children", "win-vm", "broadcast", 19004, None),
        "FLIP": Cell("A", "hv-host", "loopback", "win-vm", "parent", 19005, Outcome.O, label="A5"),
    }
    tonight = {
        "O": Observation(Outcome.O, elapsed_ms=2.1, reply="Hello: World!", commands=["probe listen", "probe connect"]),
        "X": Observation(Outcome.X, errno_name="WSAECONNREFUSED", errno=10061, elapsed_ms=3.4, reply=HOSTILE,
                         commands=["probe connect hyperv " + HOSTILE]),
        "B": Observation(Outcome.B, bind_errno_name="WSAEADDRNOTAVAIL", bind_errno=10049),
        "E": Observation(Outcome.E, detail="psexec: SMB session lost"),
        "NA": Observation(Outcome.NA, detail="broadcast is not a connect target"),
        "FLIP": Observation(Outcome.X, errno_name="WSAETIMEDOUT", errno=10060, elapsed_ms=2000),
    }
    last_night = dict(tonight, FLIP=Observation(Outcome.O, elapsed_ms=2.0))
    results = tmp_path / "reports"
    first = Recorder(results, {"run_id": "20260101T000000Z-aaaaaa"})
    for key, cell in cells.items():
        first.record(cell, last_night[key])
    first.finish()
    second = Recorder(results, {"run_id": "20260102T000000Z-bbbbbb", "baseline_path": str(results / "history" / "20260101T000000Z-aaaaaa.json")})
    second.set_node_facts("hv-host", {"os": "windows", "windows_build": "26100"})
    for key, cell in cells.items():
        second.record(cell, tonight[key])
    run = load_run(second.finish())
    _, paths = write_run_reports(run, results, baseline=second.baseline)
    return paths["html"]


def chromium(tmp_path: Path, url: str, *extra: str, width: int = 1000, height: int = 900) -> str:
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", "--force-device-scale-factor=1", f"--window-size={width},{height}",
            f"--user-data-dir={tmp_path / 'chromium-profile'}", *extra, url]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def probed_copy(html: Path, click: bool = True, name: str = "probed.html") -> Path:
    probe = PROBE_JS if click else PROBE_JS.replace("first.click();", "")
    copy = html.with_name(name)
    copy.write_text(html.read_text(encoding="utf-8").replace("</body>", probe + "</body>"), encoding="utf-8")
    return copy


class Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.elements: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))


def dom(text: str) -> tuple[dict, list[dict]]:
    parser = Elements()
    parser.feed(text)
    root = next(a for t, a in parser.elements if t == "html")
    cells = [a for t, a in parser.elements if t == "div" and "data-i" in a]
    return root, cells


def rgb(css: str) -> tuple[int, int, int]:
    return tuple(int(x) for x in css[css.index("(") + 1:css.index(")")].split(",")[:3])


def read_png(path: Path) -> tuple[int, int, list[bytes], int]:
    """Minimal PNG decoder (8-bit RGB/RGBA, non-interlaced): enough for Chromium screenshots."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and colour in (2, 6) and interlace == 0
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + a) & 255
            elif kind == 2:
                line[x] = (line[x] + b) & 255
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows, bpp


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chromium")
    html = build_reports(tmp)
    probed = probed_copy(html)
    root, cells = dom(chromium(tmp, probed.as_uri(), "--dump-dom"))
    # pixels are read with the details panel closed (it floats over the matrix when open)
    shot = tmp / "matrix.png"
    chromium(tmp, probed_copy(html, click=False, name="closed.html").as_uri(), f"--screenshot={shot}")
    with_panel = tmp / "matrix-panel.png"
    chromium(tmp, probed.as_uri(), f"--screenshot={with_panel}")
    shutil.copyfile(with_panel, Path(tempfile.gettempdir()) / "hvsock-matrix-chromium.png")  # for a human look
    return {"html": html, "root": root, "cells": cells, "shot": shot}


def by_symbol(cells: list[dict]) -> dict[str, dict]:
    return {c["class"].split()[1] + ("*" if " fl" in c["class"] else ""): c for c in cells}


def test_matrix_cells_symbols_and_marks_in_the_dom(rendered):
    cells = rendered["cells"]
    assert len(cells) == 6
    classes = sorted(c["class"] for c in cells)
    assert classes == ["k B", "k E mm", "k NA", "k O", "k X", "k X mm fl"]
    # the history strip was coloured by the page's JS: last night + tonight = 2 runs
    assert {c["data-strip-spans"] for c in cells} == {"2"}
    assert rendered["root"]["data-title"] == "hvsock-matrix 20260102T000000Z-bbbbbb"  # hostile reply inert


def test_outcome_colours_are_distinct_and_mean_the_right_thing(rendered):
    cells = by_symbol(rendered["cells"])
    backgrounds = {key: rgb(cells[key]["data-bg"]) for key in ("O", "X", "B", "E")}
    assert len(set(backgrounds.values())) == 4
    r, g, b = backgrounds["O"]
    assert g > r + 20 and g > b + 10, backgrounds  # green
    r, g, b = backgrounds["X"]
    assert r > g + 20 and r > b + 20, backgrounds  # red
    r, g, b = backgrounds["B"]
    assert r > b + 40 and g > b, backgrounds  # orange/amber
    # n/a is hatched, not a flat colour, and its text is grey
    assert cells["NA"]["data-bgimg"].startswith("repeating-linear-gradient"), cells["NA"]
    assert all(cells[key]["data-bgimg"] == "none" for key in ("O", "X", "B", "E"))
    fr, fg, fb = rgb(cells["NA"]["data-fg"])
    assert abs(fr - fg) < 10 and abs(fg - fb) < 10


def test_screenshot_pixels_match_the_cells(rendered):
    width, height, rows, bpp = read_png(rendered["shot"])
    cells = by_symbol(rendered["cells"])
    for key in ("O", "X", "B"):
        left, top, _w, h = json.loads(cells[key]["data-box"])
        x, y = int(left) + 3, int(top + h / 2)
        assert 0 <= x < width and 0 <= y < height, f"{key} cell at {x},{y} is off the screenshot"
        pixel = tuple(rows[y][x * bpp:x * bpp + 3])
        assert max(abs(p - q) for p, q in zip(pixel, rgb(cells[key]["data-bg"]), strict=False)) <= 3, (key, pixel)


def test_click_opens_the_details_panel(rendered):
    root = rendered["root"]
    assert root["data-panel-hidden"] == "0"
    text = root["data-panel-text"]
    assert "WSAECONNREFUSED (10061)" in text and "commands" in text and "probe connect hyperv" in text


def test_phone_width_scrolls_the_matrix_not_the_page(rendered, tmp_path):
    probed = rendered["html"].with_name("probed.html")
    root, _ = dom(chromium(tmp_path, probed.as_uri(), "--dump-dom", width=360, height=800))
    viewport = int(root["data-viewport"])  # headless Chromium may clamp the window to 500 px
    assert viewport <= 500
    assert int(root["data-doc-width"]) <= viewport
    scroll_width, client_width = json.loads(root["data-scroll"])
    assert scroll_width > client_width  # the wide matrix scrolls inside its box


def test_compressed_details_open_on_click(rendered, tmp_path):
    """Large reports embed the click details gzip+base64; the browser decodes them on click."""
    from harness.matrix import build_report
    from harness.report.html import render_html

    run = load_run(rendered["html"].with_name("results.json"))
    page = render_html(build_report(run), inline_limit=0)
    assert 'data-encoding="gzip+base64"' in page
    wait_js = PROBE_JS.replace('root.setAttribute("data-panel-text",panel.textContent);',
                               'setTimeout(function(){root.setAttribute("data-panel-text",panel.textContent);},200);')
    probed = tmp_path / "compressed.html"
    probed.write_text(page.replace("</body>", wait_js + "</body>"), encoding="utf-8")
    root, _ = dom(chromium(tmp_path, probed.as_uri(), "--dump-dom", "--virtual-time-budget=5000"))
    assert root["data-panel-hidden"] == "0"
    assert "commands" in root["data-panel-text"] and "probe connect hyperv" in root["data-panel-text"]


def test_prints_to_pdf(rendered, tmp_path):
    pdf = tmp_path / "matrix.pdf"
    chromium(tmp_path, rendered["html"].as_uri(), f"--print-to-pdf={pdf}", "--no-pdf-header-footer")
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and data.count(b"/Type /Page") >= 1
