"""What a result holds, in words: a short ``repr`` and a table of its fields.

A result's class docstring documents every field in its ``Attributes:`` section; this
module reads that section, so the table and the docs can never disagree.
"""

import dataclasses
import inspect
import re
import textwrap
from typing import Any

import torch

from .._hooknames import FINAL_NORM

_ATTRIBUTE = re.compile(r"^(\s*)(\w+):\s*(.*)$")
_MAX_FIELDS_SHOWN = 8


def field_docs(cls: type) -> dict[str, str]:
    """Field name → its description, from the ``Attributes:`` section of ``cls``'s docstring.

    Continuation lines (indented deeper than the name) are joined to their field.

    Example:
        >>> class Point:
        ...     '''A point.
        ...
        ...     Attributes:
        ...         x: Across,
        ...             in metres.
        ...         y: Up.
        ...     '''
        >>> field_docs(Point)
        {'x': 'Across, in metres.', 'y': 'Up.'}
    """
    doc = inspect.getdoc(cls) or ""
    lines = doc.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:")
    except StopIteration:
        return {}
    docs: dict[str, list[str]] = {}
    indent: int | None = None
    current: str | None = None
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if indent is None:
            indent = depth
        if depth < indent:  # the next section
            break
        match = _ATTRIBUTE.match(line)
        if depth == indent and match:
            current = str(match.group(2))
            docs[current] = [str(match.group(3))]
        elif current is not None:
            docs[current].append(line.strip())
    return {name: " ".join(part for part in parts if part) for name, parts in docs.items()}


def short_value(value: Any) -> str:
    """A field's value in a few characters: a tensor's dtype and shape, a tuple's span.

    Example:
        >>> short_value(torch.zeros(2, 3))
        'float32[2, 3]'
        >>> short_value(tuple(range(1, 101)))
        '(1, 2, …, 100) 100 items'
        >>> short_value("repeated_last")
        "'repeated_last'"
    """
    if isinstance(value, torch.Tensor):
        return f"{str(value.dtype).removeprefix('torch.')}{list(value.shape)}"
    if isinstance(value, tuple | list) and len(value) > 4 or len(repr(value)) > 40:
        if isinstance(value, tuple | list) and value:
            head = ", ".join(repr(v) for v in value[:2])
            text = f"({head}, …, {value[-1]!r}) {len(value)} items"
            return text if len(text) <= 40 else f"({len(value)} items)"
    if isinstance(value, dict):
        return f"{{{len(value)} keys}}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "…"


def short_point(hook: str) -> str:
    """A point's short name: ``v(k)`` for residual points, ``y_n`` for the final norm.

    ``blocks.3.hook_resid_post`` → ``v(4)``, ``blocks.0.hook_resid_pre`` → ``v(0)``;
    other names unchanged.

    Example:
        >>> short_point("blocks.3.hook_resid_post"), short_point("ln_final.hook_normalized")
        ('v(4)', 'y_n')
    """
    if hook == FINAL_NORM:
        return "y_n"
    parts = hook.split(".")
    if len(parts) == 3 and parts[0] == "blocks" and parts[1].isdigit():
        if parts[2] == "hook_resid_post":
            return f"v({int(parts[1]) + 1})"
        if parts[2] == "hook_resid_pre":
            return f"v({parts[1]})"
    return hook


def share_line(values: Any) -> str:
    """Where a non-negative profile over positions puts its mass, in words.

    Example:
        >>> share_line(torch.tensor([2.0, 1.0, 1.0]))
        'token 0 holds 0.5 of the total, the last token 0.25; smallest at position 1'
    """
    total = float(values.sum())
    if not total > 0:
        return "all zero"
    first, last = float(values[0]) / total, float(values[-1]) / total
    low = int(torch.nan_to_num(values, nan=float("inf")).argmin())
    return (
        f"token 0 holds {first:.3g} of the total, the last token {last:.3g}; "
        f"smallest at position {low}"
    )


def result_repr(result: Any, headline: str) -> str:
    """A few lines: the class, where the numbers came from, the headline, the fields."""
    provenance = getattr(result, "provenance", None)
    source = "" if provenance is None else f" of {provenance.model_name}"
    if provenance is not None:
        source += f" [{provenance.backend}, {provenance.dtype}]"
    lines = [f"{type(result).__name__}{source}"]
    if headline:
        lines += [f"  {line}" for line in headline.splitlines()]
    names = [f.name for f in dataclasses.fields(result) if f.name != "provenance"]
    shown = [f"{name}={short_value(getattr(result, name))}" for name in names]
    if len(shown) > _MAX_FIELDS_SHOWN:
        shown = shown[:_MAX_FIELDS_SHOWN] + [f"… {len(names) - _MAX_FIELDS_SHOWN} more"]
    lines += textwrap.wrap(
        ", ".join(shown), width=100, initial_indent="  fields: ", subsequent_indent="    "
    )
    lines.append("  .describe() lists every field and what it means")
    return "\n".join(lines)


def describe_fields(result: Any) -> Any:
    """``pandas.DataFrame``: one row per field — name, value (short), meaning."""
    import pandas as pd

    docs = field_docs(type(result))
    rows = [
        {
            "field": fld.name,
            "value": short_value(getattr(result, fld.name)),
            "meaning": docs.get(fld.name, ""),
        }
        for fld in dataclasses.fields(result)
    ]
    return pd.DataFrame(rows, columns=["field", "value", "meaning"])


def fields_markdown(classes: list[type]) -> str:
    """A Markdown page: for each result class, its summary line and a table of its fields.

    The page ``docs/results.md`` is this text (a test keeps it current).
    """
    lines = [
        "# What each result holds",
        "",
        "Every analysis returns one of these dataclasses. `print(result)` shows its headline",
        "numbers, `result.describe()` this table, `result.to_dataframe()` the numbers.",
        "This page is generated from the classes' own documentation",
        "(`python scripts/results_page.py > docs/results.md`).",
    ]
    for cls in classes:
        summary = (inspect.getdoc(cls) or "").splitlines()[0]
        lines += [
            "",
            f"## `{cls.__name__}`",
            "",
            summary,
            "",
            "| field | meaning |",
            "| --- | --- |",
        ]
        docs = field_docs(cls)
        for fld in dataclasses.fields(cls):
            meaning = docs.get(fld.name, "").replace("|", "\\|")
            lines.append(f"| `{fld.name}` | {meaning} |")
    return "\n".join(lines) + "\n"
