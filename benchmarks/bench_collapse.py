"""Shared-mode collapse sweep vs one forward pass, and vs independent mode.

Measured in one run, as ratios (these machines are noisy):

1. ``shared / forward``: ``osl.collapse(mode="shared")`` over every length 1..N (all
   residual points, every head, logits, noise floor) against one plain forward pass over
   the longest sequence. The two alternate for ``--rounds`` rounds, and each round's
   ratio is reported (their median is the headline), so a change in the machine's load
   moves both sides of a ratio. The first sweep on the freshly loaded model, which also
   pays for the model's one-time probe pass, is timed on its own. Each round times a
   forward pass before and after its sweep and divides by their mean. Target: ≤ 2.2 (the
   noise-floor pass makes 2 the floor).
2. ``independent / shared``: the paper's protocol, one pass per sequence, over the same
   lengths. Running all 2N passes takes about an hour on a 2-core CPU at N = 1024, so by
   default independent mode runs on a systematic sample of lengths (every ``--stride``-th
   one, starting at a random offset) and its total is estimated as
   ``mean time per length × N`` (unbiased for a systematic sample); ``--stride 1``
   measures every length, ``--stride 0`` skips it. Target: ≥ 50.
3. Where a sweep's time goes: one more sweep with its two stages timed, the passes (the
   model with the probe attached, both passes) and the comparisons, beside two plain
   forward passes run just before it.

Usage::

    .venv/bin/python benchmarks/bench_collapse.py --out benchmarks/results/collapse.json
"""

import argparse
import json
import os
import platform
import random
import statistics
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


def _stages(sweep, forward) -> dict[str, float]:
    """One sweep's time split into its passes and its comparisons (module functions wrapped)."""
    from oversquash_lens import _collapse

    spent = {"passes": 0.0, "comparisons": 0.0}
    originals = {"passes": _collapse._run_passes, "comparisons": _collapse._measure}

    def timing(stage):
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return originals[stage](*args, **kwargs)
            finally:
                spent[stage] += time.perf_counter() - start

        return run

    two_forwards = _timed(forward) + _timed(forward)
    _collapse._run_passes, _collapse._measure = timing("passes"), timing("comparisons")
    try:
        total = _timed(sweep)
    finally:
        _collapse._run_passes, _collapse._measure = originals["passes"], originals["comparisons"]
    return {
        "sweep_s": round(total, 3),
        "two_plain_forwards_s": round(two_forwards, 3),
        "passes_s": round(spent["passes"], 3),
        "comparisons_s": round(spent["comparisons"], 3),
        "other_s": round(total - spent["passes"] - spent["comparisons"], 3),
        "passes_over_two_forwards": round(spent["passes"] / two_forwards, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--backend", default="hooked")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3, help="alternated forward/sweep pairs")
    parser.add_argument("--stride", type=int, default=32, help="independent-mode sampling")
    parser.add_argument(
        "--no-first-call", action="store_true", help="skip timing the fresh model's first sweep"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    torch.manual_seed(0)
    load_before = os.getloadavg()
    model = osl.load_model(args.model, backend=args.backend)
    family = osl.tasks.repeated_last("1", prefix=osl.tasks.COUNT_ONES)
    lengths = list(range(1, args.max_length + 1))
    longest = family.pair(model, args.max_length).b[None]

    def sweep() -> None:
        osl.collapse(model, family, lengths, ["float32"], progress=False)

    def forward() -> None:
        with torch.no_grad():
            model(longest)

    first_call = None if args.no_first_call else _timed(sweep)
    with torch.no_grad():
        model(longest[:, :16])  # warm up
    rounds = []
    for _ in range(args.rounds):  # forward, sweep, forward: the sweep over their mean
        before, during, after = _timed(forward), _timed(sweep), _timed(forward)
        rounds.append(((before + after) / 2, during, before, after))
        print(f"forward {before:.2f} s / {after:.2f} s, sweep {during:.2f} s", flush=True)
    ratios = [s / f for f, s, *_ in rounds]
    forward_s = statistics.median(f for f, *_ in rounds)
    shared = statistics.median(s for _, s, *_ in rounds)
    report = {
        "model": args.model,
        "backend": args.backend,
        "tokens_longest": int(longest.shape[1]),
        "lengths": f"1..{args.max_length}",
        "rounds": [
            {
                "forward_s": round(f, 3),
                "shared_s": round(s, 3),
                "forward_before_s": round(b, 3),
                "forward_after_s": round(a, 3),
            }
            for f, s, b, a in rounds
        ],
        "forward_s": round(forward_s, 3),
        "shared_s": round(shared, 3),
        "shared_over_forward_per_round": [round(r, 3) for r in ratios],
        "shared_over_forward": round(statistics.median(ratios), 3),
    }
    report["stages"] = _stages(sweep, forward)
    if first_call is not None:
        report["first_call_s"] = round(first_call, 3)
        report["first_call_over_forward"] = round(first_call / forward_s, 3)
    if args.stride > 0:
        offset = random.Random(0).randrange(args.stride)
        sample = lengths[offset :: args.stride]
        sampled = _timed(
            lambda: osl.collapse(
                model, family, sample, ["float32"], mode="independent", progress=False
            )
        )
        independent = sampled / len(sample) * len(lengths)
        report |= {
            "independent_sampled_lengths": len(sample),
            "independent_sampled_s": round(sampled, 3),
            "independent_estimated_s": round(independent, 1),
            "independent_over_shared": round(independent / shared, 1),
            "estimated": args.stride > 1,
        }
    report |= {
        "load_average_1min": {"start": load_before[0], "end": os.getloadavg()[0]},
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
    }
    for key, value in report.items():
        print(f"{key:>32}: {value}")
    if args.out is not None:
        atomic_write_bytes(args.out, (json.dumps(report, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
