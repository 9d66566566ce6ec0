"""The analyzers on Llama shapes against plain Hugging Face code, on one GPU (or --tiny CPU).

Usage::

    python benchmarks/gpu.py --out benchmarks/results/gpu.json          # a GPU: 1.1B and 7B
    python benchmarks/gpu.py --tiny --out /tmp/gpu_tiny.json            # the CPU, in seconds

Random-init Llama models (no weights are downloaded: the shapes are what costs) in
bfloat16, n tokens of random ids, wrapped in a TransformerBridge over the same Hugging
Face object (no weight copy, no processing). Each analysis is timed against the plain
Hugging Face code that does the same work, on the same model and tokens:

- ``collapse`` (the curve over every length 1..n-1, shared mode, noise floor included)
  against one plain forward pass (the floor is two: the noise floor needs a second);
- ``paths`` (``attention_paths``, the Thm 5.1 bound) against an eager forward with
  ``output_attentions=True`` and a last-row rollout over the returned patterns;
- ``hutchinson`` / ``hutchinson_frozen`` (last layer, k = 32 probes) against a forward
  and 32 vector-Jacobian products of the last token's final state w.r.t. the embeddings;
- ``trace`` (Hutchinson k = 32 full and frozen, and the bound, rollout and value-weighted
  path proxies; the certified bound refuses bfloat16 norms) against the sum of the
  paths and VJP baselines.

Each step is run once at a short length (kernels, caches) and then timed once at n, with
``torch.cuda.synchronize``; peak memory is ``torch.cuda.max_memory_allocated`` above the
weights (not measured on the CPU). A step that runs out of memory is recorded as such and
the run goes on; the whole run stops starting new steps after ``--budget`` seconds, so it
fits one device call. Targets: ≤ 1.3× the plain baselines, no out-of-memory at 7B.
"""

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import oversquash_lens as osl  # noqa: E402
from oversquash_lens._compat import bridge_class  # noqa: E402
from oversquash_lens.models._tiny import tiny_tokenizer_path  # noqa: E402

# Llama shapes: TinyLlama-1.1B and Llama-2-7B (32k vocabulary).
SHAPES: dict[str, dict[str, int]] = {
    "1.1b": dict(hidden=2048, layers=22, heads=32, kv_heads=4, mlp=5632),
    "7b": dict(hidden=4096, layers=32, heads=32, kv_heads=32, mlp=11008),
    "tiny": dict(hidden=64, layers=2, heads=4, kv_heads=2, mlp=128),
}
VOCAB = 32000
PROBES = 32
# The certified bound refuses bfloat16 norms it cannot recompute exactly; the others run.
TRACE_PATHS = ["bound", "rollout", "value"]


def llama(shape: dict[str, int], n: int, dtype: torch.dtype, device: str) -> Any:
    """A random-init Hugging Face Llama built directly on ``device`` in ``dtype``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=shape["hidden"],
        intermediate_size=shape["mlp"],
        num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"],
        num_key_value_heads=shape["kv_heads"],
        max_position_embeddings=max(n, 4096),
        attn_implementation="eager",  # the analyzers read attention patterns
    )
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def bridge(hf_model: Any, dtype: torch.dtype) -> Any:
    """A TransformerBridge over the same object, raw weights, in compatibility mode."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_tokenizer_path()))
    model = bridge_class().boot_transformers(
        "gpu-bench-llama", hf_model=hf_model, tokenizer=tokenizer, dtype=dtype
    )
    model.enable_compatibility_mode(disable_warnings=True, no_processing=True)
    return model.eval()


# ---------------------------------------------------------------------- plain HF baselines
def plain_forward(hf_model: Any, ids: torch.Tensor) -> None:
    with torch.no_grad():
        hf_model(ids, use_cache=False)


def plain_rollout(hf_model: Any, ids: torch.Tensor) -> torch.Tensor:
    """Eager forward returning every pattern, then the last row's rollout through them."""
    with torch.no_grad():
        patterns = hf_model(ids, output_attentions=True, use_cache=False).attentions
        n = ids.shape[-1]
        row = torch.zeros(n, dtype=torch.float64, device=ids.device)
        row[-1] = 1.0
        for pattern in reversed(patterns):
            mixed = 0.5 * pattern[0].double().mean(0) + 0.5 * torch.eye(n, device=ids.device)
            row = row @ mixed
    return row


def plain_vjps(hf_model: Any, ids: torch.Tensor, probes: int = PROBES) -> torch.Tensor:
    """A forward and ``probes`` VJPs of the last token's final state w.r.t. the embeddings."""
    embeddings = hf_model.get_input_embeddings()(ids).detach().requires_grad_(True)
    last = hf_model.model(inputs_embeds=embeddings, use_cache=False).last_hidden_state[0, -1]
    generator = torch.Generator(device=ids.device).manual_seed(0)
    total = torch.zeros(ids.shape[-1], device=ids.device, dtype=torch.float64)
    for k in range(probes):
        v = torch.randn(last.shape, generator=generator, device=ids.device, dtype=last.dtype)
        (grad,) = torch.autograd.grad(last, embeddings, v, retain_graph=k < probes - 1)
        total += grad[0].double().norm(dim=-1) ** 2
    return total


# ---------------------------------------------------------------------- measuring
def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(fn: Callable[[], Any], device: str) -> dict[str, Any]:
    """Seconds and peak memory above what was allocated before (GiB; None on the CPU)."""
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    sync(device)
    start = time.perf_counter()
    try:
        fn()
    except torch.OutOfMemoryError as exc:
        return {"seconds": None, "peak_gib": None, "oom": True, "error": str(exc)[:300]}
    sync(device)
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() - before) / 2**30 if cuda else None
    return {"seconds": seconds, "peak_gib": peak, "oom": False}


def steps(model: Any, hf_model: Any, ids: torch.Tensor) -> dict[str, tuple[Callable, Callable]]:
    """Each analysis and its plain baseline, as zero-argument callables."""
    n = ids.shape[-1]
    family = osl.tasks.repeated_last("1")
    one = int(model.to_tokens("1", prepend_bos=False)[0, 0])
    ones = torch.full_like(ids, one)  # the family's sequences: 1^k
    return {
        "collapse": (
            lambda: osl.collapse(model, family, range(1, n - 1), ["bfloat16"], progress=False),
            lambda: plain_forward(hf_model, ones),
        ),
        "paths": (
            lambda: osl.attention_paths(model, ids),
            lambda: plain_rollout(hf_model, ids),
        ),
        "hutchinson": (
            lambda: osl.sensitivity(
                model, ids, method="hutchinson", probes=PROBES, layers=["final"]
            ),
            lambda: plain_vjps(hf_model, ids),
        ),
        "hutchinson_frozen": (
            lambda: osl.sensitivity(
                model,
                ids,
                method="hutchinson",
                probes=PROBES,
                layers=["final"],
                attention="frozen",
            ),
            lambda: plain_vjps(hf_model, ids),
        ),
        "trace": (
            lambda: osl.trace(
                model,
                ids,
                method="hutchinson",
                probes=PROBES,
                layers=["final"],
                path_methods=TRACE_PATHS,
            ),
            lambda: (plain_rollout(hf_model, ids), plain_vjps(hf_model, ids)),
        ),
    }


def run_size(name: str, n: int, dtype: torch.dtype, device: str, deadline: float) -> dict:
    shape = SHAPES[name]
    start = time.perf_counter()
    hf_model = llama(shape, n, dtype, device)
    model = bridge(hf_model, dtype)
    params = sum(p.numel() for p in hf_model.parameters())
    out: dict[str, Any] = {
        "shape": shape,
        "parameters": params,
        "build_seconds": time.perf_counter() - start,
        "steps": {},
    }
    print(f"{name}: {params / 1e9:.2f}B parameters, built in {out['build_seconds']:.0f} s")
    warm = torch.randint(VOCAB, (1, min(n, 64)), device=device)
    ids = torch.randint(VOCAB, (1, n), device=device, generator=None)
    warm_steps, timed_steps = steps(model, hf_model, warm), steps(model, hf_model, ids)
    for step, (ours, plain) in timed_steps.items():
        if time.perf_counter() > deadline:
            out["steps"][step] = {"skipped": "the time budget was spent"}
            continue
        for fn in warm_steps[step]:
            fn()
        mine, theirs = measure(ours, device), measure(plain, device)
        ratio = None
        if mine["seconds"] is not None and theirs["seconds"]:
            ratio = mine["seconds"] / theirs["seconds"]
        out["steps"][step] = {"ours": mine, "plain": theirs, "time_ratio": ratio}
        shown = "OOM" if ratio is None else f"{ratio:.2f}x"
        print(f"  {step:18s} ours {mine['seconds']}  plain {theirs['seconds']}  {shown}")
    del model, hf_model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU (a test)")
    parser.add_argument("--sizes", default="1.1b,7b", help="comma list of " + ",".join(SHAPES))
    parser.add_argument("--n", type=int, default=None, help="tokens (default 4096; tiny: 48)")
    parser.add_argument("--device", default=None, help="default: cuda, or cpu with --tiny")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds before skipping")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    sizes = ["tiny"] if args.tiny else [s.strip() for s in args.sizes.split(",")]
    n = args.n or (48 if args.tiny else 4096)
    device = args.device or ("cpu" if args.tiny else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA device: run on a GPU machine, or with --tiny on the CPU")
    dtype = torch.bfloat16
    torch.manual_seed(0)
    deadline = time.perf_counter() + args.budget
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "dtype": "bfloat16",
        "n": n,
        "probes": PROBES,
        "sizes": {},
    }
    for size in sizes:
        results["sizes"][size] = run_size(size, n, dtype, device, deadline)
    ratios = [
        s["time_ratio"]
        for size in results["sizes"].values()
        for s in size["steps"].values()
        if s.get("time_ratio") is not None
    ]
    results["worst_time_ratio"] = max(ratios) if ratios else math.nan
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
