"""Every analysis at the model's whole context: time, peak memory, or an early refusal.

SmolLM2-135M's context is 8192 tokens. Each analysis runs once at that length (collapse
over the lengths 1..N-10 of ``repeated_last`` with the ten-token count prefix, so its
longest sequence has N tokens), beside one plain forward pass over N tokens. For each it
records wall time and the peak resident memory above the process's resident memory just
before the call (a thread samples ``/proc/self/statm`` every 50 ms), or, when the
up-front check refuses the request, the refusal's message and the seconds it took to
refuse (no work is done, so it returns at once).

The JSON is written after every case, and a rerun with the same ``--out`` keeps the cases
it does not run again (``--only``).

Usage:
    .venv/bin/python benchmarks/bench_context.py [--n 8192] [--only forward,collapse]
        [--probes 32] [--out benchmarks/results/context.json]
"""

import argparse
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import torch
from _common import finish, machine_facts

import oversquash_lens as osl
from oversquash_lens.analyzers._memory import gib
from oversquash_lens.results import atomic_write_bytes

PAGE = os.sysconf("SC_PAGE_SIZE")


def resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakResident:
    """Highest resident memory while active, sampled by a thread."""

    def __enter__(self) -> "PeakResident":
        self.base = self.peak = resident()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, resident())

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, resident())


def measure(name: str, call: Any) -> dict[str, Any]:
    start = time.perf_counter()
    with PeakResident() as meter:
        try:
            returned = call()
            outcome: dict[str, Any] = {"ran": True}
            provenance = getattr(returned, "provenance", None)
            if provenance is not None and "checkpoint" in provenance.extra:
                outcome["checkpointed_blocks"] = provenance.extra["checkpoint"]
        except osl.InsufficientMemoryError as exc:
            outcome = {"ran": False, "refused": str(exc)}
    seconds = time.perf_counter() - start
    extra = meter.peak - meter.base
    outcome.update(seconds=round(seconds, 2), peak_extra_bytes=extra, load=os.getloadavg()[0])
    status = "ran" if outcome["ran"] else "REFUSED"
    print(f"{name:28s} {status:8s} {seconds:8.1f} s  peak +{gib(extra)}", flush=True)
    if not outcome["ran"]:
        print(f"    {outcome['refused'][:300]}", flush=True)
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--backend", default="hooked")
    parser.add_argument("--n", type=int, default=8192)
    parser.add_argument("--only", default=None, help="comma-separated case names")
    parser.add_argument(
        "--probes", type=int, default=32, help="Hutchinson probes (sensitivity and trace)"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    model = osl.load_model(args.model, backend=args.backend)
    n = args.n
    family = osl.tasks.repeated_last("1", prefix=osl.tasks.COUNT_ONES)
    longest = family.pair(model, n - 10).b[None]
    tokens = torch.randint(10, 40000, (1, n), generator=torch.Generator().manual_seed(0))
    cases = {
        "forward": lambda: model(longest),
        "collapse": lambda: osl.collapse(
            model, family, range(1, n - 9), ["float32"], progress=False
        ),
        "attention_paths": lambda: osl.attention_paths(model, tokens),
        "hutchinson_full": lambda: osl.sensitivity(
            model, tokens, method="hutchinson", probes=args.probes, layers="final"
        ),
        "hutchinson_frozen": lambda: osl.sensitivity(
            model,
            tokens,
            method="hutchinson",
            probes=args.probes,
            layers="final",
            attention="frozen",
        ),
        "trace": lambda: osl.trace(model, tokens, probes=args.probes),
        "view": lambda: osl.render.attention_heads(model, tokens, paths=False),
    }
    numbers: dict[str, Any] = {"model": args.model, "backend": args.backend, "n": n}
    if args.out is not None and args.out.exists():  # keep the cases an earlier run measured
        earlier = json.loads(args.out.read_text())
        if (earlier.get("model"), earlier.get("backend"), earlier.get("n")) == (
            args.model,
            args.backend,
            n,
        ):
            numbers = earlier
    numbers["longest_collapse_tokens"] = int(longest.shape[1])
    numbers.update(machine_facts())
    with torch.no_grad():
        model(longest[:, :16])  # warm up
    for name, call in cases.items():
        if args.only and name not in args.only.split(","):
            continue
        if name == "forward":
            with torch.no_grad():
                numbers[name] = measure(name, call)
        else:
            numbers[name] = measure(name, call)
        if name.startswith(("hutchinson", "trace")):
            numbers[name]["probes"] = args.probes
        if args.out is not None:  # after every case: a long run that stops keeps its numbers
            atomic_write_bytes(args.out, (json.dumps(numbers, indent=2) + "\n").encode())
    if "forward" in numbers and "collapse" in numbers and numbers["collapse"]["ran"]:
        ratio = numbers["collapse"]["seconds"] / numbers["forward"]["seconds"]
        numbers["collapse_over_forward"] = round(ratio, 2)
        print(f"collapse / forward: {ratio:.2f}x")
    numbers["load_average_1min_end"] = os.getloadavg()[0]
    finish(numbers, args.out)


if __name__ == "__main__":
    main()
