"""Greedy generation throughput: batched + KV cache against one prompt at a time, no cache.

For each model and backend, ``--prompts`` count_bernoulli prompts (paper style, chat
template when the tokenizer has one; lengths k spread so prompt lengths differ and
padding matters, about ``--tokens`` tokens each) are continued by ``--new`` greedy tokens
(no early stop) through three routes:

- ``batched_cached``: ``greedy_generate(model, prompts, new, batch_size=--batch)``;
- ``unbatched_cached``: the same with ``batch_size=1`` (the KV cache alone);
- ``unbatched_uncached``: ``greedy_continuation`` per prompt (the old path: the whole
  prefix again at every step).

Each route runs once untimed on two short prompts, then ``--repeats`` times interleaved
with the others; the fastest run counts. The tokens of every route are compared with
the uncached route's (rounding differences between padded and plain passes can flip a
near-tied argmax in float32: the count of identical prompts is reported).

Usage::

    .venv/bin/python benchmarks/bench_behaviour.py --threads 1 \\
        --out benchmarks/results/behaviour.json
"""

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import oversquash_lens as osl
from oversquash_lens import tasks
from oversquash_lens._behaviour import generation_route
from oversquash_lens._compat import available_backends, tl_version
from oversquash_lens._generate import greedy_continuation, greedy_generate
from oversquash_lens.results import atomic_write_bytes


def prompts_for(model: Any, n: int, tokens: int) -> list[torch.Tensor]:
    """``n`` count_bernoulli prompts of different lengths, the middle one ~``tokens`` long."""
    task = tasks.count_bernoulli()
    probe = task.tokens(model, task.instance(10))
    k_mid = max(n, 10 + tokens - int(probe.shape[0]))  # one token per digit
    ks = [k_mid - n // 2 + i for i in range(n)]
    return [task.tokens(model, task.instance(k)) for k in ks]


def run_routes(model: Any, prompts: list[torch.Tensor], new: int, batch: int, repeats: int):
    device = model.cfg.device

    routes: dict[str, Callable[[list[torch.Tensor]], list[list[int]]]] = {
        "batched_cached": lambda ps: [
            t.tolist() for t in greedy_generate(model, ps, new, batch_size=batch, stop_token_ids=())
        ],
        "unbatched_cached": lambda ps: [
            t.tolist() for t in greedy_generate(model, ps, new, batch_size=1, stop_token_ids=())
        ],
        "unbatched_uncached": lambda ps: [
            greedy_continuation(model, p[None].to(device), new)[0].tolist() for p in ps
        ],
    }
    for fn in routes.values():
        fn(prompts[:2])  # warm-up, untimed
    times: dict[str, list[float]] = {name: [] for name in routes}
    outputs: dict[str, list[list[int]]] = {}
    for rep in range(repeats):
        for name, fn in routes.items():
            start = time.perf_counter()
            outputs[name] = fn(prompts)
            times[name].append(time.perf_counter() - start)
            print(f"  [{rep}] {name:19s} {times[name][-1]:8.2f} s", flush=True)
    best = {name: min(t) for name, t in times.items()}
    generated = sum(len(o) for o in outputs["unbatched_uncached"])
    reference = outputs["unbatched_uncached"]
    return {
        "seconds": best,
        "all_seconds": times,
        "prompts_per_second": {k: len(prompts) / v for k, v in best.items()},
        "generated_tokens_per_second": {k: generated / v for k, v in best.items()},
        "speedup_vs_unbatched_uncached": {
            k: best["unbatched_uncached"] / v for k, v in best.items()
        },
        "identical_prompts_vs_uncached": {
            k: sum(a == b for a, b in zip(o, reference, strict=True)) for k, o in outputs.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny-gpt2,tiny-llama,smollm2-135m")
    parser.add_argument("--backends", default=",".join(available_backends()))
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--new", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_start": os.getloadavg(),
            "torch": torch.__version__,
            "transformer_lens": tl_version(),
        },
        "runs": [],
    }
    for name in args.models.split(","):
        for backend in args.backends.split(","):
            model = osl.load_model(name, backend=backend)
            prompts = prompts_for(model, args.prompts, args.tokens)
            lengths = [int(p.shape[0]) for p in prompts]
            print(f"{name} [{backend}] prompt tokens {min(lengths)}..{max(lengths)}", flush=True)
            result = run_routes(model, prompts, args.new, args.batch, args.repeats)
            result.update(
                model=name,
                backend=backend,
                route=generation_route(model),
                prompt_tokens=lengths,
                new_tokens=args.new,
            )
            speed = result["speedup_vs_unbatched_uncached"]
            print(
                f"  speedup batched+cached {speed['batched_cached']:.2f}x, "
                f"cache alone {speed['unbatched_cached']:.2f}x; identical "
                f"{result['identical_prompts_vs_uncached']}",
                flush=True,
            )
            report["runs"].append(result)
            del model
    report["machine"]["load_average_end"] = os.getloadavg()
    if args.out is not None:
        atomic_write_bytes(args.out, json.dumps(report, indent=1).encode())
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
