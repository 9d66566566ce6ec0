"""The saved HTML views render in headless chromium with the network cut off.

Skipped when chromium is missing, unless OSL_REQUIRE_BROWSER=1 (CI), which fails them.
Screenshots go to .artifacts/render/ (their paths are printed: run with -s to see them).
"""

import html
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

import oversquash_lens as osl
from oversquash_lens import render, tasks

from .browser import ARTIFACTS, open_page, require_chromium
from .conftest import BACKENDS

SHOTS = ARTIFACTS / "render"
TRICKY = ["<bos>", " a<b", "</script>", "&amp;", "x\u2028y"]


@pytest.fixture(scope="module")
def chromium() -> str:
    return require_chromium()


class _SpanText(HTMLParser):
    """Text of each innermost <span> inside elements of class ``colored-tokens``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth_in_tokens = 0
        self.stack: list[str] = []
        self.tokens: list[str] = []
        self._current: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = dict(attrs).get("class") or ""
        self.stack.append(tag)
        if "colored-tokens" in classes.split():
            self.depth_in_tokens = len(self.stack)
        elif tag == "span" and self.depth_in_tokens and dict(attrs).get("style"):
            self._current = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "span" and self._current is not None:
            self.tokens.append("".join(self._current))
            self._current = None
        if self.stack:
            self.stack.pop()
        if self.depth_in_tokens > len(self.stack):
            self.depth_in_tokens = 0

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self._current.append(data)


def shown_tokens(dom: str) -> list[str]:
    parser = _SpanText()
    parser.feed(dom)
    return parser.tokens


def visible(token: str) -> str:
    """How ColoredTokens shows a token: whitespace as no-break spaces."""
    return re.sub(r"\s", "\xa0", token)


def check_offline(run: Any, name: str) -> None:
    assert run.page_requests == [], f"{name} asked the network for {run.page_requests}"
    if run.screenshot is not None:
        print(f"screenshot: {run.screenshot}")
        import matplotlib.image

        pixels = matplotlib.image.imread(str(run.screenshot))
        colours = {tuple(p) for p in pixels[::8, ::8].reshape(-1, pixels.shape[-1]).tolist()}
        assert len(colours) > 5, f"{name}: the screenshot is blank"


def test_detector_sees_a_leaking_page(chromium: str, tmp_path: Path) -> None:
    # Without this, an empty request list could just mean the net log was not read.
    leak = tmp_path / "leak.html"
    leak.write_text(
        '<!DOCTYPE html><img src="http://example.com/x.png">'
        '<script>fetch("https://cdn.example.org/a.js").catch(() => {})</script>'
    )
    run = open_page(leak)
    assert "http://example.com/x.png" in run.page_requests
    assert "https://cdn.example.org/a.js" in run.page_requests


def test_colored_tokens_show_text_exactly(chromium: str, tmp_path: Path) -> None:
    view = render.colored_tokens(TRICKY, [0.1, 0.4, 1.0, 0.3, 0.0], title="tricky <tokens>")
    path = view.save_html(tmp_path / "tokens.html")
    run = open_page(path, screenshot=SHOTS / "colored_tokens.png", window=(900, 300))
    check_offline(run, "colored_tokens")
    assert shown_tokens(run.dom) == [visible(t) for t in TRICKY]
    # a view saved on its own is headed once, by the page's title
    assert "<h1>tricky &lt;tokens&gt;</h1>" in run.dom and "<h3>" not in run.dom


def test_attention_heads_render_offline(chromium: str, load: Any, tmp_path: Path) -> None:
    model = load("tiny-gpt2", BACKENDS[0])
    view = render.attention_heads(model, "1 a<b 1 1", layers=[0, 1], heads=[0, 2])
    path = view.save_html(tmp_path / "attention.html")
    run = open_page(path, screenshot=SHOTS / "attention_heads.png")
    check_offline(run, "attention_heads")
    # each AttentionHeads: one thumbnail per head plus the zoomed pattern, all canvases
    assert run.dom.count("<canvas") == 2 * (2 + 1)
    assert "Head Selector" in run.dom and "L1H2" in run.dom
    strings = osl.ModelAdapter(model).to_str_tokens(osl.ModelAdapter(model).to_tokens("1 a<b 1 1"))
    assert shown_tokens(run.dom) == [visible(t) for t in strings]  # path weights beneath
    assert "<|endoftext|>" in html.unescape(run.dom)


@pytest.mark.slow  # ~14 s: trace + collapse on tiny-llama, chromium twice
def test_one_page_of_many_views(chromium: str, load: Any, tmp_path: Path) -> None:
    model = load("tiny-llama", BACKENDS[0])
    flow = osl.trace(model, "1 1 1 1 1", method="exact")
    result = osl.collapse(model, tasks.ones(), [2, 3], ["float32"], progress=False)
    pair = tasks.ones().pair(model, 3)
    adapter = osl.ModelAdapter(model)
    views = [
        "<h2>Section &amp; heading</h2>",
        render.flow_tokens(flow, kind="sensitivity"),
        render.flow_tokens(flow, kind="paths"),
        render.collapse_pair(
            result, 3, tokens=(adapter.to_str_tokens(pair.a), adapter.to_str_tokens(pair.b))
        ),
    ]
    path = tmp_path / "page.html"
    path.write_text(render.page(views, title="many views").html(), encoding="utf-8")
    run = open_page(path, screenshot=SHOTS / "page.png")
    check_offline(run, "page")
    # every circuitsvis container was filled: none is still an empty <div>
    ids = re.findall(r'<div id="(osl-\d+)" class="osl-cv"', run.dom)
    assert ids == [f"osl-{i}" for i in range(4)]
    assert not re.search(r'<div id="osl-\d+" class="osl-cv"[^>]*></div>', run.dom)
    assert "Section &amp; heading" in run.dom
    # flow rows: the token strings twice (sensitivity, paths), then A and B of the pair
    expected = flow.str_tokens * 2 + tuple(adapter.to_str_tokens(pair.a))
    expected += tuple(adapter.to_str_tokens(pair.b))
    assert shown_tokens(run.dom) == [visible(t) for t in expected]


def test_notebook_snippet_renders_on_its_own(chromium: str, tmp_path: Path) -> None:
    # what Jupyter / VS Code get from _repr_html_, dropped into a bare page
    view = render.colored_tokens_multi(["<bos>", " 1"], [[0.1, 1.0], [1.0, 0.5]], ["L0", "L1"])
    path = tmp_path / "snippet.html"
    path.write_text(f'<!DOCTYPE html><meta charset="utf-8">{view._repr_html_()}', "utf-8")
    run = open_page(path)
    check_offline(run, "_repr_html_")
    assert shown_tokens(run.dom) == ["<bos>", "\xa01"]


def test_missing_browser_fails_in_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OSL_CHROMIUM", str(tmp_path / "no-such-chromium"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("OSL_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="OSL_REQUIRE_BROWSER=1"):
        require_chromium()
    monkeypatch.delenv("OSL_REQUIRE_BROWSER")
    with pytest.raises(pytest.skip.Exception, match="chromium not found"):
        require_chromium()
