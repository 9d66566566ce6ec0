"""The report's tables as rows: collapse per precision, proxies against the measurement.

Shared by the HTML report and the command line (which prints the same rows as text).
"""

from typing import Any

from ..analyzers._collapse_result import CollapseResult
from ..precision import get_format

COLLAPSE_COLUMNS = [
    "precision",
    "epsilon",
    "collapse k (bits)",
    "collapse k (ε)",
    "collapse k (argmax)",
    "predicted k (1/ε)",
    "fit slope",
    "y_n L∞ at k_max",
    "noise at k_max",
    "heads L∞ at k_max",
]


def collapse_rows(result: CollapseResult) -> list[dict[str, Any]]:
    """One row per precision: collapse lengths (three criteria), prediction, last distances."""
    y = result.point_index()
    rows = []
    for p, precision in enumerate(result.precisions):
        bits = result.collapse_length(precision, "bits")
        eps = result.collapse_length(precision, "epsilon")
        argmax = result.collapse_length(precision, "argmax")
        rows.append(
            {
                "precision": precision,
                "epsilon": get_format(result.formats[p]).epsilon,
                "collapse k (bits)": bits.measured,
                "collapse k (ε)": eps.measured,
                "collapse k (argmax)": argmax.measured,
                "predicted k (1/ε)": bits.predicted,
                "fit slope": None if bits.fit is None else float(bits.fit.slope),
                "y_n L∞ at k_max": float(result.metric()[p, -1, y]),
                "noise at k_max": float(result.metric(of="noise")[p, -1, y]),
                "heads L∞ at k_max": float(result.metric(of="head_distances")[p, -1, -1].mean()),
            }
        )
    return rows


def describe_collapse(result: CollapseResult) -> str:
    """One sentence on a sweep: family, lengths, passes and mode."""
    params = result.family_params
    text = ", ".join(f"{k}={v!r}" for k, v in params.items() if k not in ("name",))
    k0, k1 = result.lengths[0], result.lengths[-1]
    return (
        f"Family {result.family} ({text}); {len(result.lengths)} lengths from {k0} to {k1}; "
        f"{result.passes} forward passes per precision ({result.mode} mode)."
    )


PROXY_COLUMNS = [
    "proxy", "ρ full", "ρ frozen", "τ full", "first", "measured first", "holds", "slack median",
]  # fmt: skip


def proxy_rows(flow: Any) -> list[dict[str, Any]]:
    """One row per proxy at y_n: rank agreement with the full and frozen measurements."""
    table = flow.agreement()
    at = table[table.point == flow.points[flow.point_index()]]
    rows = []
    for method in flow.proxy_methods:
        mine = at[at.proxy == method].set_index("measure")
        row: dict[str, Any] = {
            "proxy": method,
            "ρ full": float(mine.loc["full", "spearman"]),
            "τ full": float(mine.loc["full", "kendall"]),
            "first": float(mine.loc["full", "proxy_first"]),
            "measured first": float(mine.loc["full", "measured_first"]),
        }
        if "frozen" in mine.index:
            row["ρ frozen"] = float(mine.loc["frozen", "spearman"])
            if "holds" in mine.columns and method == "certified":
                row["holds"] = float(mine.loc["frozen", "holds"])
                row["slack median"] = float(mine.loc["frozen", "slack_median"])
        rows.append(row)
    return rows
