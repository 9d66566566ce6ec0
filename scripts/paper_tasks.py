"""The paper's behavioural tasks and its "glasses" on SmolLM2-135M and the toy models.

Per model (all in native bfloat16, greedy decoding without a KV cache):

1. copying: accuracy of copy_first vs copy_last by length (Fig 2: copying
   the last digit fails before copying the first);
2. counting: absolute error of count_ones and count_bernoulli (p = 0.7) by length
   (Fig 3/4: the counting error grows with length);
3. glasses: :func:`compare_glasses` on copy_last (and count_ones): collapse of k vs k + 1,
   sensitivity of y_n to the answer-relevant token, accuracy, per mitigation;
4. separator search on copy_last: the sparsest commas that keep every pair apart.

SmolLM2 gets the paper-style prompts inside its chat template; the toy models get the
compact format they were trained on (``"L:1110="``). Tables (CSV + markdown), small PNG
figures and the saved results go to ``--out``; ``docs/tasks.md`` reads them.

Usage::

    .venv/bin/python scripts/paper_tasks.py --threads 1 [--fast] \\
        [--models smollm2-135m,toy-count,toy-copy] [--out docs/tasks]
"""

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

import oversquash_lens as osl
from oversquash_lens import tasks
from oversquash_lens._behaviour import behaviour
from oversquash_lens._glasses import compare_glasses, separator_search
from oversquash_lens.plotting import save_figure, style
from oversquash_lens.results import atomic_write_bytes

PRECISION = "bfloat16"


def plan(model_name: str, fast: bool) -> dict[str, Any]:
    """What to run on one model: tasks, lengths, variants."""
    if model_name.startswith("toy-"):
        compact = {"style": "compact"}
        copy = model_name == "toy-copy"
        count = model_name == "toy-count"
        lengths = [4, 16, 32, 64] if fast else [4, 8, 16, 24, 32, 48, 64, 96, 128]
        return {
            "style": compact,
            "copy": copy,
            "count": count,
            "lengths": lengths,
            "samples": 4 if fast else 16,
            "glasses_tasks": (["copy_last"] if copy else []) + (["count_ones"] if count else []),
            "variants": ["baseline", "sep:3:left", "sep:3:right", "no_bos", "precision:float32"],
            "glasses_lengths": [4, 16, 64] if fast else [4, 8, 16, 32, 64, 128],
            "search_lengths": [2, 8, 32] if fast else list(range(1, 65)),
        }
    return {
        "style": {},
        "copy": True,
        "count": True,
        "lengths": [5, 25] if fast else [5, 25, 65, 125, 195],
        "samples": 2 if fast else 4,
        "glasses_tasks": ["copy_last"],
        "variants": [
            "baseline",
            "sep:3:left",
            "sep:3:right",
            "hint",
            "format_first",
            "precision:float32",
        ],
        "glasses_lengths": [5, 25] if fast else [5, 25, 65, 195],
        "search_lengths": [5, 25] if fast else [5, 20, 80, 160],
    }


def markdown(frame: Any, floats: str = "{:.3g}") -> str:
    """A pandas frame as a markdown table (no extra dependency)."""
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        cells = []
        for value in row:
            if isinstance(value, float):
                cells.append("—" if math.isnan(value) else floats.format(value))
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_behaviour(model: Any, name: str, cfg: dict[str, Any], out: Path) -> Any:
    """Copying and counting accuracy / error by length, in bf16; one CSV and one figure."""
    import pandas as pd

    chosen: list[tuple[str, Any, int]] = []
    if cfg["copy"]:
        chosen += [("copy_first", tasks.copy_first(**cfg["style"]), 1)]
        chosen += [("copy_last", tasks.copy_last(**cfg["style"]), 1)]
    if cfg["count"]:
        chosen += [("count_ones", tasks.count_ones(**cfg["style"]), 1)]
        bern = tasks.count_bernoulli(p=0.7, **cfg["style"])
        chosen += [("count_bernoulli_0.7", bern, cfg["samples"])]
    frames = []
    for label, task, samples in chosen:
        t0 = time.time()
        with osl.native_dtype(model, PRECISION):
            result = behaviour(model, task, cfg["lengths"], samples=samples, progress=False)
        result.save(out / "results" / f"behaviour_{name}_{label}")
        table = result.accuracy()
        table.insert(0, "task", label)
        table.insert(0, "model", name)
        first = result.to_dataframe().groupby("k")["output"].first()
        table["example_output"] = [repr(first[k])[:40] for k in table["k"]]
        frames.append(table)
        print(f"  behaviour {label}: {time.time() - t0:.1f}s", flush=True)
    frame = pd.concat(frames, ignore_index=True)
    frame.to_csv(out / f"behaviour_{name}.csv", index=False)
    with style():
        import matplotlib.pyplot as plt

        fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3))
        for label in frame["task"].unique():
            part = frame[frame["task"] == label]
            if label.startswith("copy"):
                left.plot(part["k"], part["accuracy"], marker="o", ms=3, label=label)
            else:
                right.plot(part["k"], part["mean_abs_error"], marker="o", ms=3, label=label)
        left.set(xlabel="length k", ylabel="accuracy", ylim=(-0.05, 1.05), title="copying")
        right.set(xlabel="length k", ylabel="mean |answer − truth|", title="counting")
        for ax in (left, right):
            if ax.lines:
                ax.legend(fontsize=7)
        fig.suptitle(f"{name}, {PRECISION}, greedy", fontsize=9)
        fig.tight_layout()
        save_figure(fig, out / f"behaviour_{name}", formats=("png",), dpi=90)
        plt.close(fig)
    return frame


def run_glasses(model: Any, name: str, cfg: dict[str, Any], out: Path) -> list[Any]:
    """compare_glasses per task; CSV, figure and saved result each."""
    frames = []
    for task_name in cfg["glasses_tasks"]:
        task = getattr(tasks, task_name)(**cfg["style"])
        variants = [v for v in cfg["variants"] if v != "hint" or task_name == "copy_last"]
        t0 = time.time()
        result = compare_glasses(
            model,
            task,
            cfg["glasses_lengths"],
            variants,
            precision=PRECISION,
            samples=1,
            sensitivity="hutchinson",
            probes=8,
            behaviour=True,
            progress=False,
        )
        result.save(out / "results" / f"glasses_{name}_{task_name}")
        frame = result.to_dataframe()
        frame.insert(0, "task", task_name)
        frame.insert(0, "model", name)
        frame.to_csv(out / f"glasses_{name}_{task_name}.csv", index=False)
        frames.append(frame)
        with style():
            import matplotlib.pyplot as plt

            fig = result.plot(("linf", "relevant_share", "accuracy"))
            save_figure(fig, out / f"glasses_{name}_{task_name}", formats=("png",), dpi=80)
            plt.close(fig)
        print(f"  glasses {task_name}: {time.time() - t0:.1f}s", flush=True)
    return frames


def run_search(model: Any, name: str, cfg: dict[str, Any], out: Path) -> Any:
    """Separator search on copy_last (left grouping), criterion: L∞ ≥ bf16 ε."""
    task = tasks.copy_last(**cfg["style"])
    t0 = time.time()
    found = separator_search(
        model,
        task,
        max(cfg["search_lengths"]),
        precision=PRECISION,
        spacings=(1, 2, 3, 4, 6, 8, 16),
        group="left",
        lengths=cfg["search_lengths"],
        progress=False,
    )
    found.save(out / "results" / f"separators_{name}")
    frame = found.to_dataframe()
    frame.insert(0, "model", name)
    frame.to_csv(out / f"separators_{name}.csv", index=False)
    print(f"  separator search: best={found.best} ({time.time() - t0:.1f}s)", flush=True)
    return frame, found.best


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--models", default="smollm2-135m,toy-count,toy-copy")
    parser.add_argument("--out", type=Path, default=Path("docs/tasks"))
    parser.add_argument("--fast", action="store_true", help="few lengths and samples")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument(
        "--parts",
        default="behaviour,glasses,search",
        help="which parts to run; a part left out keeps the tables already in --out",
    )
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",")}
    if not parts <= {"behaviour", "glasses", "search"}:
        raise SystemExit(f"--parts takes behaviour, glasses, search; got {args.parts}")
    if args.threads:
        torch.set_num_threads(args.threads)
    import matplotlib

    matplotlib.use("Agg")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        t0 = time.time()
        print(f"{name}", flush=True)
        model = osl.load_model(name)
        cfg = plan(name, args.fast)
        report = [f"# {name} ({'fast' if args.fast else 'full'} run, {PRECISION})\n"]
        import pandas as pd

        if "behaviour" in parts:
            behaviour_frame = run_behaviour(model, name, cfg, args.out)
        else:
            behaviour_frame = pd.read_csv(args.out / f"behaviour_{name}.csv")
        report += ["## Behaviour (greedy)\n", markdown(behaviour_frame), ""]
        if "glasses" in parts:
            glasses_frames = run_glasses(model, name, cfg, args.out)
        else:
            glasses_frames = [
                pd.read_csv(args.out / f"glasses_{name}_{t}.csv") for t in cfg["glasses_tasks"]
            ]
        for frame in glasses_frames:
            task_name = frame["task"].iloc[0]
            cols = [
                "variant",
                "length",
                "linf",
                "eps_ratio",
                "ulps",
                "bitwise_equal",
                "argmax_equal",
                "relevant_sensitivity",
                "relevant_stderr",
                "relevant_share",
                "items_share",
                "accuracy",
            ]
            note = f"`ulps`: {osl.precision.ULP_NOTE}\n"
            report += [f"## Glasses on {task_name}\n", note, markdown(frame[cols]), ""]
        best = None
        if cfg["copy"] and "search" in parts:
            search, best = run_search(model, name, cfg, args.out)
            report += [
                f"## Separator search on copy_last (best spacing: {best})\n",
                markdown(search),
                "",
            ]
        seconds = round(time.time() - t0, 1)
        threads = torch.get_num_threads()
        done = ", ".join(sorted(parts))
        report.append(f"Wall time of this run ({done}): {seconds} s, {threads} thread(s).\n")
        atomic_write_bytes(args.out / f"tables_{name}.md", "\n".join(report).encode())
        previous = args.out / f"summary_{name}.json"
        old = json.loads(previous.read_text()) if previous.exists() else {}
        runs = old.get("runs", [{"parts": "all", "seconds": old["seconds"]}] if old else [])
        runs.append({"parts": sorted(parts), "seconds": seconds, "threads": threads})
        summary = {
            "runs": runs,
            "model": name,
            "fast": args.fast,
            "precision": PRECISION,
            "best_spacing": best,
            "plan": cfg,
        }
        atomic_write_bytes(
            args.out / f"summary_{name}.json", json.dumps(summary, indent=1).encode()
        )
        del model
    print(f"done in {time.time() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
