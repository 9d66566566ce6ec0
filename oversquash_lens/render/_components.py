"""Thin wrappers: token values and results → circuitsvis props → :class:`Rendered`.

No computation beyond choosing, transposing and rounding what is shown, and no model:
the view that runs one is in ``_attention.py``.
"""

import html
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .. import _hooknames as names
from ..analyzers._collapse_math import metric_index
from ..analyzers._collapse_probe import PairComparison
from ..analyzers._collapse_result import CollapseResult
from ..analyzers._flow import FlowResult
from ..analyzers._path_result import PathResult
from ..analyzers._sensitivity_result import SensitivityResult
from ..precision import ULP_NOTE
from ..results._describe import short_point
from ._page import Component, Html, Part, Rendered, html_tokens, rounded


def _as_float_tensor(values: Any, what: str) -> Tensor:
    try:
        return torch.as_tensor(values).detach().to("cpu", torch.float64)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"{what} must be numbers (a tensor, array or list): {error}") from None


def _check_tokens(tokens: Sequence[str], n: int, what: str) -> list[str]:
    strings = [str(t) for t in tokens]
    if len(strings) != n:
        raise ValueError(f"{what}: {len(strings)} tokens for {n} values; give one value per token")
    return strings


# ---------------------------------------------------------------------- basic views
def colored_tokens(
    tokens: Sequence[str],
    values: Any,
    *,
    title: str | None = None,
    caption: str = "",
    min_value: float | None = None,
    max_value: float | None = None,
) -> Rendered:
    """Tokens coloured by one value each (circuitsvis ``ColoredTokens``).

    circuitsvis inserts each token as HTML, so tokens are HTML-escaped here and read
    correctly on the page; its hover box prints the token as plain text, where an
    escaped ``<`` shows as ``&lt;``.

    Args:
        tokens: Token strings, shown as text (``"<bos>"`` reads "<bos>").
        values: ``[n_tokens]`` numbers (a tensor, array or list), rounded to 4
            significant digits.
        title: Heading (default "Tokens").
        caption: A line of text under the heading.
        min_value: Value drawn with the full negative colour (default: the minimum).
        max_value: Value drawn with the full positive colour (default: the maximum).

    Returns:
        A :class:`Rendered` view.

    Example:
        >>> from oversquash_lens import render
        >>> view = render.colored_tokens(["<bos>", "1", " 1"], [0.0, 0.5, 1.0], title="demo")
        >>> view.parts[0].props["tokens"]
        ['&lt;bos&gt;', '1', ' 1']
    """
    vector = _as_float_tensor(values, "values")
    if vector.ndim != 1:
        raise ValueError(f"values must be 1-D [n_tokens], got shape {tuple(vector.shape)}")
    strings = _check_tokens(tokens, vector.shape[0], "colored_tokens")
    props: dict[str, Any] = {"tokens": html_tokens(strings), "values": rounded(vector)}
    if min_value is not None:
        props["minValue"] = float(min_value)
    if max_value is not None:
        props["maxValue"] = float(max_value)
    return Rendered(title or "Tokens", [Component("ColoredTokens", props)], caption)


def colored_tokens_multi(
    tokens: Sequence[str],
    values: Any,
    row_names: Sequence[str],
    *,
    title: str | None = None,
    caption: str = "",
) -> Rendered:
    """Tokens coloured by one of several rows of values, chosen in the page.

    circuitsvis ``ColoredTokensMulti``: a selector lists the rows (e.g. one per layer);
    each row is coloured on its own scale (0 to the row's maximum), and hovering a token
    shows all its rows. (The hover box prints token text as-is, so escaped characters
    such as ``<`` appear there as ``&lt;``; the tokens themselves read correctly.)

    Args:
        tokens: Token strings.
        values: ``[n_tokens, n_rows]`` numbers.
        row_names: One label per row.
        title: Heading (default "Tokens").
        caption: A line of text under the heading.

    Returns:
        A :class:`Rendered` view.

    Example:
        >>> from oversquash_lens import render
        >>> view = render.colored_tokens_multi(["a", "b"], [[1, 2], [3, 4]], ["L0", "L1"])
        >>> view.parts[0].props["labels"]
        ['L0', 'L1']
    """
    table = _as_float_tensor(values, "values")
    if table.ndim != 2:
        raise ValueError(f"values must be 2-D [n_tokens, n_rows], got shape {tuple(table.shape)}")
    strings = _check_tokens(tokens, table.shape[0], "colored_tokens_multi")
    labels = [str(r) for r in row_names]
    if len(labels) != table.shape[1]:
        raise ValueError(
            f"{len(labels)} row names for {table.shape[1]} rows: values are [n_tokens, n_rows]"
        )
    props = {"tokens": html_tokens(strings), "values": rounded(table), "labels": labels}
    return Rendered(title or "Tokens", [Component("ColoredTokensMulti", props)], caption)


# ---------------------------------------------------------------------- flow
def _point_label(hook: str) -> str:
    if hook == names.FINAL_NORM:
        return "y_n (final norm)"
    parts = hook.split(".")
    if len(parts) == 3 and parts[0] == "blocks" and parts[2] == "hook_resid_post":
        return f"v({int(parts[1]) + 1}) after block {parts[1]}"
    return hook


def _str_tokens(strings: Sequence[str], n: int) -> list[str]:
    """The result's token strings, or positions when it has none."""
    return [str(s) for s in strings] if len(strings) == n else [f"[{i}]" for i in range(n)]


def proxy_tokens(
    flow: FlowResult,
    *,
    point: int | str | None = None,
    batch: int = 0,
    title: str | None = None,
) -> Rendered:
    """One output point's measurements and every path proxy, per token, one row each.

    Rows: the measured sensitivity with full attention, with attention frozen and through
    the attention scores (those measured), then each proxy (bound, rollout, value, flow,
    certified...). Each row is coloured from 0 to its own maximum, so rows with very
    different scales (a certified bound, a share) compare by shape: which tokens each one
    says survive.

    Args:
        flow: A :class:`~oversquash_lens.FlowResult`.
        point: Output point (default y_n).
        batch: Batch row.
        title: Heading.

    Returns:
        A :class:`Rendered` view (``ColoredTokensMulti``).

    Example:
        >>> import oversquash_lens as osl
        >>> from oversquash_lens import render
        >>> flow = osl.trace(osl.load_model("tiny-llama"), "1 1 1 1", method="exact",
        ...                  path_methods=["rollout", "value"])
        >>> render.proxy_tokens(flow).parts[0].props["labels"]
        ['measured: full', 'measured: frozen', 'measured: scores', 'proxy: rollout', 'proxy: value']
    """
    if not isinstance(flow, FlowResult):
        raise TypeError(f"proxy_tokens takes a FlowResult, got {type(flow).__name__}")
    k = flow.point_index(point)
    rows = [flow.measure(which)[batch, k] for which in flow.measures]
    rows += [flow.proxies[p, batch, k] for p in range(len(flow.proxy_methods))]
    labels = [f"measured: {which}" for which in flow.measures]
    labels += [f"proxy: {method}" for method in flow.proxy_methods]
    values = torch.stack(rows)
    n = int(values.shape[-1])
    tokens = _str_tokens(flow.str_tokens if batch == 0 else (), n)
    caption = (
        f"{flow.provenance.model_name}, {_point_label(flow.points[k])}: the measured "
        f"sensitivity ({flow.sensitivity_method}) and each path proxy, per input token; each "
        "row coloured from 0 to its own maximum. Hover a token for every row's value."
    )
    return colored_tokens_multi(
        tokens, values.T, labels, title=title or "Measured sensitivity and path proxies",
        caption=caption,
    )  # fmt: skip


def flow_tokens(
    result: FlowResult | SensitivityResult | PathResult,
    *,
    kind: str = "sensitivity",
    batch: int = 0,
    title: str | None = None,
) -> Rendered:
    """Per-token sensitivity or path weight, one selectable row per layer.

    Stepping through the rows shows information about early tokens fading layer by layer.

    Args:
        result: A :class:`~oversquash_lens.FlowResult` (either kind), a
            :class:`~oversquash_lens.SensitivityResult` (``"sensitivity"``) or a
            :class:`~oversquash_lens.PathResult` (``"paths"``).
        kind: ``"sensitivity"`` (‖∂h/∂x_i‖ of each output point) or ``"paths"`` (path
            weight to the last token after each layer).
        batch: Batch row.
        title: Heading.

    Returns:
        A :class:`Rendered` view (``ColoredTokensMulti``).

    Raises:
        ValueError: For a kind the result does not hold.

    Example:
        >>> import oversquash_lens as osl
        >>> from oversquash_lens import render
        >>> paths = osl.attention_paths(osl.load_model("tiny-gpt2"), "1 1 1", method="rollout")
        >>> render.flow_tokens(paths, kind="paths").parts[0].props["labels"]
        ['layer 0', 'layer 1']
    """
    if kind not in ("sensitivity", "paths"):
        raise ValueError(f"kind must be 'sensitivity' or 'paths', got {kind!r}")
    if isinstance(result, FlowResult):
        values = (result.sensitivity if kind == "sensitivity" else result.paths)[batch]
        labels = [_point_label(p) for p in result.points]
        if kind == "paths":
            labels = [
                f"layer {layer} (for {label})"
                for layer, label in zip(result.path_layers, labels, strict=True)
            ]
        strings, model = result.str_tokens, result.provenance.model_name
        how = result.sensitivity_method if kind == "sensitivity" else result.path_method
    elif isinstance(result, SensitivityResult):
        if kind != "sensitivity":
            raise ValueError("a SensitivityResult holds sensitivities: use kind='sensitivity'")
        values, labels = result.norms[batch], [_point_label(p) for p in result.points]
        strings, model, how = result.str_tokens, result.provenance.model_name, result.method
    elif isinstance(result, PathResult):
        if kind != "paths":
            raise ValueError("a PathResult holds path weights: use kind='paths'")
        values = result.weights[batch]
        labels = [f"layer {layer}" for layer in range(result.n_layers)]
        strings, model, how = result.str_tokens, result.provenance.model_name, result.method
    else:
        raise TypeError(
            "flow_tokens takes a FlowResult, SensitivityResult or PathResult, got "
            f"{type(result).__name__}"
        )
    n = int(values.shape[-1])
    tokens = _str_tokens(strings if batch == 0 else (), n)
    what = "sensitivity ‖∂h/∂x_i‖" if kind == "sensitivity" else "path weight to the last token"
    row = "output point" if kind == "sensitivity" else "layer"
    caption = (
        f"{model}: {what} ({how}), one row per {row}; each row coloured from 0 to its own "
        "maximum. Hover a token for every row's value."
    )
    return colored_tokens_multi(
        tokens, values.T, labels, title=title or f"Per-token {kind}", caption=caption
    )


# ---------------------------------------------------------------------- collapse
def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> Html:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return Html(
        f'<table class="osl-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def _number(value: float) -> str:
    return "nan" if value != value else f"{value:.4g}"


V0_NOTE = (
    "v(0) is the embedding of the last input token: A and B end in the same token, so it is "
    "identical by construction; that is not a collapse."
)


def collapse_pair(
    result: CollapseResult | PairComparison,
    k: int | None = None,
    *,
    precision: str | None = None,
    metric: str = "linf",
    tokens: Any = None,  # two sequences of str, checked here to say what to pass instead
    title: str | None = None,
) -> Rendered:
    """The two sequences of a pair and how far apart their last tokens are, per point.

    Args:
        result: A :class:`~oversquash_lens.CollapseResult` (then ``k`` picks the length)
            or a single :class:`~oversquash_lens.PairComparison`.
        k: The family's length k (a CollapseResult only).
        precision: Precision label (default: the result's first).
        metric: ``"l1"``, ``"l2"``, ``"linf"`` or ``"cosine"``.
        tokens: The token strings of A_k and B_k, shown with the positions where they
            differ highlighted; omitted if None. Build them from the family's pair:
            ``p = family.pair(model, k)`` then
            ``(model.to_str_tokens(p.a), model.to_str_tokens(p.b))``. Token ids are refused.
        title: Heading.

    Returns:
        A :class:`Rendered` view: the two sequences (``ColoredTokens``) and a table of the
        distance at every point v(0)..v(L), y_n and logits, with the ULP distance and what
        it means beside it.

    Raises:
        TypeError: If ``tokens`` is not two sequences of strings (e.g. token ids).

    Example:
        >>> import oversquash_lens as osl
        >>> from oversquash_lens import render, tasks
        >>> model = osl.load_model("tiny-gpt2")
        >>> family = tasks.ones()
        >>> result = osl.collapse(model, family, [2, 4], ["float32"], progress=False)
        >>> p = family.pair(model, 4)
        >>> view = render.collapse_pair(
        ...     result, 4, tokens=(model.to_str_tokens(p.a), model.to_str_tokens(p.b))
        ... )
        >>> view.title
        'repeated_last: k = 4, float32'
    """
    j = metric_index(metric)
    if isinstance(result, CollapseResult):
        if k is None or k not in result.lengths:
            raise ValueError(f"give k, one of the measured lengths {list(result.lengths)}")
        p = result.precision_index(precision if precision is not None else result.precisions[0])
        i = result.lengths.index(k)
        distances, noise = result.distances[p, i, :, j], result.noise[p, i, :, j]
        equal, ratio, ulps = result.bitwise_equal[p, i], result.eps_ratio[p, i], result.ulps[p, i]
        argmax = (int(result.argmax_a[p, i]), int(result.argmax_b[p, i]))
        points, fmt = result.points, result.formats[p]
        heading = f"{result.family}: k = {k}, {result.precisions[p]}"
    elif isinstance(result, PairComparison):
        distances, noise = result.distances[:, j], None
        equal, ratio, ulps = result.bitwise_equal, result.eps_ratio, result.ulps
        argmax, points, fmt = (result.argmax_a, result.argmax_b), result.points, result.format
        heading = f"pair comparison, {fmt}"
    else:
        raise TypeError(
            f"collapse_pair takes a CollapseResult or PairComparison, got {type(result).__name__}"
        )
    parts: list[Part] = []
    if tokens is not None:
        a, b = _token_strings(tokens)
        for label, mine, other in (("A", a, b), ("B", b, a)):
            differs = [float(i >= len(other) or t != other[i]) for i, t in enumerate(mine)]
            parts.append(
                Html(
                    f"<p><b>{label}</b> ({len(mine)} tokens; highlighted: differs from "
                    "the other)</p>"
                )
            )
            parts.append(
                Component(
                    "ColoredTokens",
                    {
                        "tokens": html_tokens(mine),
                        "values": differs,
                        "minValue": 0.0,
                        "maxValue": 1.0,
                    },
                )
            )
    header = [
        "point",
        f"{metric} distance",
        f"bitwise equal in {fmt}",
        f"{metric} / ε({fmt})",
        f"largest distance in ULPs of {fmt} (see below)",
    ]
    if noise is not None:
        header.insert(2, "noise floor")
    rows = []
    for index, point in enumerate(points):
        label = short_point(point)
        row = [label + (" (last token's embedding)" if label == "v(0)" else "")]
        row.append(_number(float(distances[index])))
        if noise is not None:
            row.append(_number(float(noise[index])))
        row += ["yes" if bool(equal[index]) else "no", _number(float(ratio[index]))]
        row.append(_number(float(ulps[index])))
        rows.append(row)
    parts.append(_table(header, rows))
    notes = [ULP_NOTE] + ([V0_NOTE] if any(short_point(p) == "v(0)" for p in points) else [])
    parts.append(Html("".join(f'<p class="osl-note">{html.escape(n)}</p>' for n in notes)))
    caption = (
        f"Distance between the last-token representations of A and B at each point; next "
        f"token argmax A/B: {argmax[0]}/{argmax[1]} (-1: logits not kept)."
    )
    return Rendered(title or heading, parts, caption)


def _token_strings(tokens: Any) -> tuple[list[str], list[str]]:
    """The two token-string lists of ``tokens``, refusing ids and anything else."""
    hint = (
        "tokens must be two lists of token strings, e.g. p = family.pair(model, k); "
        "tokens=(model.to_str_tokens(p.a), model.to_str_tokens(p.b))"
    )
    if isinstance(tokens, str) or not isinstance(tokens, Sequence) or len(tokens) != 2:
        raise TypeError(f"{hint}; got {type(tokens).__name__}")
    out: list[list[str]] = []
    for side in tokens:
        if isinstance(side, str) or not isinstance(side, Sequence):
            raise TypeError(f"{hint}; got {type(side).__name__} (token ids?)")
        bad = [t for t in side if not isinstance(t, str)]
        if bad:
            raise TypeError(f"{hint}; got {type(bad[0]).__name__} items (token ids?)")
        out.append(list(side))
    return out[0], out[1]
