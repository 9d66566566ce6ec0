"""Check a built documentation site: its links, and every page in a browser offline.

Usage::

    .venv/bin/python scripts/check_site.py site                # links, then chromium
    .venv/bin/python scripts/check_site.py site --no-browser   # links only (no chromium)

1. Links. From ``index.html``, follow every internal link; fail if a page (``*.html``
   except ``404.html``, which is written for web servers) cannot be reached, if a link,
   image, stylesheet or script points to a file that is not there, if a link's
   ``#fragment`` is not an id on its page, or if a page loads anything (a script, a
   stylesheet, an image...) from another host.
2. Browser. Open every page in headless chromium with the network cut off
   (``tests/browser.py``: one ``--dump-dom`` run per page, on a copy of the site) and
   fail if the page asked for anything that is not local, if a script raised or a
   resource failed to load (a small script added to the copy's ``<head>`` records both
   in the DOM), or if an offline circuitsvis view stayed empty. ``index.html`` is also
   saved as a screenshot under ``.artifacts/``.

Exits 0 when every check passes, 1 otherwise, listing each problem.
"""

from __future__ import annotations

import argparse
import json
import posixpath
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / ".artifacts" / "docs_site_index.png"
NOT_PAGES = {"404.html"}  # written for web servers (absolute links), not for file://
LOADS = ("script", "img", "iframe", "source", "video", "audio", "embed", "link")
NOT_LOADED = {"canonical", "alternate", "author", "license", "next", "prev", "help"}  # <link rel>
# Recorded into <html data-osl-errors="[...]"> of the copy each page is opened from.
ERROR_RECORDER = """<script>(function () {
  var seen = [];
  function note(message) {
    seen.push(String(message));
    document.documentElement.setAttribute("data-osl-errors", JSON.stringify(seen));
  }
  window.addEventListener("error", function (event) {
    var target = event.target || {};
    var where = event.filename || target.src || target.href || "";
    note((event.message || "failed to load") + " " + where + ":" + (event.lineno || ""));
  }, true);
  window.addEventListener("unhandledrejection", function (event) {
    note("unhandled rejection: " + (event.reason && event.reason.message || event.reason));
  });
  var original = console.error;
  console.error = function () {
    note("console.error: " + Array.prototype.join.call(arguments, " "));
    return original.apply(console, arguments);
  };
  window.addEventListener("load", function () {
    document.querySelectorAll("img").forEach(function (img) {
      if (!img.complete || img.naturalWidth === 0) note("image not shown: " + img.src);
    });
  });
})();</script>"""
EMPTY_VIEW = re.compile(r'<div id="(osl-\d+)" class="osl-cv"[^>]*></div>')


# --------------------------------------------------------------------------- links


@dataclass
class Parsed:
    """What one HTML file refers to.

    Attributes:
        links: ``(tag, URL, loads)`` of every ``href``/``src``: ``loads`` when the browser
            fetches it to show the page (a script, image, stylesheet), not a link to follow.
        ids: Every ``id`` and ``name`` in the file (fragment targets).
    """

    links: list[tuple[str, str, bool]] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)


class _Collector(HTMLParser):
    """Collects a page's URLs and ids."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parsed = Parsed()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        rel = set(values.get("rel", "").lower().split())
        loads = tag in LOADS and not (tag == "link" and rel & NOT_LOADED)
        for name in ("href", "src"):
            if name in values:
                self.parsed.links.append((tag, values[name], loads))
        for name in ("id", "name") if tag == "a" else ("id",):
            if values.get(name):
                self.parsed.ids.add(values[name])


def parse(path: Path) -> Parsed:
    """The URLs and ids of one HTML file."""
    collector = _Collector()
    collector.feed(path.read_text(encoding="utf-8", errors="replace"))
    return collector.parsed


def is_remote(url: str) -> bool:
    """Whether a URL leaves the site (another host, or a scheme that is not local)."""
    parts = urlsplit(url)
    return bool(parts.netloc) or parts.scheme not in ("", "data", "blob", "about", "file")


def is_link_only(url: str) -> bool:
    """Whether a URL is not a file of the site to check (mailto:, javascript:, remote)."""
    return is_remote(url) or urlsplit(url).scheme in ("data", "blob", "about", "javascript")


def pages(site: Path) -> list[str]:
    """The site's pages, as POSIX paths relative to ``site``."""
    found = (path.relative_to(site).as_posix() for path in site.rglob("*.html"))
    return sorted(page for page in found if page not in NOT_PAGES)


def target(page: str, url: str) -> tuple[str, str]:
    """(site-relative path, fragment) of a relative URL on ``page``."""
    parts = urlsplit(url)
    if not parts.path:
        return page, parts.fragment
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(page), unquote(parts.path)))
    return joined, parts.fragment


def _check_link(
    site: Path, page: str, link: tuple[str, str, bool], parsed: dict[str, Parsed]
) -> str:
    """The problem with one URL of a page ('' if none)."""
    tag, url, loads = link
    if is_remote(url):
        return f"{page}: <{tag}> loads {url} from the network" if loads else ""
    if is_link_only(url):
        return ""
    path, fragment = target(page, url)
    file = site / path
    if path.startswith("../") or not file.exists():
        return f"{page}: <{tag}> points to {url}, which is not in the site"
    if file.is_dir():
        return f"{page}: <{tag}> points to the folder {url}, not to a file"
    if fragment and path.endswith(".html"):
        ids = parsed[path].ids if path in parsed else parse(file).ids
        if unquote(fragment) not in ids:
            return f"{page}: link {url}: no id {fragment!r} on {path}"
    return ""


def check_links(site: Path) -> list[str]:
    """Unreachable pages, links to missing files or fragments, and loads from the network."""
    everything = pages(site)
    parsed = {page: parse(site / page) for page in everything}
    problems = []
    for page in everything:
        for link in parsed[page].links:
            problem = _check_link(site, page, link, parsed)
            if problem:
                problems.append(problem)
    unreachable = sorted(set(everything) - reachable(parsed, "index.html"))
    problems += [f"{page}: not reachable by links from index.html" for page in unreachable]
    return problems


def reachable(parsed: dict[str, Parsed], start: str) -> set[str]:
    """The pages reachable from ``start`` through links (``start`` included)."""
    if start not in parsed:
        return set()
    seen, todo = {start}, [start]
    while todo:
        page = todo.pop()
        for _, url, _ in parsed[page].links:
            if is_link_only(url):
                continue
            path, _ = target(page, url)
            if path in parsed and path not in seen:
                seen.add(path)
                todo.append(path)
    return seen


# --------------------------------------------------------------------------- browser


def with_error_recorder(html: str) -> str:
    """``html`` with ``ERROR_RECORDER`` as the first thing in its ``<head>``."""
    match = re.search(r"<head[^>]*>", html, re.IGNORECASE)
    if match is None:
        return ERROR_RECORDER + html
    return html[: match.end()] + ERROR_RECORDER + html[match.end() :]


def recorded_errors(dom: str) -> list[str]:
    """What ``ERROR_RECORDER`` noted in a dumped DOM."""
    match = re.search(r'<html[^>]*\sdata-osl-errors="([^"]*)"', dom)
    if match is None:
        return []
    from html import unescape

    return [str(item) for item in json.loads(unescape(match.group(1)))]


def check_page(copy: Path, page: str, screenshot: Path | None = None) -> list[str]:
    """Open one page of the site's copy offline (a screenshot too, if asked); its problems."""
    from tests.browser import open_page

    run = open_page(copy / page, screenshot=screenshot)
    problems = [f"{page}: requested {url} (not local)" for url in run.page_requests]
    problems += [f"{page}: {error}" for error in recorded_errors(run.dom)]
    problems += [f"{page}: view {view} did not render" for view in EMPTY_VIEW.findall(run.dom)]
    return problems


def copy_site(site: Path, into: Path) -> Path:
    """A copy of the site with the error recorder in every page (the site is untouched)."""
    copy = into / "site"
    shutil.copytree(site, copy)
    for page in pages(copy):
        file = copy / page
        file.write_text(with_error_recorder(file.read_text(encoding="utf-8")), encoding="utf-8")
    return copy


def check_browser(site: Path, jobs: int) -> list[str]:
    """Every page opened in chromium offline; the problems found."""
    sys.path.insert(0, str(ROOT))
    from tests.browser import find_chromium

    if find_chromium() is None:
        return ["chromium not found: install it (apt-get install -y chromium) or set OSL_CHROMIUM"]
    with tempfile.TemporaryDirectory() as scratch:
        copy = copy_site(site, Path(scratch))
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            found = pool.map(
                lambda page: check_page(copy, page, SCREENSHOT if page == "index.html" else None),
                pages(copy),
            )
            return [problem for problems in found for problem in problems]


# --------------------------------------------------------------------------- main


def report(title: str, problems: Iterable[str]) -> int:
    """Print a check's problems; 1 if there were any."""
    problems = list(problems)
    print(f"{title}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
    for problem in problems:
        print(f"  {problem}")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    """Check the site given on the command line; 0 if it passes."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("site", type=Path, help="the built site (mkdocs build --site-dir)")
    parser.add_argument("--no-browser", action="store_true", help="links only, no chromium")
    parser.add_argument("--jobs", type=int, default=2, help="chromium processes at once")
    args = parser.parse_args(argv)
    site = args.site.resolve()
    if not (site / "index.html").is_file():
        print(f"{site}: no index.html (build the site first)")
        return 1
    print(f"{site}: {len(pages(site))} pages")
    failed = report("links", check_links(site))
    if not args.no_browser:
        failed |= report("browser (offline)", check_browser(site, args.jobs))
        if SCREENSHOT.exists():
            print(f"screenshot of index.html: {SCREENSHOT}")
    return failed


if __name__ == "__main__":
    sys.exit(main())
