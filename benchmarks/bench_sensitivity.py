"""Exact Jacobian sensitivity against torch's generic routes; Hutchinson against exact.

Measured in one run, as ratios (these machines are shared and noisy; each route runs once
untimed on 4 tokens, then ``--repeats`` times interleaved with the others, and the
fastest run counts):

1. **One layer, exact** (y_n, the final norm output at the last token, with respect to
   v(0), SmolLM2-135M at ``--tokens`` tokens): ``‖∂y_n/∂x_i‖_F`` for every i by

   - ``ours``: ``sensitivity(model, tokens, layers="final")`` (forward pass included;
     the strategy and chunk size it picks for the device);
   - ``loop``: one ``torch.autograd.grad`` backward pass per output dimension;
   - ``jacrev``: ``torch.func.jacrev(f, chunk_size=64)`` of a function that runs the model
     with the first block's input replaced (forward included);
   - ``is_grads_batched``: ``torch.autograd.grad(..., is_grads_batched=True)`` with all
     basis cotangents in chunks of 64.

   All routes run with the weights' ``requires_grad`` off (the same problem for all) and
   report the max abs difference of their norms from ``ours``.
2. **All layers**: Hutchinson (k = ``--probes``) against exact, every block output and
   y_n, at ``--all-tokens`` tokens, both through ``sensitivity(...)``; the median
   relative error of Hutchinson against exact is printed too.
3. ``--sweep``: our exact route at chunk sizes 1..64 (how ``MAX_CHUNK`` was chosen).

Usage::

    .venv/bin/python benchmarks/bench_sensitivity.py --out benchmarks/results/sensitivity.json
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
from oversquash_lens import _hooknames as names
from oversquash_lens._sensitivity import sensitivity
from oversquash_lens.analyzers._vjp_budget import auto_chunk
from oversquash_lens.results import atomic_write_bytes

GENERIC_CHUNK = 64  # jacrev / is_grads_batched chunk (fastest on SmolLM2, seq 64, CPU)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def frozen(model: Any) -> list[torch.nn.Parameter]:
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    return params


def recorded_graph(model: Any, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward pass with v(0) a leaf: (x [1, n, d], y_n at the last token [1, d])."""
    seen: dict[str, torch.Tensor] = {}

    def leaf(activation: torch.Tensor, hook: Any) -> torch.Tensor:
        seen["x"] = activation.detach().requires_grad_(True)
        return seen["x"]

    def out(activation: torch.Tensor, hook: Any) -> None:
        seen["y"] = activation[:, -1]

    model.run_with_hooks(tokens, fwd_hooks=[(names.resid_pre(0), leaf), (names.FINAL_NORM, out)])
    return seen["x"], seen["y"]


def route_loop(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    x, y = recorded_graph(model, tokens)
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    for o in range(y.shape[-1]):
        (g,) = torch.autograd.grad(y[0, o], x, retain_graph=True)
        total += g[0].double().square().sum(-1)
    return total.sqrt()


def route_batched(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    x, y = recorded_graph(model, tokens)
    eye = torch.eye(y.shape[-1], dtype=y.dtype)
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    for start in range(0, y.shape[-1], GENERIC_CHUNK):
        cot = eye[start : start + GENERIC_CHUNK, None, :]
        (g,) = torch.autograd.grad(y, x, cot, retain_graph=True, is_grads_batched=True)
        total += g[:, 0].double().square().sum(dim=(0, 2))
    return total.sqrt()


def route_jacrev(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        x0, _ = recorded_graph(model, tokens)
    x0 = x0.detach()

    def f(x: torch.Tensor) -> torch.Tensor:
        seen: dict[str, torch.Tensor] = {}
        model.run_with_hooks(
            tokens,
            fwd_hooks=[
                (names.resid_pre(0), lambda a, hook: x),
                (names.FINAL_NORM, lambda a, hook: seen.__setitem__("y", a[:, -1])),
            ],
        )
        return seen["y"]

    jac = torch.func.jacrev(f, chunk_size=GENERIC_CHUNK)(x0)  # [1, d, 1, n, d]
    return jac[0, :, 0].double().square().sum(dim=(0, 2)).sqrt()


def one_layer(model: Any, tokens: torch.Tensor, repeats: int) -> dict[str, Any]:
    routes: dict[str, Callable[[], torch.Tensor]] = {
        "ours": lambda: sensitivity(model, tokens, layers="final").norms[0, 0],
        "loop": lambda: route_loop(model, tokens),
        "jacrev": lambda: route_jacrev(model, tokens),
        "is_grads_batched": lambda: route_batched(model, tokens),
    }
    warm = tokens[:, :4]
    for fn in (
        lambda: sensitivity(model, warm, layers="final"),
        lambda: route_loop(model, warm),
        lambda: route_jacrev(model, warm),
        lambda: route_batched(model, warm),
    ):
        fn()  # first calls allocate and set up vmap; not timed
    times: dict[str, list[float]] = {name: [] for name in routes}
    values: dict[str, torch.Tensor] = {}
    for rep in range(repeats):
        for name, fn in routes.items():
            seconds, values[name] = timed(fn)
            times[name].append(seconds)
            print(f"  [{rep}] {name:17s} {seconds:8.1f} s", flush=True)
    best = {name: min(t) for name, t in times.items()}
    fastest_generic = min(v for k, v in best.items() if k != "ours")
    return {
        "seconds": best,
        "all_seconds": times,
        "max_abs_diff_vs_ours": {
            k: float((v - values["ours"]).abs().max()) for k, v in values.items() if k != "ours"
        },
        "max_norm": float(values["ours"].max()),
        "ours_over_fastest_generic": best["ours"] / fastest_generic,
        "speedup_vs": {k: v / best["ours"] for k, v in best.items() if k != "ours"},
    }


def all_layers(model: Any, tokens: torch.Tensor, probes: int, repeats: int) -> dict[str, Any]:
    exact_t: list[float] = []
    hutch_t: list[float] = []
    exact = hutch = None

    def estimate() -> Any:
        return sensitivity(model, tokens, method="hutchinson", probes=probes)

    for rep in range(repeats):
        seconds, hutch = timed(estimate)
        hutch_t.append(seconds)
        print(f"  [{rep}] hutchinson k={probes} {seconds:8.1f} s", flush=True)
        seconds, exact = timed(lambda: sensitivity(model, tokens))
        exact_t.append(seconds)
        print(f"  [{rep}] exact            {seconds:8.1f} s", flush=True)
    assert exact is not None and hutch is not None
    relative = (hutch.norms - exact.norms).abs() / exact.norms
    return {
        "points": len(exact.points),
        "exact_seconds": min(exact_t),
        "hutchinson_seconds": min(hutch_t),
        "exact_over_hutchinson": min(exact_t) / min(hutch_t),
        "hutchinson_median_relative_error": float(relative.median()),
        "hutchinson_coverage_1.96se": float(
            ((hutch.norms - exact.norms).abs() <= 1.96 * hutch.stderr).double().mean()
        ),
    }


def sweep(model: Any, tokens: torch.Tensor) -> dict[int, float]:
    out = {}
    for chunk in (1, 4, 8, 16, 32, 64):
        seconds, _ = timed(lambda c=chunk: sensitivity(model, tokens, layers="final", chunk_size=c))
        out[chunk] = seconds
        print(f"  chunk {chunk:3d}: {seconds:8.1f} s", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--backend", default="hooked")
    parser.add_argument("--tokens", type=int, default=64, help="tokens for the one-layer part")
    parser.add_argument("--all-tokens", type=int, default=16, help="tokens for all layers")
    parser.add_argument("--probes", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--sweep", action="store_true", help="also time our chunk sizes")
    parser.add_argument("--skip-all-layers", action="store_true")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = osl.load_model(args.model, backend=args.backend)
    params = frozen(model)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(200, 5000, (1, args.tokens), generator=gen)
    report: dict[str, Any] = {
        "model": args.model,
        "backend": args.backend,
        "dtype": str(model.cfg.dtype),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "our_chunk": auto_chunk(torch.zeros(1, args.tokens, model.cfg.d_model)),
        "generic_chunk": GENERIC_CHUNK,
        "tokens": args.tokens,
        "load_average_start": os.getloadavg(),
    }
    print(f"one layer (y_n), {args.tokens} tokens, exact Frobenius:", flush=True)
    report["one_layer"] = one_layer(model, tokens, args.repeats)
    if args.sweep:
        print("our chunk sizes:", flush=True)
        report["chunk_sweep_seconds"] = sweep(model, tokens)
    if not args.skip_all_layers:
        short = tokens[:, : args.all_tokens]
        print(f"all layers, {args.all_tokens} tokens:", flush=True)
        report["all_layers"] = {"tokens": args.all_tokens, "probes": args.probes}
        report["all_layers"].update(all_layers(model, short, args.probes, args.repeats))
    report["load_average_end"] = os.getloadavg()
    for p in params:
        p.requires_grad_(True)

    one = report["one_layer"]
    print("\none layer: seconds", {k: round(v, 2) for k, v in one["seconds"].items()})
    print("  max |diff| vs ours", one["max_abs_diff_vs_ours"], "(max norm", one["max_norm"], ")")
    print(f"  ours / fastest generic route: {one['ours_over_fastest_generic']:.2f}")
    if "all_layers" in report:
        al = report["all_layers"]
        print(
            f"all layers: exact {al['exact_seconds']:.1f} s, hutchinson "
            f"{al['hutchinson_seconds']:.1f} s, ratio {al['exact_over_hutchinson']:.1f}x, "
            f"median rel. error {al['hutchinson_median_relative_error']:.3f}"
        )
    if args.out:
        atomic_write_bytes(args.out, json.dumps(report, indent=2).encode())
        print("wrote", args.out)


if __name__ == "__main__":
    main()
