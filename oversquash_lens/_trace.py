"""``osl.trace``: attention paths and Jacobian sensitivity of one prompt, side by side."""

from typing import Any

from ._adapter import Prompt
from .analyzers._flow import FlowResult
from .analyzers._paths import attention_paths
from .analyzers._sensitivity import sensitivity


def trace(
    model: Any,
    prompt: Prompt,
    *,
    method: str = "hutchinson",
    probes: int = 32,
    path_method: str = "bound",
    heads: str = "mean",
    layers: Any = "all",
    seed: int = 0,
    prepend_bos: bool | None = None,
) -> FlowResult:
    """How each input token reaches the last token: sensitivity beside the path bound.

    Two passes: one without gradients that reads the attention patterns (eager attention),
    one with gradients for the Jacobian norms (any attention kernel), as DESIGN.md asks
    (eager attention gradients do not fit at long sequences).

    Args:
        model: HookedTransformer or TransformerBridge.
        prompt: Text or token ids ``[batch, pos]``.
        method: Sensitivity method, ``"hutchinson"`` (k probes, default) or ``"exact"``.
        probes: Hutchinson probes.
        path_method: ``"bound"``, ``"rollout"`` or ``"context"``.
        heads: How heads are combined for the paths (``"mean"``, ``"max"``).
        layers: Sensitivity output points: ``"all"``, ``"final"`` (y_n) or a list of
            block numbers and ``"final"`` (each VJP costs about one backward pass).
        seed: Seed of the probes.
        prepend_bos: Override the model's BOS default for text prompts.

    Returns:
        A :class:`~oversquash_lens.FlowResult`.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-llama")
        >>> flow = osl.trace(model, "1 1 1 1 1 1", method="exact")
        >>> flow.sensitivity.shape == flow.paths.shape, len(flow.points)
        (True, 3)
    """
    paths = attention_paths(model, prompt, method=path_method, heads=heads, prepend_bos=prepend_bos)
    measured = sensitivity(
        model,
        prompt,
        method=method,
        probes=probes,
        layers=layers,
        seed=seed,
        prepend_bos=prepend_bos,
    )
    return FlowResult.combine(paths, measured)
