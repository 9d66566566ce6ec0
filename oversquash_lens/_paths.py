"""``osl.attention_paths(model, prompt)``: one forward pass with :class:`AttentionPaths`.

A function that runs the model, so it sits above the analyzers (which never run one).
"""

from typing import Any

import torch

from ._adapter import ModelAdapter, Prompt
from ._attach import attach
from .analyzers._path_result import PathResult
from .analyzers._paths import AttentionPaths, Beta, HeadSpec
from .analyzers._proxies import FLOW_BUDGET, check_flow_budget


def attention_paths(
    model: Any,
    prompt: Prompt,
    *,
    method: str = "bound",
    heads: HeadSpec = "mean",
    beta1: Beta = 1.0,
    beta2: Beta = 1.0,
    beta3: float = 1.0,
    sigma_psi: float = 1.0,
    iterations: int = 100,
    tol: float = 1e-6,
    seed: int = 0,
    flow_budget: int = FLOW_BUDGET,
    mlp: str = "lipschitz",
    product_dtype: str = "auto",
    prepend_bos: bool | None = None,
) -> PathResult:
    """Attention-path weights from every position to the last token, for one prompt.

    Runs one forward pass under ``torch.no_grad()`` with an :class:`AttentionPaths`
    attached (see it for the methods and head options) and returns its result.

    Args:
        model: HookedTransformer or TransformerBridge.
        prompt: Text, or token ids ``[pos]`` / ``[batch, pos]`` (rows are kept apart).
        method: ``"bound"``, ``"rollout"``, ``"context"``, ``"value"``, ``"flow"`` or
            ``"certified"``.
        heads: ``"mean"``, ``"max"``, ``"each"``, or head weights (bound, rollout,
            context).
        beta1: β1 (number or per layer; ``bound``).
        beta2: β2 (number or per layer; ``bound``).
        beta3: β3 (``bound``).
        sigma_psi: σ_ψ (``bound``).
        iterations: Power-iteration steps at most (``certified``).
        tol: Power-iteration tolerance (``certified``).
        seed: Power-iteration seed (``certified``).
        flow_budget: Most max-flow work (``flow``).
        mlp: ``"lipschitz"`` or ``"power"`` MLP constants (``certified``).
        product_dtype: ``"auto"``, ``"float64"`` or ``"float32"``: the running product's
            dtype (bound, rollout, context; ``"auto"`` is float32 from 4096 positions).
        prepend_bos: Override the model's BOS default for text prompts.

    Returns:
        A :class:`PathResult`.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-gpt2")
        >>> result = osl.attention_paths(model, "1 1 1 1", method="rollout")
        >>> result.summary()[["layer", "first", "last"]].shape
        (2, 3)
    """
    tokens = ModelAdapter(model).to_tokens(prompt, prepend_bos=prepend_bos)
    analyzer = AttentionPaths(
        method=method,
        heads=heads,
        beta1=beta1,
        beta2=beta2,
        beta3=beta3,
        sigma_psi=sigma_psi,
        iterations=iterations,
        tol=tol,
        seed=seed,
        flow_budget=flow_budget,
        mlp=mlp,
        product_dtype=product_dtype,
    )
    if method == "flow":  # fail before the pass, not after it
        check_flow_budget(tokens.shape[-1], ModelAdapter(model).n_layers, flow_budget)
    with attach(model, analyzer) as rec, torch.no_grad():
        model(tokens, return_type=None)
    result = rec.result(analyzer)
    assert isinstance(result, PathResult)
    return result
