"""Assemble report.html: sections of text, tables, inline figures and circuitsvis views.

Everything is inline (figures as base64 PNG, the circuitsvis bundle once through
``osl.render.page``), so the page opens offline from a single file. No computation here.
"""

import base64
import html
import io
import math
from collections.abc import Iterable, Sequence
from typing import Any

from .. import render
from .._adapter import ModelAdapter
from ..render._page import page_html

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em;
     border-bottom: 1px solid #ddd; } h3 { font-size: 1.05em; }
table.osl { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
table.osl th, table.osl td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
table.osl th { background: #f3f3f3; } table.osl td:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; }
figcaption, .note { font-size: 0.85em; color: #555; }
code { background: #f5f5f5; padding: 0 3px; }
"""


def escape(text: Any) -> str:
    """HTML-escaped ``str(text)``.

    Example:
        >>> escape("<bos> a<b")
        '&lt;bos&gt; a&lt;b'
    """
    return html.escape(str(text), quote=True)


def fmt(value: Any) -> str:
    """A table cell: floats to 3 significant digits, None as an en dash.

    Example:
        >>> fmt(0.000123456), fmt(None), fmt(3), fmt(float("nan"))
        ('0.000123', '–', '3', 'nan')
    """
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.3g}"
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """An HTML table of dict rows (header from the first row's keys, or ``columns``).

    Example:
        >>> table([{"k": 1, "linf": 0.5}])
        '<table class="osl"><tr><th>k</th><th>linf</th></tr><tr><td>1</td><td>0.5</td></tr></table>'
    """
    if not rows:
        return '<p class="note">(no rows)</p>'
    cols = list(columns) if columns is not None else list(rows[0])
    head = "".join(f"<th>{escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(fmt(row.get(c)))}</td>" for c in cols) + "</tr>"
        for row in rows
    )
    return f'<table class="osl"><tr>{head}</tr>{body}</table>'


def png_data_uri(fig: Any, dpi: int = 72) -> str:
    """A matplotlib figure as a ``data:image/png;base64,...`` URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def figure(fig: Any, caption: str, *, dpi: int = 72, files: Iterable[str] = ()) -> str:
    """A matplotlib figure as an inline PNG with a caption (and links to ``files``)."""
    return _figure_tag(png_data_uri(fig, dpi), caption, files)


def figure_png(png: bytes, caption: str, *, files: Iterable[str] = ()) -> str:
    """PNG bytes as an inline image with a caption (and links to the files beside the page).

    Example:
        >>> figure_png(b"PNG", "a & b")[:45]
        '<figure><img alt="a &amp; b" src="data:image/'
    """
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return _figure_tag(uri, caption, files)


def _figure_tag(uri: str, caption: str, files: Iterable[str]) -> str:
    links = " ".join(f'<a href="{escape(f)}">{escape(f.rsplit(".", 1)[-1])}</a>' for f in files)
    return (
        f'<figure><img alt="{escape(caption)}" src="{uri}">'
        f"<figcaption>{escape(caption)} {links}</figcaption></figure>"
    )


def paragraph(text: str) -> str:
    """A paragraph of escaped text."""
    return f"<p>{escape(text)}</p>"


def note(text: str) -> str:
    """A small grey note."""
    return f'<p class="note">{escape(text)}</p>'


def heading(text: str, level: int = 2, anchor: str | None = None) -> str:
    """A heading, with an ``id`` for the table of contents."""
    ident = f' id="{escape(anchor)}"' if anchor else ""
    return f"<h{level}{ident}>{escape(text)}</h{level}>"


def contents(entries: Sequence[tuple[str, str]]) -> str:
    """A list of links to the sections: ``(anchor, title)`` pairs."""
    items = "".join(f'<li><a href="#{escape(a)}">{escape(t)}</a></li>' for a, t in entries)
    return f"<ul>{items}</ul>"


_SHOWN_K = 10  # index of the length whose pair is shown: short enough to read


def views(kind: str, *args: Any) -> list[Any]:
    """The circuitsvis views of a section.

    ``kind`` and arguments: ``"collapse"`` (result, family, model): the pair at a short
    length; ``"flow"`` (flow result): sensitivity and path weight per token;
    ``"attention"`` (model, tokens ``[1, pos]``, n_layers): first and last layer patterns.
    """
    if kind == "collapse":
        result, family, model = args
        k = result.lengths[min(len(result.lengths) - 1, _SHOWN_K)]
        pair = family.pair(model, k)
        adapter = ModelAdapter(model)
        strings = (adapter.to_str_tokens(pair.a), adapter.to_str_tokens(pair.b))
        view = render.collapse_pair(result, k, tokens=strings)
        return [heading(f"The pair at k = {k}, distance at every point", 3), view]
    if kind == "flow":
        flow = args[0]
        return [
            heading("Sensitivity per input token", 3),
            render.flow_tokens(flow, kind="sensitivity"),
            heading("Path weight per input token", 3),
            render.flow_tokens(flow, kind="paths"),
            heading("Measurements and every path proxy at y_n, per input token", 3),
            render.proxy_tokens(flow),
        ]
    model, tokens, n_layers = args
    layers = sorted({0, n_layers - 1})
    return [
        heading(f"Attention patterns, layers {layers}, first {tokens.shape[-1]} tokens", 3),
        render.attention_heads(model, tokens, layers=layers),
    ]


def assemble(title: str, parts: Sequence[Any]) -> str:
    """The whole page: HTML strings and circuitsvis views, in order.

    The HTML text of :func:`oversquash_lens.render.page`: the circuitsvis bundle inlined
    once.

    Example:
        >>> "<h2>x</h2>" in assemble("t", ["<h2>x</h2>"])
        True
    """
    return page_html([f"<style>{STYLE}</style>", *parts], title=title)


def report_page(
    provenance: Any, suite: str, sections: Sequence[Any], load_s: float, total_s: float
) -> str:
    """The report: run details, contents, every section's parts, timings.

    Args:
        provenance: The model's :class:`~oversquash_lens.Provenance`.
        suite: Suite label, e.g. ``"paper (quick)"``.
        sections: Objects with ``key``, ``title``, ``parts`` and ``seconds``.
        load_s: Seconds spent loading the model.
        total_s: Seconds in all.
    """
    title = f"Over-squashing report: {provenance.model_name}"
    config = {
        "model": provenance.describe(),
        "suite": suite,
        "time": f"{total_s:.0f} s in all (model load {load_s:.0f} s)",
    }
    parts: list[Any] = [
        table([{"": k, "value": v} for k, v in config.items()]),
        paragraph(
            "Measurements of Barbero et al., 'Transformers need glasses! Information "
            "over-squashing in language tasks' (NeurIPS 2024), made by oversquash_lens on "
            "this model: representational collapse of growing sequences (Fig 5) and how "
            "the collapse length depends on the number format, where the last token's "
            "sensitivity to each input comes from beside the attention-path bound "
            "(Thm 5.1), and whether greedy answers to the copying and counting tasks "
            "fail as the sequence grows."
        ),
        contents([(s.key, s.title) for s in sections]),
    ]
    if not any(s.key.startswith("glasses") for s in sections):
        parts.append(note("The glasses comparison (separators, hint) is in the full report."))
    for s in sections:
        parts += s.parts
    timings = [{"step": s.key, "seconds": round(s.seconds, 1)} for s in sections]
    parts += [heading("Timings", anchor="timings"), table(timings)]
    parts.append(note("Raw results: results/*.npz (Result.load); numbers: summary.json."))
    return assemble(title, parts)
