"""Drive headless chromium on a saved page with the network cut off, and see what it did.

Used by ``tests/test_browser.py`` (and the report's browser test). One call,
:func:`open_page`, runs chromium twice on a ``file://`` URL: once with ``--dump-dom``
(the DOM after scripts ran) and once with ``--screenshot``, both with

- host lookups failing (``--host-resolver-rules="MAP * ~NOTFOUND"``) and every
  request sent to a closed local proxy port, so nothing can leave the machine, and
- a net log (``--log-net-log``) read back to list the requests the PAGE made: those
  whose network isolation key is the ``file://`` page's (chromium's own background
  requests, e.g. to google.com for the clock or the spell-check dictionary, have other
  keys and are not the page's doing).

A page that asks for anything but ``file:``/``data:``/``blob:`` URLs shows up in
``BrowserRun.page_requests`` whether or not the request could have succeeded.
"""

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REQUIRE_ENV = "OSL_REQUIRE_BROWSER"
ARTIFACTS = Path(__file__).resolve().parent.parent / ".artifacts"
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome:", "chrome-error:")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--virtual-time-budget=10000",  # a budget <= 5000 sometimes caught blank canvases
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--hide-scrollbars",
)


def find_chromium() -> str | None:
    """Path of a chromium binary (``$OSL_CHROMIUM`` first), or None."""
    explicit = os.environ.get("OSL_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """The chromium binary; fail when ``OSL_REQUIRE_BROWSER=1`` (CI), else skip."""
    binary = find_chromium()
    if binary is not None:
        return binary
    message = "chromium not found: install it (apt-get install -y chromium) or set OSL_CHROMIUM"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{message}; {REQUIRE_ENV}=1 requires the browser tests to run")
    pytest.skip(message)


@dataclass
class BrowserRun:
    """What chromium did with one page.

    Attributes:
        dom: The serialized DOM after the page's scripts ran (``--dump-dom``).
        screenshot: The PNG written (None if not asked for).
        page_requests: URLs the page asked for that are not local (should be empty).
        all_requests: Every URL in the net logs, chromium's own included (for messages).
    """

    dom: str
    screenshot: Path | None
    page_requests: list[str]
    all_requests: list[str]


def _run(binary: str, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [binary, *FLAGS, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"chromium failed ({result.returncode}): {result.stderr[-2000:]}")
    return result


def read_net_log(path: Path) -> tuple[list[str], list[str]]:
    """(page requests that are not local, every requested URL) from a chromium net log."""
    text = path.read_text(encoding="utf-8").rstrip()
    try:
        log = json.loads(text)
    except json.JSONDecodeError:  # chromium killed before it closed the JSON
        log = json.loads(text.rstrip(",") + "]}")
    types = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    page, everything = [], []
    for event in log.get("events", []):
        if types.get(event.get("type")) != "URL_REQUEST_START_JOB":
            continue
        params = event.get("params", {})
        url = params.get("url")
        if not url:
            continue
        everything.append(url)
        from_page = str(params.get("network_isolation_key", "")).startswith("file://")
        if from_page and not url.startswith(LOCAL_SCHEMES):
            page.append(url)
    return page, everything


def open_page(
    path: Path,
    *,
    screenshot: Path | None = None,
    window: tuple[int, int] = (1200, 1600),
    timeout: float = 90.0,
) -> BrowserRun:
    """Open ``path`` in headless chromium offline; return its DOM and the page's requests."""
    binary = require_chromium()
    url = path.resolve().as_uri()
    logs = path.parent / f".{path.stem}.netlog"
    logs.mkdir(exist_ok=True)
    dom_log, shot_log = logs / "dom.json", logs / "shot.json"
    dom = _run(binary, [f"--log-net-log={dom_log}", "--dump-dom", url], timeout).stdout
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        _run(
            binary,
            [
                f"--log-net-log={shot_log}",
                f"--screenshot={screenshot}",
                f"--window-size={window[0]},{window[1]}",
                url,
            ],
            timeout,
        )
    page, everything = [], []
    for log in (dom_log, shot_log):
        if log.exists():
            found, seen = read_net_log(log)
            page += found
            everything += seen
    return BrowserRun(dom, screenshot, page, everything)
