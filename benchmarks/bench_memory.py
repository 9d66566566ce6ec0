"""Measured peak memory of each analysis against the up-front estimate that guards it.

Every run inside ``osl.attach`` is checked before its first block against an estimate
(``oversquash_lens/analyzers/_memory.py``); a request over the free memory is refused.
For the check to refuse only what cannot fit, the estimate must be an upper bound that is
not far above the truth. This script runs each analysis at several prompt lengths and
prints, for each, the peak tensor memory measured (every tensor storage created during the
call, counted by a dispatch mode: see ``bench_paths.TensorBytesPeak``) beside the estimate
and their ratio (estimate / measured, which must be ≥ 1).

Usage:
    .venv/bin/python benchmarks/bench_memory.py [--model smollm2-135m] [--n 256,512]
        [--out benchmarks/results/memory.json]
"""

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from _common import finish, machine_facts
from bench_paths import TensorBytesPeak

import oversquash_lens as osl
from oversquash_lens import _memory
from oversquash_lens.analyzers._memory import gib, total_bytes


def measure(name: str, call: Any) -> dict[str, Any]:
    """Run ``call()`` under the meter; capture the estimate the check computed."""
    seen: list[int] = []
    check = _memory.check

    def recording_check(*args: Any, **kwargs: Any) -> None:
        parts = _memory.estimate(*args, **kwargs)
        seen.append(total_bytes(parts))
        check(*args, **kwargs)

    _memory.check = recording_check  # type: ignore[assignment]
    meter = TensorBytesPeak()
    start = time.perf_counter()
    try:
        with meter:
            call()
    finally:
        _memory.check = check  # type: ignore[assignment]
    seconds = time.perf_counter() - start
    estimated = max(seen) if seen else 0
    ratio = estimated / meter.peak if meter.peak else float("nan")
    print(
        f"  {name:28s} measured {gib(meter.peak):>9s}  estimated {gib(estimated):>9s}  "
        f"estimate/measured {ratio:5.2f}  ({seconds:.1f} s)",
        flush=True,
    )
    return {"measured": meter.peak, "estimated": estimated, "ratio": ratio, "seconds": seconds}


def cases(model: Any, tokens: torch.Tensor, n: int) -> dict[str, Any]:
    def forward() -> None:
        with osl.attach(model, osl.ResidualNorms()), torch.no_grad():
            model(tokens, return_type=None)

    return {
        "forward": forward,
        "collapse": lambda: osl.collapse(
            model, osl.tasks.repeated_last("1"), range(1, n - 1), ["float32"]
        ),
        "paths": lambda: osl.attention_paths(model, tokens),
        "hutchinson_full": lambda: osl.sensitivity(
            model, tokens, method="hutchinson", probes=32, layers="final"
        ),
        "hutchinson_frozen": lambda: osl.sensitivity(
            model, tokens, method="hutchinson", probes=32, layers="final", attention="frozen"
        ),
        "trace": lambda: osl.trace(model, tokens, probes=32),
    }


DEFAULT = [
    "forward",
    "collapse",
    "paths",
    "hutchinson_full",
    "hutchinson_frozen",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--backend", default=None)
    parser.add_argument("--n", default="256,512")
    parser.add_argument(
        "--only",
        default=None,
        help="comma-separated case names (default: all but trace, whose certified power "
        "iterations take minutes under the meter on SmolLM2)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    model = osl.load_model(args.model, backend=args.backend)
    numbers: dict[str, Any] = {"model": args.model, "backend": osl.ModelAdapter(model).backend}
    numbers.update(machine_facts())
    generator = torch.Generator().manual_seed(0)
    for n in (int(x) for x in args.n.split(",")):
        print(f"n = {n}", flush=True)
        vocab = osl.ModelAdapter(model).d_vocab
        tokens = torch.randint(10, min(1000, vocab), (1, n), generator=generator)
        for name, call in cases(model, tokens, n).items():
            if name not in (args.only.split(",") if args.only else DEFAULT):
                continue
            numbers[f"{name} @ {n}"] = measure(name, call)
    numbers.update(machine_facts())
    finish(numbers, args.out)


if __name__ == "__main__":
    main()
