"""The paper's Fig 5 experiments (a–d) on a built-in model, with and without BOS.

For each family the last layer's per-head outputs (``hook_z``) of the two sequences are
compared at lengths 1, 2, 6, 11, 51, 101, 501, 1001, 2001 in float32, native bfloat16 and
emulated float8 e4m3; every result is saved, and a markdown table and a figure are
written to ``--out``. Sweeps checkpoint to ``--out`` and resume when rerun.

Usage::

    .venv/bin/python scripts/fig5_smollm2.py --out docs/fig5_smollm2
"""

import argparse
import json
from pathlib import Path
from typing import Any

import torch

import oversquash_lens as osl
from oversquash_lens.analyzers._collapse_math import metric_index
from oversquash_lens.reporting._plan import FIG5_LENGTHS, FIG5_PRECISIONS, fig5_families
from oversquash_lens.results import atomic_write_bytes

LENGTHS = list(FIG5_LENGTHS)
PRECISIONS = list(FIG5_PRECISIONS)
LINF = metric_index("linf")
families = fig5_families  # Fig 5 (a)–(d); shared with osl.report


def table(result: osl.CollapseResult) -> str:
    """Markdown: per length, head-mean L∞ (last layer) per precision, y_n and its noise."""
    y = result.point_index()
    head = [f"mean head L∞ {p}" for p in result.precisions]
    cols = ["k", *head, "y_n L∞ fp32", "noise fp32", "y_n bf16 equal", "same argmax bf16"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    bf16 = result.precision_index("bfloat16")
    for i, k in enumerate(result.lengths):
        cells = [str(k)]
        for p in range(len(result.precisions)):
            cells.append(f"{float(result.head_distances[p, i, -1, :, LINF].mean()):.3g}")
        cells.append(f"{float(result.distances[0, i, y, LINF]):.3g}")
        cells.append(f"{float(result.noise[0, i, y, LINF]):.2g}")
        cells.append("yes" if bool(result.bitwise_equal[bf16, i, y]) else "no")
        same = bool(result.argmax_a[bf16, i] == result.argmax_b[bf16, i])
        cells.append("yes" if same else "no")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--lengths", type=int, nargs="*", default=LENGTHS)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = osl.load_model(args.model)
    names = list(families(True))
    fig, axes = plt.subplots(2, len(names), figsize=(4.2 * len(names), 7.5), squeeze=False)
    report: list[str] = [f"# Fig 5 on {args.model}\n"]
    summary: dict[str, Any] = {}
    order = [(row, bos, name) for name in names for row, bos in enumerate([True, False])]
    cost = {"b_random_digits": 1, "d_copy_commas_right": 2}  # one pass per length: last
    order.sort(key=lambda item: cost.get(item[2], 0))
    for row, bos, name in order:
        col, family = names.index(name), families(bos)[name]
        tag = f"{name}_{'bos' if bos else 'nobos'}"
        result = osl.collapse(
            model,
            family,
            args.lengths,
            PRECISIONS,
            heads=-1,
            checkpoint=args.out / f"{tag}.checkpoint.pt",
        )
        result.save(args.out / f"{tag}.npz")
        result.plot(ax=axes[row, col])
        axes[row, col].set_title(f"{name} ({'BOS' if bos else 'no BOS'})", fontsize=9)
        report += [f"\n## {name}, {'with' if bos else 'without'} BOS ({result.mode})\n"]
        report += [table(result), ""]
        summary[tag] = {
            "mode": result.mode,
            "passes_per_precision": result.passes,
            "head_mean_linf": {
                p: result.head_distances[i, :, -1, :, LINF].mean(-1).tolist()
                for i, p in enumerate(result.precisions)
            },
        }
        print(f"{tag}: done ({result.passes} passes per precision)", flush=True)
        _write(args.out, fig, report, summary)  # partial results survive an interruption


def _write(out: Path, fig: Any, report: list[str], summary: dict[str, Any]) -> None:
    fig.tight_layout()
    fig.savefig(out / "fig5.png", dpi=110)
    atomic_write_bytes(out / "table.md", "\n".join(report).encode())
    atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=1).encode())


if __name__ == "__main__":
    main()
