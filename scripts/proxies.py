"""Which path proxy explains the measured sensitivity: every proxy against full and frozen.

For each model, prompt (counting ones, the first digit of "01…1", the last digit of
"1…10") and length n, ``osl.trace`` measures ‖∂h_n(ℓ)/∂v_i(0)‖_F with full attention and
with attention frozen (Hutchinson, one doubled-batch pass, the same probes for both) at a
few depths, beside every path proxy: the Thm 5.1 bound with unit constants, rollout,
value-weighted rollout, attention flow (when it fits its budget) and the certified bound.
Writes ``table.md`` (Spearman ρ per proxy and depth, against full and frozen), the
certified bound's check (holds, slack), ``summary.json``, one ``.npz`` per run and
``agreement.png`` to ``--out``.

Usage::

    .venv/bin/python scripts/proxies.py --out docs/proxies [--threads 1]
"""

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

import oversquash_lens as osl
from oversquash_lens.analyzers._proxies import FLOW_BUDGET, flow_work
from oversquash_lens.analyzers._ranks import spearman
from oversquash_lens.reporting._plan import depths, prompt_tokens
from oversquash_lens.results import atomic_write_bytes

PROMPTS = ("count_ones", "first_digit", "last_digit")
METHODS = ("bound", "rollout", "value", "flow", "certified")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["smollm2-135m", "toy-count", "toy-copy"])
    parser.add_argument("--lengths", type=int, nargs="*", default=[64, 256])
    parser.add_argument("--probes", type=int, default=32)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument(
        "--reuse", action="store_true", help="rebuild the tables from the saved results"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {}
    lines = _header(args.probes)
    checks = ["", "## The certified bound against the frozen measurement\n",
              "| model | prompt | n | point | holds | slack median | slack max | bound at y_n |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name in args.models:
        model = osl.load_model(name)
        for n in args.lengths:
            n_here = min(n, model.cfg.n_ctx)
            for prompt in PROMPTS:
                key = f"{name}_{prompt}_{n_here}"
                tokens = prompt_tokens(model, prompt, n_here)
                methods = [
                    m for m in METHODS
                    if m != "flow" or flow_work(n_here, model.cfg.n_layers) <= FLOW_BUDGET
                ]  # fmt: skip
                saved = args.out / f"{key}.npz"
                start = time.perf_counter()
                if args.reuse and saved.exists():
                    flow = osl.FlowResult.load(saved)
                    seconds = float(flow.provenance.extra.get("seconds", float("nan")))
                else:
                    flow = osl.trace(
                        model, tokens, probes=args.probes, path_methods=methods,
                        layers=depths(model.cfg.n_layers),
                    )  # fmt: skip
                    seconds = time.perf_counter() - start
                    flow.provenance = dataclasses.replace(
                        flow.provenance, extra={**flow.provenance.extra, "seconds": seconds}
                    )
                    flow.save(saved)
                table = flow.agreement()
                summary[key] = {
                    "seconds": seconds,
                    "points": list(flow.points),
                    "rows": table.to_dict("records"),
                }
                lines += _rows(name, prompt, n_here, flow, table, seconds)
                checks += _checks(name, prompt, n_here, flow, table)
                print(f"{key}: {seconds:.0f} s", flush=True)
    atomic_write_bytes(args.out / "table.md", ("\n".join(lines + checks) + "\n").encode())
    atomic_write_bytes(args.out / "summary.json", json.dumps(summary, indent=1).encode())
    _figure(args.out, summary)


def _header(probes: int) -> list[str]:
    return [
        "# Which path proxy explains the measured sensitivity\n",
        f"Spearman ρ over input positions between each proxy and the measured sensitivity "
        f"(Hutchinson, {probes} probes), with full attention / with attention frozen, at each "
        "depth (block ℓ's output, then y_n). first: the share of the measurement on the "
        "first token. *frozen measurement*: ρ between the frozen-attention and the full "
        "measurement themselves. Written by `scripts/proxies.py`.\n",
        "| model | prompt | n | point | first (full) | frozen measurement | "
        + " | ".join(f"{m} full / frozen" for m in METHODS)
        + " | seconds |",
        "|---|---|---|---|---|---|" + "---|" * len(METHODS) + "---|",
    ]


def _short(point: str) -> str:
    return "y_n" if point.startswith("ln_final") else f"block {point.split('.')[1]}"


def _rows(name: str, prompt: str, n: int, flow: Any, table: Any, seconds: float) -> list[str]:
    out = []
    for k, point in enumerate(flow.points):
        at = table[table.point == point]
        cells = []
        for method in METHODS:
            mine = at[at.proxy == method].set_index("measure")
            if mine.empty:
                cells.append("–")
                continue
            frozen = f"{mine.loc['frozen', 'spearman']:.2f}" if "frozen" in mine.index else "–"
            cells.append(f"{mine.loc['full', 'spearman']:.2f} / {frozen}")
        first = float(at.iloc[0]["measured_first"])
        time_cell = f"{seconds:.1f}" if k == 0 and seconds == seconds else ""
        frozen_rho = float(spearman(flow.sensitivity[0, k], flow.measure("frozen")[0, k]))
        out.append(
            f"| {name} | {prompt} | {n} | {_short(point)} | {first:.3f} | {frozen_rho:.2f} | "
            + " | ".join(cells)
            + f" | {time_cell} |"
        )
    return out


def _checks(name: str, prompt: str, n: int, flow: Any, table: Any) -> list[str]:
    rows = table[(table.proxy == "certified") & (table.measure == "frozen")]
    out = []
    for _, row in rows.iterrows():
        bound = float(flow.proxy("certified")[0, flow.points.index(row.point)].max())
        out.append(
            f"| {name} | {prompt} | {n} | {_short(row.point)} | {row.holds:.2f} | "
            f"{row.slack_median:.3g} | {row.slack_max:.3g} | {bound:.3g} |"
        )
    return out


def _figure(out: Path, summary: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from oversquash_lens.render import save_figure, style

    keys = list(summary)
    with style():
        fig, axes = plt.subplots(len(keys), 2, figsize=(12, 2.6 * len(keys)), squeeze=False)
        for row, key in enumerate(keys):
            records = summary[key]["rows"]
            points = summary[key]["points"]
            for col, measure in enumerate(("full", "frozen")):
                ax = axes[row, col]
                for method in METHODS:
                    rho = [r["spearman"] for r in records
                           if r["proxy"] == method and r["measure"] == measure]  # fmt: skip
                    if rho:
                        ax.plot(range(len(rho)), rho, marker="o", label=method)
                ax.set_xticks(range(len(points)), [_short(p) for p in points], fontsize=7)
                ax.set_ylim(-1.05, 1.05)
                ax.axhline(0.8, color="grey", linestyle=":", linewidth=1)
                ax.set_title(f"{key}: ρ vs {measure}", fontsize=9)
        axes[0, 0].legend(fontsize=7)
        fig.tight_layout()
        save_figure(fig, out / "agreement")
        plt.close(fig)


if __name__ == "__main__":
    main()
