"""A short, checkable tour of one model.

Loads the model, attaches :class:`ResidualNorms` to an ordinary forward pass, prints the
last token's residual norm at every layer, the next-token prediction and a greedy
continuation, then reruns with bfloat16 emulated on the residual stream to show how far
the last token's final representation moves (in bf16 ULPs) and whether the prediction
survives.
"""

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ._adapter import ModelAdapter
from ._attach import attach
from ._generate import greedy_continuation
from .analyzers import ResidualNorms, ResidualNormsResult
from .capture import emulate_precision, record
from .models import load_model
from .precision import machine_epsilon, ulp_distance

DEFAULT_MODEL = "smollm2-135m"
DEFAULT_PROMPT = "The capital of France is"


@dataclass
class DemoReport:
    """Everything the demo measured (printed by :meth:`format`, or dumped as JSON)."""

    provenance: str
    prompt: str
    str_tokens: list[str]
    norms: list[tuple[str, float]]
    top_next: list[tuple[str, float]]
    continuation: str
    bf16_next_token_same: bool | None
    bf16_final_linf: float | None
    bf16_final_median_ulps: float | None
    bf16_final_identical: float | None
    seconds: dict[str, float] = field(default_factory=dict)

    def format(self) -> str:
        """Human-readable report."""
        lines = [
            f"model     {self.provenance}",
            f"prompt    {self.prompt!r} -> {len(self.str_tokens)} tokens {self.str_tokens}",
            "",
            "last-token residual stream, L2 norm per layer (osl.ResidualNorms):",
        ]
        width = max(len(h) for h, _ in self.norms)
        for k, (hook, value) in enumerate(self.norms):
            label = "y_n" if hook.startswith("ln_final") else f"v({k})"
            lines.append(f"  {label:>6}  {hook:<{width}}  {value:10.4f}")
        lines += ["", "next-token prediction (top 5):"]
        lines += [f"  {p:7.2%}  {tok!r}" for tok, p in self.top_next]
        lines += ["", f"greedy continuation: {self.continuation!r}", ""]
        lines.append("bfloat16 emulated on the residual stream (osl.emulate_precision):")
        if self.bf16_final_linf is None:
            lines.append("  skipped: the model already runs in a 16-bit dtype")
        else:
            lines += [
                f"  y_n of the last token moves by L-inf {self.bf16_final_linf:.4g} "
                f"(bf16 epsilon = {machine_epsilon('bfloat16'):.4g}); per component, median "
                f"{self.bf16_final_median_ulps:.0f} bf16 ULPs, "
                f"{self.bf16_final_identical:.1%} identical in bf16",
                f"  next-token argmax unchanged: {self.bf16_next_token_same}",
            ]
        lines += ["", "timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in self.seconds.items())]
        return "\n".join(lines)


def run_demo(
    model_name: str = DEFAULT_MODEL,
    *,
    backend: str | None = None,
    dtype: str = "float32",
    prompt: str = DEFAULT_PROMPT,
    max_new_tokens: int = 8,
    model: Any = None,
) -> DemoReport:
    """Run the demo and return what it measured.

    Args:
        model_name: A name :func:`~oversquash_lens.load_model` accepts.
        backend: ``"hooked"``, ``"bridge"`` or None (whichever is installed).
        dtype: Native dtype to load the model in.
        prompt: Text to analyse.
        max_new_tokens: Length of the greedy continuation.
        model: An already-loaded model to use instead of ``model_name``.

    Returns:
        A :class:`DemoReport`.

    Example:
        >>> report = run_demo("tiny-gpt2", max_new_tokens=2)
        >>> report.norms[0][0]
        'blocks.0.hook_resid_pre'
    """
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    if model is None:
        model = load_model(model_name, backend=backend, dtype=dtype)  # type: ignore[arg-type]
    seconds["load"] = time.perf_counter() - start
    adapter = ModelAdapter(model)
    tokens = adapter.to_tokens(prompt)

    start = time.perf_counter()
    with torch.no_grad(), attach(model, ResidualNorms(include_final_norm=True)) as rec:
        logits = model(tokens)
    norms = rec.result("ResidualNorms")
    assert isinstance(norms, ResidualNormsResult)
    seconds["forward"] = time.perf_counter() - start

    probs = torch.softmax(logits[0, -1].double(), dim=-1)
    top = torch.topk(probs, 5)
    top_next = [
        (adapter.to_string(int(i)), float(p)) for p, i in zip(top.values, top.indices, strict=True)
    ]

    start = time.perf_counter()
    continuation = adapter.to_string(greedy_continuation(model, tokens, max_new_tokens)[0])
    seconds["generate"] = time.perf_counter() - start

    bf16 = _bf16_check(model, adapter, tokens, logits) if adapter.dtype in WIDE else None
    return DemoReport(
        provenance=norms.provenance.describe(),
        prompt=prompt,
        str_tokens=adapter.to_str_tokens(tokens[0]),
        norms=[(h, float(v)) for h, v in zip(norms.points, norms.norms[0], strict=True)],
        top_next=top_next,
        continuation=continuation,
        bf16_next_token_same=None if bf16 is None else bf16[0],
        bf16_final_linf=None if bf16 is None else bf16[1],
        bf16_final_median_ulps=None if bf16 is None else bf16[2],
        bf16_final_identical=None if bf16 is None else bf16[3],
        seconds=seconds,
    )


WIDE = (torch.float32, torch.float64)


def _bf16_check(
    model: Any, adapter: ModelAdapter, tokens: torch.Tensor, logits: torch.Tensor
) -> tuple[bool, float, float, float]:
    """Same argmax?, L-inf, median ULPs, share identical: y_n exact vs bf16-emulated."""
    with torch.no_grad(), record(model, [adapter.final_norm]) as exact:
        model(tokens)
    with (
        torch.no_grad(),
        emulate_precision(model, "bfloat16"),
        record(model, [adapter.final_norm]) as emulated,
    ):
        logits_bf16 = model(tokens)
    a = exact[adapter.final_norm][0, -1].float()
    b = emulated[adapter.final_norm][0, -1].float()
    ulps = ulp_distance(a, b, "bfloat16")
    return (
        bool(logits_bf16[0, -1].argmax() == logits[0, -1].argmax()),
        float((a.double() - b.double()).abs().max()),
        float(ulps.median()),
        float((ulps == 0).double().mean()),
    )
