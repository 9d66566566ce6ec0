"""Cost of frozen-attention sensitivity against the same measurement with full attention.

Hutchinson, k probes (32), on the same tokens: ``osl.sensitivity(..., attention="frozen")``
against ``attention="full"``, alternating, median of --repeats each. The target is
frozen <= 1.2x full. Also times ``osl.trace``'s doubled-batch pass, which gives both (and
their difference) at once, against the two separate runs.

Usage:
    .venv/bin/python benchmarks/bench_frozen.py [--n 256] [--probes 32] [--layers final]
        [--model smollm2-135m] [--repeats 3] [--out benchmarks/results/frozen.json]
"""

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from _common import finish, machine_facts

import oversquash_lens as osl
from oversquash_lens.analyzers._sensitivity import Sensitivity
from oversquash_lens.capture import frozen_parameters


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def split_pass(model: Any, tokens: torch.Tensor, **options: Any) -> None:
    analyzer = Sensitivity(attention="split", **options)
    with osl.attach(model, analyzer) as rec, frozen_parameters(model), torch.enable_grad():
        model(torch.cat([tokens, tokens]))
        rec.result(analyzer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--probes", type=int, default=32)
    parser.add_argument("--layers", default="final", help="'final', 'all' or e.g. 0,14,final")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    layers: Any = args.layers
    if layers not in ("final", "all"):
        layers = [p if p == "final" else int(p) for p in layers.split(",")]
    model = osl.load_model(args.model)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(100, 40000, (1, args.n), generator=gen)
    options = {"method": "hutchinson", "probes": args.probes, "layers": layers}
    for attention in ("full", "frozen"):  # warm-up (the frozen probe pass is cached)
        osl.sensitivity(model, tokens[:, :16], attention=attention, **options)
    runs: dict[str, list[float]] = {"full": [], "frozen": [], "split": []}
    for _ in range(args.repeats):  # alternate, so load changes hit all alike
        for attention in ("full", "frozen"):
            run = lambda a=attention: osl.sensitivity(model, tokens, attention=a, **options)  # noqa: E731
            runs[attention].append(seconds(run))
        runs["split"].append(seconds(lambda: split_pass(model, tokens, **options)))
    median = {k: statistics.median(v) for k, v in runs.items()}
    numbers = {
        "model": args.model,
        "n": args.n,
        "probes": args.probes,
        "layers": args.layers,
        "seconds": runs,
        "frozen_over_full": median["frozen"] / median["full"],
        "split_over_full_plus_frozen": median["split"] / (median["full"] + median["frozen"]),
        **machine_facts(),
    }
    print(
        f"{args.model}, n = {args.n}, Hutchinson k = {args.probes}, layers {args.layers}: "
        f"full {median['full']:.2f} s, frozen {median['frozen']:.2f} s -> "
        f"{numbers['frozen_over_full']:.2f}x (target <= 1.2); doubled-batch pass for both "
        f"{median['split']:.2f} s = {numbers['split_over_full_plus_frozen']:.2f}x the two runs"
    )
    finish(numbers, args.out)


if __name__ == "__main__":
    main()
