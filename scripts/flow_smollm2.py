"""Sensitivity and attention-path profiles for the paper's prompts (paper §5).

For each prompt (counting ones, copying the first digit of "01…1", copying the last digit
of "1…10") at n tokens, ``osl.trace`` measures the Hutchinson estimate of
‖∂h_n(ℓ)/∂v_i(0)‖_F at a few depths ℓ and the ``bound`` path weights, then reports where
the mass sits (first token, first/middle/last third, position of the minimum) and the
rank agreement between the two. Writes ``table.md``, ``summary.json``, one ``.npz``
result per run and ``profiles.png`` to ``--out``.

Usage::

    .venv/bin/python scripts/flow_smollm2.py --out docs/flow_smollm2
"""

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

import oversquash_lens as osl
from oversquash_lens.reporting._plan import depths, prompt_tokens, shares
from oversquash_lens.results import atomic_write_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--lengths", type=int, nargs="*", default=[64, 256, 1024])
    parser.add_argument("--probes", type=int, nargs="*", default=[16, 8, 4])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = osl.load_model(args.model)
    prompts = ["count_ones", "first_digit", "last_digit"]
    fig, axes = plt.subplots(len(args.lengths), len(prompts), figsize=(15, 3.6 * len(args.lengths)))
    lines = [
        f"# Sensitivity and path profiles on {args.model}\n",
        "Mass shares of the final-norm output's profile (y_n) over input positions, for",
        "the measured sensitivity (Hutchinson) and the `bound` path weights; first = token 0,",
        "early/middle/late = thirds; ρ/τ = Spearman/Kendall between the two at y_n; the",
        "last column is the first token's sensitivity share at the first / middle / last",
        "block.\n",
        "| prompt | n | probes | what | first | early | middle | late | last | argmin | ρ | τ "
        "| first-token share by depth | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    summary: dict[str, Any] = {}
    for row, (n, probes) in enumerate(zip(args.lengths, args.probes, strict=True)):
        for col, prompt in enumerate(prompts):
            tokens = prompt_tokens(model, prompt, n)
            start = time.perf_counter()
            flow = osl.trace(model, tokens, probes=probes, layers=depths(model.cfg.n_layers))
            seconds = time.perf_counter() - start
            flow.save(args.out / f"{prompt}_{n}.npz")
            y = flow.point_index()
            depth = [shares(flow.sensitivity[0, k])["first"] for k in range(len(flow.points))]
            marks = (
                "blocks.0.hook_resid_post",
                "blocks.14.hook_resid_post",
                "blocks.29.hook_resid_post",
            )
            by_depth = " / ".join(
                f"{depth[k]:.2f}" for k, point in enumerate(flow.points) if point in marks
            )
            measured, bound = shares(flow.sensitivity[0, y]), shares(flow.paths[0, y])
            rho, tau = float(flow.spearman[0, y]), float(flow.kendall[0, y])
            for what, s in (("sensitivity", measured), ("bound paths", bound)):
                lines.append(
                    f"| {prompt} | {n} | {probes} | {what} | {s['first']:.3f} | {s['early']:.3f} "
                    f"| {s['middle']:.3f} | {s['late']:.3f} | {s['last']:.3f} | {s['argmin']} "
                    f"| {rho:.2f} | {tau:.2f} | {by_depth if what == 'sensitivity' else ''} "
                    f"| {seconds:.0f} |"
                )
            summary[f"{prompt}_{n}"] = {
                "sensitivity": measured,
                "bound": bound,
                "spearman_by_point": flow.spearman[0].tolist(),
                "kendall_by_point": flow.kendall[0].tolist(),
                "points": list(flow.points),
                "first_token_share_by_point": depth,
                "seconds": seconds,
            }
            flow.plot_profile(axes[row, col])
            axes[row, col].set_title(f"{prompt}, n={n}: ρ={rho:.2f}, τ={tau:.2f}", fontsize=9)
            print(f"{prompt} n={n}: {seconds:.0f} s", flush=True)
    fig.tight_layout()
    fig.savefig(args.out / "profiles.png", dpi=100)
    atomic_write_bytes(args.out / "table.md", ("\n".join(lines) + "\n").encode())
    atomic_write_bytes(args.out / "summary.json", json.dumps(summary, indent=1).encode())


if __name__ == "__main__":
    main()
