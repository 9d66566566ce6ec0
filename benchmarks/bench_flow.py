"""Attention flow by SciPy's max-flow against networkx's, on the same layered graph.

The rollout transitions ½(Λ + I) of every layer of one prompt are recorded once; then
``attention_flow`` (SciPy, Dinic) and ``attention_flow_networkx`` (networkx's default
max-flow) compute the flow from every input position to the last position after every
layer on the same integer capacities. Prints both times, their ratio and the largest
difference (the same integers: expected 0).

Usage:
    .venv/bin/python benchmarks/bench_flow.py [--model smollm2-135m] [--n 32] [--layers 30]
        [--out benchmarks/results/flow.json]
"""

import argparse
import time
from pathlib import Path

import torch
from _common import finish, machine_facts

import oversquash_lens as osl
from oversquash_lens import _hooknames as names
from oversquash_lens.analyzers._proxies import attention_flow, attention_flow_networkx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--layers", type=int, default=None, help="first layers only")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    model = osl.load_model(args.model)
    n_layers = args.layers or model.cfg.n_layers
    vocab = int(model.cfg.d_vocab)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(vocab // 4, vocab // 2, (1, args.n), generator=gen)
    with torch.no_grad(), osl.record(model, [names.pattern(i) for i in range(n_layers)]) as rec:
        model(tokens)
    eye = torch.eye(args.n, dtype=torch.float64)
    transitions = torch.stack(
        [0.5 * rec[names.pattern(i)][0].double().mean(0) + 0.5 * eye for i in range(n_layers)]
    )
    start = time.perf_counter()
    fast = attention_flow(transitions, budget=10**12)
    scipy_s = time.perf_counter() - start
    start = time.perf_counter()
    slow = attention_flow_networkx(transitions)
    networkx_s = time.perf_counter() - start
    numbers = {
        "model": args.model,
        "n": args.n,
        "layers": n_layers,
        "flows": args.n * n_layers,
        "scipy_s": scipy_s,
        "networkx_s": networkx_s,
        "speedup": networkx_s / scipy_s,
        "max_abs_difference": float((fast - slow).abs().max()),
        **machine_facts(),
    }
    print(
        f"{args.model}, n = {args.n}, {n_layers} layers, {numbers['flows']} flows: SciPy "
        f"{scipy_s:.2f} s, networkx {networkx_s:.2f} s -> {numbers['speedup']:.0f}x faster; "
        f"largest difference {numbers['max_abs_difference']:.1e}"
    )
    finish(numbers, args.out)


if __name__ == "__main__":
    main()
