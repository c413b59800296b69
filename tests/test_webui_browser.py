"""Locust's web UI as a person uses it: headless Chromium, driven over the Chrome DevTools Protocol.

``harness up`` starts Postgres and a gateway, ``locust -f locustfiles/mcp_sessions.py`` serves its web UI, and
Chromium (Debian's ``chromium``, off the network) fills the start form — users, spawn rate and a custom
argument (session lifetime) — starts the swarm, and reads the page: the statistics table shows ``CLEANUP``
rows with counts, the "DB pool" tab shows the gateway's pool gauges. Skipped when no Chromium is installed.

``MCP_LOADTEST_SCREENSHOT=docs/webui.png pytest tests/test_webui_browser.py`` also keeps the screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import websocket

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "locustfiles" / "mcp_sessions.py"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync")
USERS = 8
LIFETIME = "1-1.5"
DEFAULT_LIFETIME_MIN = 5.0  # the locustfile's default --session-lifetime is 5-30
SWARM_SECONDS = 12.0



def chromium_binary() -> str | None:
    """The first Chromium/Chrome on PATH."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(90),
    pytest.mark.skipif(chromium_binary() is None,
                       reason="no Chromium binary on PATH (Debian: apt-get install -y chromium)"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    """Call ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (OSError, ValueError, LookupError) as exc:
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last error: {last_error})")


def stop_group(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Signal the process group ``proc`` leads; SIGKILL it if it overstays."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    except ProcessLookupError:
        pass


class DevTools:
    """A minimal Chrome DevTools Protocol client on one page target."""

    def __init__(self, ws_url: str) -> None:
        # Chromium refuses DevTools websockets that carry an Origin header it does not allow.
        self.ws = websocket.create_connection(ws_url, timeout=15, suppress_origin=True)
        self._next_id = 0

    def close(self) -> None:
        self.ws.close()

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events that arrive meanwhile are skipped)."""
        self._next_id += 1
        self.ws.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise AssertionError(f"{method} failed: {message['error']}")
                return dict(message.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        """Evaluate JavaScript in the page and return its value."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click_at(self, x: float, y: float) -> None:
        """A left click as the mouse makes it."""
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def click(self, selector: str, text: str | None = None) -> None:
        """Scroll the first element matching ``selector`` (with ``text`` in its source text) into view, click it.

        Waits until the element stops moving, so a click never lands mid-animation (an unfolding panel).
        """
        locate = f"""(() => {{
            const want = {json.dumps(text)};
            const el = Array.from(document.querySelectorAll({json.dumps(selector)}))
                .find(e => want === null || e.textContent.includes(want));
            if (!el) return null;
            el.scrollIntoView({{block: "center"}});
            const r = el.getBoundingClientRect();
            return {{x: r.left + r.width / 2, y: r.top + r.height / 2, w: r.width, h: r.height}};
        }})()"""
        seen: list[Any] = [None]

        def settled() -> Any:
            box = self.evaluate(locate)
            still = box if box and box == seen[-1] and box["w"] > 0 and box["h"] > 0 else None
            seen.append(box)
            return still

        box = wait_for(settled, 5, f"{selector} {text or ''} to be clickable", interval=0.1)
        self.click_at(box["x"], box["y"])

    def fill(self, name: str, value: str) -> None:
        """Click the input named ``name``, select its text and type ``value`` over it."""
        self.click(f"input[name={json.dumps(name)}]")
        assert self.evaluate(f"document.activeElement.name === {json.dumps(name)}"), f"{name} did not take focus"
        self.evaluate("document.activeElement.select()")
        self.call("Input.insertText", text=value)
        typed = self.evaluate(f"document.querySelector('input[name={json.dumps(name)}]').value")
        assert typed == value, f"{name} holds {typed!r} after typing {value!r}"

    def screenshot(self, path: Path) -> Path:
        """A PNG of the page down to the end of its visible table (the whole viewport when there is none)."""
        bottom = self.evaluate("""(() => {
            const t = Array.from(document.querySelectorAll('table')).find(t => t.offsetParent !== null);
            return t ? Math.ceil(t.getBoundingClientRect().bottom + window.scrollY) + 16 : null;
        })()""")
        params: dict[str, Any] = {"format": "png"}
        if bottom:
            width = self.evaluate("document.documentElement.clientWidth")
            params["clip"] = {"x": 0, "y": 0, "width": width, "height": bottom, "scale": 1}
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", **params)["data"]))
        return path


TABLE_ROWS_JS = """(() => {
    const table = Array.from(document.querySelectorAll('table')).find(t => t.offsetParent !== null);
    if (!table) return null;
    const cells = tr => Array.from(tr.cells).map(c => c.innerText.trim());
    return {header: cells(table.tHead.rows[0]), rows: Array.from(table.tBodies[0].rows).map(cells)};
})()"""


def visible_table(page: DevTools) -> list[dict[str, str]]:
    """The visible table of the current tab as one dict per row, keyed by column title."""
    table = page.evaluate(TABLE_ROWS_JS)
    if not table:
        return []
    return [dict(zip(table["header"], row, strict=False)) for row in table["rows"]]


def users_in_header(page: DevTools) -> int | None:
    """The user count in the page's header bar."""
    found = re.search(r"Users\s+(\d+)", page.evaluate("document.body.innerText"))
    return int(found.group(1)) if found else None


def cleanup_rows(page: DevTools) -> dict[str, dict[str, str]]:
    """The statistics table's CLEANUP rows by name, once every phase has a request count above zero."""
    rows = {r.get("Name", ""): r for r in visible_table(page) if r.get("Type") == "CLEANUP"}
    counted = all(re.fullmatch(r"[1-9]\d*", r.get("# Requests", "").replace(",", "")) for r in rows.values())
    return rows if {"cycle", "expiry", "phase1", "phase2"} <= set(rows) and counted else {}


def pool_rows(page: DevTools) -> list[dict[str, str]]:
    """The "DB pool" tab's rows, once the pool and pg_stat_activity columns hold numbers."""
    rows = visible_table(page)
    ready = [r for r in rows
             if re.fullmatch(r"\d+ / \d+", r.get("Checked out / limit", ""))
             and re.search(r"\d", r.get("pg_stat_activity by state", ""))
             and r.get("max_connections", "").isdigit()]
    return ready


@pytest.fixture
def gateway_up(tmp_path: Path) -> Iterator[str]:
    """``harness up --port 0 --cleanup-interval 1`` in a subprocess; yields the gateway URL."""
    log = (tmp_path / "up.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "up", "--port", "0", "--cleanup-interval", "1",
         "--state", str(tmp_path / "up-state.json")],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        def gateway_line() -> str | None:
            assert proc.poll() is None, f"harness up exited: {(tmp_path / 'up.log').read_text()[-2000:]}"
            found = re.search(r"^gateway: (http://\S+)$", (tmp_path / "up.log").read_text(), re.M)
            return found.group(1) if found else None

        yield wait_for(gateway_line, 30, "harness up to print the gateway URL")
    finally:
        stop_group(proc, signal.SIGTERM, 20)
        log.close()


@pytest.fixture
def locust_ui(gateway_up: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Locust's web UI on a free port (on 127.0.0.1 by the locustfile's default); yields (web UI URL, gateway URL)."""
    port = free_port()
    log = (tmp_path / "locust.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", gateway_up, "--web-port", str(port)],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: urllib.request.urlopen(url, timeout=2).status == 200, 30, "Locust's web UI")
        listening = {c.laddr.ip for c in psutil.Process(proc.pid).net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
        assert listening == {"127.0.0.1"}, f"the web UI should listen on loopback only, not {listening}"
        yield url, gateway_up
    finally:
        stop_group(proc, signal.SIGINT, 20)
        log.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    """Headless Chromium with a fresh profile; yields a DevTools client on its page."""
    binary = chromium_binary()
    assert binary is not None  # the module is skipped otherwise
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    log = (tmp_path / "chromium.log").open("w")
    proc = subprocess.Popen(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
         "--remote-debugging-port=0", "--window-size=1440,1700", "about:blank"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    page: DevTools | None = None
    try:
        port_file = profile / "DevToolsActivePort"
        port = wait_for(lambda: port_file.exists() and port_file.read_text().split("\n")[0].strip(), 20,
                        "Chromium's DevTools port")
        targets = wait_for(
            lambda: [t for t in get_json(f"http://127.0.0.1:{port}/json/list") if t.get("type") == "page"],
            10, "Chromium's page target")
        page = DevTools(targets[0]["webSocketDebuggerUrl"])
        page.call("Emulation.setDeviceMetricsOverride", width=1440, height=1700, deviceScaleFactor=1, mobile=False)
        yield page
    finally:
        if page is not None:
            page.close()
        stop_group(proc, signal.SIGTERM, 10)
        log.close()


def test_swarm_from_the_browser_shows_cleanup_rows_and_db_pool(
    locust_ui: tuple[str, str], browser: DevTools, tmp_path: Path
) -> None:
    web_url, gateway_url = locust_ui
    page = browser
    page.call("Page.enable")
    page.call("Page.navigate", url=web_url)
    wait_for(lambda: page.evaluate("!!document.querySelector('input[name=userCount]')"), 20, "the start form")

    page.fill("userCount", str(USERS))
    page.fill("spawnRate", str(USERS))
    page.click("button", "Custom parameters")
    wait_for(lambda: page.evaluate("document.querySelector('input[name=sessionLifetime]').offsetParent !== null"),
             5, "the custom parameters to unfold")
    page.fill("sessionLifetime", LIFETIME)
    created_before = get_json(f"{gateway_url}/admin/cycles?limit=0")["sessions"]["created"]
    page.click("button[type=submit]")
    started = time.monotonic()

    wait_for(lambda: page.evaluate("document.body.innerText.includes('RUNNING')"), 15, "the swarm to start")
    wait_for(lambda: cleanup_rows(page), 30, "CLEANUP rows with counts in the statistics table")
    wait_for(lambda: users_in_header(page) == USERS, 10, f"the header to show the {USERS} users typed in")
    time.sleep(max(0.0, SWARM_SECONDS - (time.monotonic() - started)))
    page.click("th", "Type")  # sort by type: the CLEANUP rows come first
    wait_for(lambda: visible_table(page)[0].get("Type") == "CLEANUP", 5, "the table sorted by type")
    rows = wait_for(lambda: cleanup_rows(page), 10, "CLEANUP rows with counts in the statistics table")
    stats_shot = page.screenshot(tmp_path / "webui-statistics.png")
    assert float(rows["cycle"]["# Requests"].replace(",", "")) >= 3
    assert rows["cycle"]["# Fails"] == "0"
    assert any(r.get("Type") == "SSE" for r in visible_table(page)), "the MCP requests are missing"

    # The lifetime typed into the form is the one in force: far more sessions turned over than the
    # default 5-30 s lifetime allows in this time.
    elapsed = time.monotonic() - started
    created = get_json(f"{gateway_url}/admin/cycles?limit=0")["sessions"]["created"] - created_before
    assert created > USERS * (elapsed / DEFAULT_LIFETIME_MIN + 1)

    page.click("[role=tab]", "DB pool")
    pool = wait_for(lambda: pool_rows(page), 15, "numbers in the DB pool tab")
    assert gateway_url in pool[0]["Gateway"]
    checked_out, limit = (int(n) for n in pool[0]["Checked out / limit"].split(" / "))
    assert 0 <= checked_out <= limit and limit > 0
    assert int(pool[0]["Sessions active"]) >= 0
    page.screenshot(tmp_path / "webui-db-pool.png")

    page.click("button", "Stop")
    wait_for(lambda: page.evaluate("document.body.innerText.includes('STOPPED')"), 15, "the swarm to stop")

    keep = os.environ.get("MCP_LOADTEST_SCREENSHOT")
    if keep:
        shutil.copyfile(stats_shot, keep)
