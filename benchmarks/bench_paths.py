"""Cost of attention_paths against one forward pass that records attention patterns.

Prints two ratios (and writes them as JSON with --out):

- time: ``attention_paths(model, tokens)`` (its own forward pass plus the streamed path
  products) / one forward pass with a hook on every ``hook_pattern`` that records the last
  query row (patterns materialized, nothing heavy kept). Runs alternate, median of
  --repeats each.
- memory: extra peak tensor memory of ``attention_paths`` over the plain forward pass,
  and over one layer's full pattern stack [n_heads, n, n] (the target is < 2). Peak memory
  is measured by counting the bytes of every tensor storage torch creates while a
  dispatch mode is active (see TensorBytesPeak), in separate, untimed passes.

``--method`` times another path method (``certified``, ``value``, ``flow``...; the
default is ``bound``): ``certified``'s target is <= 3x the pattern-recording forward at
n = 1024, with the extra peak memory still below one layer's pattern stack.

Usage:
    .venv/bin/python benchmarks/bench_paths.py [--n 2048] [--backend hooked]
        [--model smollm2-135m] [--repeats 2] [--method bound]
        [--out benchmarks/results/paths.json]
"""

import argparse
import statistics
import time
import weakref
from pathlib import Path
from typing import Any

import torch
from _common import finish, machine_facts
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import oversquash_lens as osl
from oversquash_lens._paths import attention_paths
from oversquash_lens.analyzers._path_math import BLOCK, causal_matmul_, reduce_heads


class TensorBytesPeak(TorchDispatchMode):
    """Live bytes of tensor storages created while active, and their high-water mark."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._seen: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {
            t.untyped_storage()._cdata
            for t in tree_flatten((args, kwargs))[0]
            if isinstance(t, torch.Tensor)
        }
        for item in tree_flatten(out)[0]:
            if isinstance(item, torch.Tensor):
                storage = item.untyped_storage()
                key = storage._cdata
                if key not in self._seen and key not in inputs:  # not a view, not in place
                    self._seen.add(key)
                    self.live += storage.nbytes()
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(storage, self._free, key, storage.nbytes())
        return out

    def _free(self, key: int, nbytes: int) -> None:
        self._seen.discard(key)
        self.live -= nbytes


def is_pattern(name: str) -> bool:
    return name.endswith("hook_pattern")


def forward_recording_patterns(model: Any, tokens: torch.Tensor) -> None:
    rows: list[torch.Tensor] = []
    record = (is_pattern, lambda x, hook: rows.append(x[:, :, -1].clone()))
    adapter = osl.ModelAdapter(model)
    with adapter.eager_attention(), torch.no_grad():
        model.run_with_hooks(tokens, return_type=None, fwd_hooks=[record])
    assert len(rows) == adapter.n_layers


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def peak_bytes(fn) -> int:
    with torch.no_grad(), TensorBytesPeak() as meter:
        fn()
    return meter.peak


def best_of(fn, repeats: int = 3) -> float:
    fn()  # warm-up
    return min(seconds(fn) for _ in range(repeats))


def math_only(n: int, n_heads: int, n_layers: int) -> dict[str, float]:
    """Time of the path math alone per layer: head mean + blocked vs dense product."""
    gen = torch.Generator().manual_seed(0)
    pattern = torch.rand(1, n_heads, n, n, generator=gen).tril()
    product = torch.rand(1, n, n, generator=gen, dtype=torch.float64).tril()
    left = torch.rand(1, n, n, generator=gen, dtype=torch.float64).tril()
    reduce_s = best_of(lambda: reduce_heads(pattern))
    blocked_s = best_of(lambda: causal_matmul_(left.clone(), product)) - best_of(left.clone)
    dense_s = best_of(lambda: left @ product)
    return {
        "reduce_heads_s_per_layer": reduce_s,
        "blocked_product_s_per_layer": blocked_s,
        "dense_product_s_per_layer": dense_s,
        "path_math_s_all_layers_estimate": n_layers * (reduce_s + blocked_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--backend", default="hooked", choices=["hooked", "bridge"])
    parser.add_argument("--n", type=int, default=2048, help="sequence length")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--method", default="bound", help="path method to time")
    parser.add_argument("--out", type=Path, default=None, help="write the numbers as JSON")
    args = parser.parse_args()

    t0 = time.perf_counter()
    model = osl.load_model(args.model, backend=args.backend)
    load_s = time.perf_counter() - t0
    adapter = osl.ModelAdapter(model)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, adapter.d_vocab, (1, args.n), generator=gen)
    forward_recording_patterns(model, tokens[:, :32])  # warm-up
    attention_paths(model, tokens[:, :64], method=args.method)  # warm-up: weight norms cached

    forward_s, paths_s = [], []
    for _ in range(args.repeats):  # alternate, so load changes hit both alike
        forward_s.append(seconds(lambda: forward_recording_patterns(model, tokens)))
        paths_s.append(seconds(lambda: attention_paths(model, tokens, method=args.method)))
    forward_median, paths_median = statistics.median(forward_s), statistics.median(paths_s)

    layer_stack_bytes = adapter.n_heads * args.n * args.n * torch.finfo(adapter.dtype).bits // 8
    plain_peak = peak_bytes(lambda: forward_recording_patterns(model, tokens))
    paths_peak = peak_bytes(lambda: attention_paths(model, tokens, method=args.method))
    extra = paths_peak - plain_peak

    numbers: dict[str, Any] = {
        "model": args.model,
        "backend": args.backend,
        "method": args.method,
        "n": args.n,
        "n_layers": adapter.n_layers,
        "n_heads": adapter.n_heads,
        "dtype": str(adapter.dtype),
        "load_s": load_s,
        "forward_recording_patterns_s": forward_s,
        "attention_paths_s": paths_s,
        "time_ratio": paths_median / forward_median,
        "one_layer_pattern_stack_bytes": layer_stack_bytes,
        "all_layers_pattern_stack_bytes": layer_stack_bytes * adapter.n_layers,
        "forward_peak_tensor_bytes": plain_peak,
        "attention_paths_peak_tensor_bytes": paths_peak,
        "extra_peak_bytes": extra,
        "extra_peak_over_one_layer_stack": extra / layer_stack_bytes,
        "block": BLOCK,
        **math_only(args.n, adapter.n_heads, adapter.n_layers),
        **machine_facts(),
    }
    mib = 2**20
    print(f"{args.model} ({args.backend}), n = {args.n}, {adapter.n_layers} layers")
    print(
        f"time: attention_paths({args.method}) {paths_median:.2f} s / forward recording patterns "
        f"{forward_median:.2f} s = {numbers['time_ratio']:.2f}x (target <= 3)"
    )
    print(
        f"memory: extra peak {extra / mib:.1f} MiB over the forward pass's "
        f"{plain_peak / mib:.1f} MiB; one layer's pattern stack {layer_stack_bytes / mib:.1f} "
        f"MiB -> {numbers['extra_peak_over_one_layer_stack']:.2f}x (target < 2); all layers' "
        f"stack would be {layer_stack_bytes * adapter.n_layers / mib:.0f} MiB"
    )
    print(
        f"path math per layer: head mean {numbers['reduce_heads_s_per_layer']:.3f} s, "
        f"blocked product {numbers['blocked_product_s_per_layer']:.3f} s "
        f"(dense {numbers['dense_product_s_per_layer']:.3f} s)"
    )
    finish(numbers, args.out)


if __name__ == "__main__":
    main()
