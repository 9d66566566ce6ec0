"""Shared-mode collapse sweep vs one forward pass, and vs independent mode.

Measured in one run, as ratios (these machines are noisy):

1. ``shared / forward``: ``osl.collapse(mode="shared")`` over every length 1..N (all
   residual points, every head, logits, noise floor) against one plain forward pass over
   the longest sequence. Target: ≤ 3.
2. ``independent / shared``: the paper's protocol, one pass per sequence, over the same
   lengths. Running all 2N passes takes about an hour on a 2-core CPU at N = 1024, so by
   default independent mode runs on a systematic sample of lengths (every ``--stride``-th
   one, starting at a random offset) and its total is estimated as
   ``mean time per length × N`` (unbiased for a systematic sample); ``--stride 1``
   measures every length. Target: ≥ 50.

Usage::

    .venv/bin/python benchmarks/bench_collapse.py --out benchmarks/results/collapse.json
"""

import argparse
import json
import platform
import random
import time
from pathlib import Path

import torch

import oversquash_lens as osl
from oversquash_lens.results import atomic_write_bytes


def _timed(fn, repeats: int = 1) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--backend", default="hooked")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--stride", type=int, default=32, help="independent-mode sampling")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = osl.load_model(args.model, backend=args.backend)
    family = osl.tasks.repeated_last("1", prefix=osl.tasks.COUNT_ONES)
    lengths = list(range(1, args.max_length + 1))
    longest = family.pair(model, args.max_length).b[None]

    with torch.no_grad():
        model(longest[:, :16])  # warm up
        forward = _timed(lambda: model(longest), repeats=3)
    shared = _timed(
        lambda: osl.collapse(model, family, lengths, ["float32"], progress=False), repeats=1
    )
    offset = random.Random(0).randrange(args.stride)
    sample = lengths[offset :: args.stride]
    sampled = _timed(
        lambda: osl.collapse(
            model, family, sample, ["float32"], mode="independent", progress=False
        ),
        repeats=1,
    )
    independent = sampled / len(sample) * len(lengths)
    report = {
        "model": args.model,
        "backend": args.backend,
        "tokens_longest": int(longest.shape[1]),
        "lengths": f"1..{args.max_length}",
        "forward_s": round(forward, 3),
        "shared_s": round(shared, 3),
        "shared_over_forward": round(shared / forward, 2),
        "independent_sampled_lengths": len(sample),
        "independent_sampled_s": round(sampled, 3),
        "independent_estimated_s": round(independent, 1),
        "independent_over_shared": round(independent / shared, 1),
        "estimated": args.stride > 1,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
    }
    for key, value in report.items():
        print(f"{key:>28}: {value}")
    if args.out is not None:
        atomic_write_bytes(args.out, (json.dumps(report, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
