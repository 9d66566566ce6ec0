"""Offline HTML: the circuitsvis bundle inlined once, then one ``<div>`` + call per view.

circuitsvis's own ``str(rendered)`` / ``_repr_html_`` import the bundle from a CDN (and
probe the internet first), so an offline page stays blank. Here the bundle shipped in
the circuitsvis wheel (``circuitsvis/dist/cdn/iife.js``) is read from disk and put in a
plain ``<script>``; each view is ``CircuitsVis.render(id, CircuitsVis.<Component>,
props)`` with its props as script-safe JSON. Nothing here imports circuitsvis's Python
code or touches the network.
"""

import html
import itertools
import json
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..results import atomic_write_bytes
from ._bundle import bundle, circuitsvis_version, notebook_prelude

# What JSON inside <script> must not contain literally: "</script>" or "<!--" would end
# or confuse the script element; U+2028/9 are line breaks in old JavaScript parsers.
_SCRIPT_UNSAFE = {ch: f"\\u{ord(ch):04x}" for ch in "<>&\u2028\u2029"}
_ID_OK = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
SIGNIFICANT_DIGITS = 4
_counter = itertools.count()


# ---------------------------------------------------------------------- data
def script_json(value: Any) -> str:
    """Compact JSON that is safe inside ``<script>``: ``<``, ``>``, ``&``, U+2028/9 escaped.

    Raises:
        ValueError: For NaN or infinite numbers (use :func:`rounded`, which maps them to
            null).

    Example:
        >>> "<" in script_json({"tokens": ["</script>"]})
        False
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return "".join(_SCRIPT_UNSAFE.get(ch, ch) for ch in text)


def rounded(values: Any, digits: int = SIGNIFICANT_DIGITS) -> Any:
    """Nested lists of numbers rounded to ``digits`` significant digits (NaN/inf → None).

    Whole numbers become ints, so JSON spells them ``0`` / ``1`` (patterns are mostly
    zeros above the diagonal).

    Args:
        values: A tensor, array, number or nested lists of numbers.
        digits: Significant digits kept.

    Example:
        >>> rounded([0.123456, 12345.6, float("nan")])
        [0.1235, 12350, None]
    """
    if hasattr(values, "tolist"):
        values = values.tolist()
    if isinstance(values, list | tuple):
        return [rounded(v, digits) for v in values]
    number = float(values)
    if not math.isfinite(number):
        return None
    value = float(f"{number:.{digits}g}")
    return int(value) if value.is_integer() and abs(value) < 2**53 else value  # "0", not "0.0"


def html_tokens(tokens: Sequence[str]) -> list[str]:
    """Token strings escaped for components that insert them as HTML.

    circuitsvis's ColoredTokens(-Multi) and AttentionPatterns put each token into the page
    with ``innerHTML`` (after turning whitespace into ``&nbsp;``), so ``"<bos>"`` would
    vanish as an unknown tag; escaped, it reads "<bos>" on the page.

    Example:
        >>> html_tokens(["<bos>", " a<b", "&"])
        ['&lt;bos&gt;', ' a&lt;b', '&amp;']
    """
    return [html.escape(str(t), quote=False) for t in tokens]


# ---------------------------------------------------------------------- views
@dataclass(frozen=True)
class Component:
    """One circuitsvis component call: ``CircuitsVis.<name>`` with ``props``."""

    name: str
    props: dict[str, Any]
    height: str | None = None


@dataclass(frozen=True)
class Html:
    """A fragment of HTML that is already safe (escaped by whoever built it)."""

    text: str


Part = Component | Html


def element_ids(prefix: str) -> Iterator[str]:
    """Deterministic element ids ``prefix-0``, ``prefix-1``, ...

    Example:
        >>> ids = element_ids("v")
        >>> next(ids), next(ids)
        ('v-0', 'v-1')
    """
    if not _ID_OK.match(prefix):
        raise ValueError(
            f"id prefix {prefix!r} must start with a letter and hold only letters, digits, "
            "'-' and '_' (it is used in a CSS selector)"
        )
    return (f"{prefix}-{n}" for n in itertools.count())


IdSpec = str | Iterator[str] | None


@dataclass
class Rendered:
    """A view made of circuitsvis components and small HTML pieces, rendered offline.

    Attributes:
        title: Heading of the view.
        parts: What the view shows, in order.
        caption: A line of plain text under the title (escaped when rendered).
    """

    title: str
    parts: list[Part] = field(default_factory=list)
    caption: str = ""

    def fragment(self, ids: IdSpec = None, *, heading: bool = True) -> str:
        """The view's HTML body fragment, WITHOUT the bundle (for composing pages).

        Args:
            ids: Element ids: a prefix (``"v"`` gives ``v-0``, ``v-1``...), an iterator of
                ids (share one across the views of a page so ids stay unique), or None for
                ids from a process-wide counter (``osl-N``).
            heading: Start with the view's title as an ``<h3>``.

        Returns:
            HTML that needs the bundle loaded before it (see :func:`page`).
        """
        source = _id_source(ids)
        out = ['<section class="osl-view">']
        if heading:
            out.append(f"<h3>{html.escape(self.title)}</h3>")
        if self.caption:
            out.append(f'<p class="osl-caption">{html.escape(self.caption)}</p>')
        for part in self.parts:
            if isinstance(part, Html):
                out.append(part.text)
                continue
            element = next(source)
            style = f' style="min-height:{html.escape(part.height)}"' if part.height else ""
            out.append(f'<div id="{element}" class="osl-cv"{style}></div>')
            out.append(
                f'<script>CircuitsVis.render("{element}", CircuitsVis.{part.name}, '
                f"{script_json(part.props)});</script>"
            )
        out.append("</section>")
        return "\n".join(out)

    def _repr_html_(self) -> str:
        """The view for Jupyter / VS Code: the bundle once per notebook (see notebook_bundle)."""
        return f"<div>\n{notebook_prelude()}\n{self.fragment()}\n</div>"

    def html(self) -> str:
        """A complete offline HTML page with this view alone (ids ``osl-0``...)."""
        return page_html([self], title=self.title)

    def save_html(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`html` to ``path`` (``.html`` appended if missing), atomically.

        Returns:
            The path written.
        """
        return _save_html(path, self.html())

    def __repr__(self) -> str:
        names = [p.name for p in self.parts if isinstance(p, Component)]
        return f"Rendered(title={self.title!r}, components={names})"


@dataclass
class Page:
    """Several views and HTML pieces on one page, the circuitsvis bundle inlined once.

    Made by :func:`page`; shows itself in Jupyter / VS Code like a single view does, and
    saves as one complete offline page.

    Attributes:
        views: :class:`Rendered` views, or strings that are already-safe HTML fragments.
        title: The page title (escaped when rendered).
    """

    views: list["Rendered | str"]
    title: str

    def html(self) -> str:
        """The complete offline HTML page (element ids ``osl-0``, ``osl-1``... in order)."""
        return page_html(self.views, title=self.title)

    def save_html(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`html` to ``path`` (``.html`` appended if missing), atomically.

        Returns:
            The path written.
        """
        return _save_html(path, self.html())

    def _repr_html_(self) -> str:
        """The views for a notebook cell: the bundle once, ids unique in the notebook."""
        ids = _id_source(None)
        body = [v if isinstance(v, str) else v.fragment(ids) for v in self.views]
        title = f"<h2>{html.escape(self.title)}</h2>"
        return "\n".join(["<div>", notebook_prelude(), title, *body, "</div>"])

    def __str__(self) -> str:
        return self.html()

    def __repr__(self) -> str:
        kinds = [v.title if isinstance(v, Rendered) else "html" for v in self.views]
        return f"Page(title={self.title!r}, views={kinds})"


def _save_html(path: str | os.PathLike[str], text: str) -> Path:
    target = Path(path)
    if target.suffix.lower() not in (".html", ".htm"):
        target = target.with_name(target.name + ".html")
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, text.encode("utf-8"))
    return target


def _id_source(ids: IdSpec) -> Iterator[str]:
    if ids is None:
        return (f"osl-{next(_counter)}" for _ in itertools.count())
    if isinstance(ids, str):
        return element_ids(ids)
    return ids


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto;
       max-width: 1100px; padding: 0 1em; color: #222; }
section.osl-view { margin: 1.5em 0 2.5em; }
section.osl-view h3 { margin-bottom: 0.3em; }
p.osl-caption { color: #555; margin-top: 0; font-size: 0.92em; }
p.osl-note { color: #555; font-size: 0.85em; max-width: 60em; }
table.osl-table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
table.osl-table td, table.osl-table th { border: 1px solid #ddd; padding: 2px 8px;
       text-align: right; font-variant-numeric: tabular-nums; }
table.osl-table th { background: #f4f4f4; }
.osl-cv { margin: 0.4em 0; }
""".strip()


def page(views: Sequence[Any], *, title: str) -> Page:  # items checked below, with advice
    """Many views on one page: the bundle inlined once, then every view.

    Args:
        views: :class:`Rendered` views, or strings that are already-safe HTML fragments
            (``<h2>``, ``<img>``, paragraphs) placed as they are.
        title: The page title (escaped).

    Returns:
        A :class:`Page`, a view like the others: it displays in a notebook,
        ``save_html(path)`` writes it, ``html()`` (or ``str(page)``) is the HTML text.

    Example:
        >>> from oversquash_lens import render
        >>> view = render.colored_tokens(["<bos>", "1"], [0.5, 1.0])
        >>> text = render.page([view, "<p>done</p>"], title="demo").html()
        >>> text.count("CircuitsVis.render("), text.count("<p>done</p>")
        (1, 1)
    """
    views = list(views)
    for view in views:
        if not isinstance(view, Rendered | str):
            raise TypeError(
                f"page takes views (render.colored_tokens(...), render.collapse_pair(...)...) "
                f"or HTML strings; got {type(view).__name__}"
            )
    return Page(views, title)


def page_html(views: Sequence["Rendered | str"], *, title: str) -> str:
    """The complete offline HTML page of :func:`page`, as text.

    Element ids are ``osl-0``, ``osl-1``... in page order, so the same views give the
    same page.
    """
    ids = element_ids("osl")
    # a view titled like the page is not headed twice (a view saved on its own)
    body = [v if isinstance(v, str) else v.fragment(ids, heading=v.title != title) for v in views]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            f"<style>\n{_CSS}\n</style>",
            f"<!-- circuitsvis {html.escape(circuitsvis_version())} bundle, inlined -->",
            f"<script>{bundle()}</script>",
            "</head>",
            "<body>",
            f"<h1>{html.escape(title)}</h1>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )
