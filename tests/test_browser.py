"""Open the weekly report and the quarterly map in a real browser, offline, and watch every request it makes.

PRIVACY.md ("Reports and maps"): every output is self-contained, no request to a CDN, tile server or any other
host when it is opened. String checks on the HTML cannot prove that (a script can build a URL at run time),
so this test loads each page in headless Chromium and records, through the Chrome DevTools Protocol, every
request the page attempts (``Network.requestWillBeSent``): each must be the page's own file:// URL or an
inline data: URI. The browser is also cut off from any network (a dead proxy and a resolver that finds
nothing), so even a request the protocol missed could not leave the machine.

The protocol runs over ``--remote-debugging-pipe`` (file descriptors 3 and 4, NUL-separated JSON): no port,
no WebSocket library. The test also checks that the pages rendered (sections present, Leaflet drew one SVG path
per area, the layer control switches layer and legend, a tooltip shows text) and saves a screenshot of each
into the test's temporary folder.

Skipped, with the reason, where Chromium is not installed (Debian: ``apt-get install chromium``; CI installs it).
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_reports import AREAS, QUARTER, WEEK, build_warehouse  # noqa: E402

CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium) to run the browser tests",
)

TIMEOUT_S = 30.0


class Browser:
    """Headless Chromium driven over the DevTools pipe. Every request any page makes is kept in ``requests``."""

    def __init__(self, profile: Path):
        command_read, self._command_write = os.pipe()
        self._reply_read, reply_write = os.pipe()

        def wire_pipes() -> None:  # in the child: the protocol's fixed descriptors, 3 (in) and 4 (out)
            into, out = os.dup(command_read), os.dup(reply_write)
            os.dup2(into, 3)
            os.dup2(out, 4)

        self.process = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-default-apps",
                "--disable-extensions",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                # Nowhere to go: a proxy on a closed port and a resolver that resolves nothing.
                "--proxy-server=127.0.0.1:9",
                "--host-resolver-rules=MAP * ~NOTFOUND",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=wire_pipes,
            pass_fds=(3, 4),
        )
        os.close(command_read)
        os.close(reply_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        self.requests: list[str] = []
        self.session = None
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)[
            "sessionId"
        ]
        for domain in ("Page", "Network", "Runtime"):
            self.call(f"{domain}.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
        )

    def close(self) -> None:
        try:
            self.call("Browser.close", session=False)
        except Exception:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._command_write)
        os.close(self._reply_read)

    # -- protocol -------------------------------------------------------------------------------------------

    def _send(self, message: dict) -> None:
        os.write(self._command_write, json.dumps(message).encode("utf-8") + b"\0")

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self._reply_read], [], [], remaining)
            if ready:
                chunk = os.read(self._reply_read, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        if "method" in message:
            self.events.append(message)
            if message["method"] == "Network.requestWillBeSent":
                self.requests.append(message["params"]["request"]["url"])
            elif message["method"] == "Network.webSocketCreated":
                self.requests.append(message["params"]["url"])
        return message

    def call(self, method: str, params: dict | None = None, session: bool = True) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        self._send(message)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def wait_for(self, method: str, seconds: float = TIMEOUT_S) -> dict:
        deadline = time.monotonic() + seconds
        seen = len(self.events)
        while True:
            for event in self.events[seen:]:
                if event["method"] == method:
                    return event
            seen = len(self.events)
            self._receive(deadline)

    def settle(self, seconds: float) -> None:
        """Keep reading events for a while, so that late requests (timers, lazy images) are recorded too."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self._receive(deadline)
        except TimeoutError:
            pass

    # -- page helpers ---------------------------------------------------------------------------------------

    def open(self, path: Path) -> None:
        self.events.clear()
        self.call("Page.navigate", {"url": path.as_uri()})
        self.wait_for("Page.loadEventFired")
        self.settle(1.5)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def exceptions(self) -> list[dict]:
        return [e["params"] for e in self.events if e["method"] == "Runtime.exceptionThrown"]


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    from pipelines.report_quarterly import render_quarterly
    from pipelines.report_weekly import render_weekly

    home, con = build_warehouse(tmp_path_factory.mktemp("home"))
    weekly = next(p for p in render_weekly(con, home, WEEK) if p.suffix == ".html")
    quarterly = next(p for p in render_quarterly(con, home, QUARTER) if p.suffix == ".html")
    con.close()
    return weekly, quarterly


@pytest.fixture()
def browser(tmp_path):
    instance = Browser(tmp_path / "profile")
    yield instance
    instance.close()
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def _only_local(requests: list[str], page: Path) -> list[str]:
    """Requests that went anywhere but the page itself or an inline data: URI."""
    return [url for url in requests if url != page.as_uri() and not url.startswith("data:")]


def test_weekly_report_in_browser_makes_no_request(pages, browser, tmp_path):
    weekly, _ = pages
    browser.open(weekly)
    assert browser.requests and browser.requests[0] == weekly.as_uri()
    assert _only_local(browser.requests, weekly) == []
    assert browser.exceptions() == []
    sections = browser.evaluate("Array.from(document.querySelectorAll('section > h2')).map(h => h.textContent)")
    assert sections[:3] == ["Sammanfattning", "Vad har hänt", "Vad görs"]
    assert sections[3].startswith("Prognos för vecka ") and sections[4:] == ["Datakvalitet och leveranser", "Om siffrorna"]
    # The title carrying a script tag stayed text: nothing ran, no script element exists.
    assert browser.evaluate("document.scripts.length") == 0
    shot = browser.screenshot(tmp_path / "veckorapport.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_quarterly_map_in_browser_draws_offline(pages, browser, tmp_path):
    _, quarterly = pages
    browser.open(quarterly)
    assert browser.requests and browser.requests[0] == quarterly.as_uri()
    assert _only_local(browser.requests, quarterly) == [], "the map must load nothing from anywhere"
    assert browser.exceptions() == []

    # Leaflet ran and drew the first layer: one SVG path per area, the suppressed one filled with the hatch.
    assert browser.evaluate("typeof L") == "object" and browser.evaluate("L.version").startswith("1.9.")
    fills = browser.evaluate(
        "Array.from(document.querySelectorAll('.leaflet-overlay-pane path')).map(p => p.getAttribute('fill'))"
    )
    assert len(fills) == len(AREAS)
    assert "url(#est-hatch)" in fills
    # The legend sits in the map, showing the first layer's legend only.
    visible = browser.evaluate(
        "Array.from(document.querySelectorAll('.leaflet-control-container .est-legend'))"
        ".filter(l => !l.hidden).map(l => l.dataset.layer)"
    )
    assert visible == ["Alla kategorier"]
    labels = browser.evaluate(
        "Array.from(document.querySelectorAll('.leaflet-control-layers-base label')).map(l => l.textContent.trim())"
    )
    assert labels[0] == "Alla kategorier" and "Klotter" in labels

    # Choose another category: its layer replaces the first, its legend shows.
    browser.evaluate(
        "Array.from(document.querySelectorAll('.leaflet-control-layers-base label'))"
        ".find(l => l.textContent.trim() === 'Klotter').querySelector('input').click()"
    )
    browser.settle(0.5)
    visible = browser.evaluate(
        "Array.from(document.querySelectorAll('.est-legend')).filter(l => !l.hidden).map(l => l.dataset.layer)"
    )
    assert visible == ["Klotter"]
    assert browser.evaluate("document.querySelectorAll('.leaflet-overlay-pane path').length") == len(AREAS)

    # A tooltip shows the project's labels as text.
    browser.evaluate(
        "(() => { const p = document.querySelector('.leaflet-overlay-pane path');"
        " const r = p.getBoundingClientRect();"
        " p.dispatchEvent(new MouseEvent('mouseover', {bubbles: true, clientX: r.x + r.width / 2,"
        " clientY: r.y + r.height / 2})); })()"
    )
    browser.settle(0.3)
    tooltip = browser.evaluate("(document.querySelector('.est-tooltip') || {}).textContent || ''")
    assert "Område" in tooltip and "Antal" in tooltip

    # Back to all categories for the picture, then the screenshot.
    browser.evaluate(
        "Array.from(document.querySelectorAll('.leaflet-control-layers-base label'))"
        ".find(l => l.textContent.trim() === 'Alla kategorier').querySelector('input').click()"
    )
    browser.settle(0.3)
    shot = browser.screenshot(tmp_path / "karta.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    assert _only_local(browser.requests, quarterly) == []


def test_request_logging_catches_an_external_request(browser, tmp_path):
    """The check above could pass by recording nothing: a page that does load from elsewhere must be caught."""
    page = tmp_path / "leaky.html"
    page.write_text(
        '<!DOCTYPE html><html><head><script src="https://cdn.example.org/lib.js"></script></head>'
        '<body><img src="http://tiles.example.org/1/2/3.png"></body></html>',
        encoding="utf-8",
    )
    browser.open(page)
    assert sorted(_only_local(browser.requests, page)) == [
        "http://tiles.example.org/1/2/3.png",
        "https://cdn.example.org/lib.js",
    ]


def test_generated_weekly_report_and_map_show_their_data_offline(generated_home, browser, tmp_path):
    """The pipeline's own outputs on generated deliveries, opened as a reader would, with no network."""
    from conftest import GENERATED_LAST_WEEK, GENERATED_QUARTER

    weekly = generated_home.out / "weekly" / GENERATED_LAST_WEEK / f"veckorapport_{GENERATED_LAST_WEEK}.html"
    browser.open(weekly)
    assert _only_local(browser.requests, weekly) == [] and browser.exceptions() == []
    # The category table shows this week's counts: a total of several hundred generated incidents.
    total = browser.evaluate(
        "Array.from(document.querySelectorAll('tr')).find(r => r.textContent.includes('Totalt'))"
        ".querySelectorAll('td, th')[1].textContent.replace(/\\s/g, '')"
    )
    assert int(total) > 200
    # Sections in the reader's order, each visible; the charts are inline SVG that the browser lays out.
    ids = browser.evaluate("Array.from(document.querySelectorAll('main > section')).map(s => s.id)")
    assert ids == ["sammanfattning", "vad-har-hant", "vad-gors", "prognos", "datakvalitet", "om-siffrorna"]
    heights = browser.evaluate(
        "Array.from(document.querySelectorAll('main > section')).map(s => s.getBoundingClientRect().height)"
    )
    assert all(h > 20 for h in heights), heights
    charts = browser.evaluate(
        "['#diagram-trend svg', '#diagram-kategorier svg'].map(q => { const e = document.querySelector(q);"
        " const r = e.getBoundingClientRect(); return [r.width, r.height, e.querySelectorAll('polyline, rect').length]; })"
    )
    assert all(w > 300 and h > 100 and n > 0 for w, h, n in charts), charts
    sparklines = browser.evaluate("document.querySelectorAll('#tabell-kategorier svg.spark polyline').length")
    assert sparklines > 3
    forecast_rows = browser.evaluate("document.querySelectorAll('#tabell-prognos-kategorier tbody tr').length")
    assert forecast_rows > 3
    browser.screenshot(tmp_path / "generated_week.png")
    # The closing note describes the first page of the generated report (issue 5, item 7); kept outside the repo.
    width = browser.evaluate("document.documentElement.clientWidth")
    first_page = browser.call("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True, "clip": {"x": 0, "y": 0, "width": width, "height": round(width * 297 / 210), "scale": 1}})
    (Path(tempfile.gettempdir()) / "weekly_report_first_page.png").write_bytes(base64.b64decode(first_page["data"]))

    quarterly = generated_home.out / "quarterly" / GENERATED_QUARTER / f"karta_{GENERATED_QUARTER}.html"
    browser.open(quarterly)
    # One browser for both pages: its request log holds the weekly page too.
    assert [u for u in _only_local(browser.requests, quarterly) if u != weekly.as_uri()] == []
    assert browser.exceptions() == []
    paths = browser.evaluate("document.querySelectorAll('.leaflet-overlay-pane path').length")
    assert paths == 87  # one per Örebro DeSO area
    filled = browser.evaluate(
        "new Set(Array.from(document.querySelectorAll('.leaflet-overlay-pane path')).map(p => p.getAttribute('fill'))).size"
    )
    assert filled > 3, "rates must colour the areas in several classes"


def test_quarterly_pack_opens_offline_and_every_map_draws(season_pack, browser, tmp_path):
    """Issue 6 item 5: the pack's index and every map page, opened headless with no network: every map draws
    (Leaflet paths present), nothing is requested from anywhere, no script error."""
    from conftest import PACK_QUARTER

    files, _seconds = season_pack
    index = files[-1]
    assert index.name == "index.html"
    browser.open(index)
    assert _only_local(browser.requests, index) == [] and browser.exceptions() == []
    assert browser.evaluate("document.scripts.length") == 0
    links = browser.evaluate("Array.from(document.querySelectorAll('a')).map(a => a.getAttribute('href'))")
    maps = [name for name in links if name.endswith(".html")]
    assert maps == [f"karta_{PACK_QUARTER}.html", f"hotspots_{PACK_QUARTER}.html"]
    browser.screenshot(tmp_path / "index.png")

    for name in maps:
        page = index.parent / name
        browser.requests.clear()
        browser.open(page)
        assert _only_local(browser.requests, page) == [], name
        assert browser.exceptions() == [], name
        assert browser.evaluate("typeof L") == "object"
        drawn = browser.evaluate("document.querySelectorAll('.leaflet-pane path').length")
        assert drawn > 87, (name, drawn)  # the 87 areas, and the overlay or hot-spot cells above them
        browser.screenshot(tmp_path / name.replace(".html", ".png"))

    # The area map: one path per area in the choropleth, the intervention outlines in their own pane.
    browser.open(index.parent / maps[0])
    assert browser.evaluate("document.querySelectorAll('.leaflet-overlay-pane path').length") == 87
    assert browser.evaluate("document.querySelectorAll('.leaflet-est-overlays-pane path').length") == 3
    labels = browser.evaluate(
        "Array.from(document.querySelectorAll('.leaflet-control-layers-base label')).map(l => l.textContent.trim())"
    )
    assert labels[0] == "Alla kategorier" and labels[-1] == "Förändring mot föregående kvartal"
    # Choose the change layer: its legend shows.
    browser.evaluate(
        "Array.from(document.querySelectorAll('.leaflet-control-layers-base label'))"
        ".find(l => l.textContent.trim() === 'Förändring mot föregående kvartal').querySelector('input').click()"
    )
    browser.settle(0.3)
    visible = browser.evaluate(
        "Array.from(document.querySelectorAll('.est-legend')).filter(l => !l.hidden).map(l => l.dataset.layer)"
    )
    assert visible == ["Förändring mot föregående kvartal"]
