"""``osl.trace``: measured sensitivity beside every attention-path proxy, for one prompt.

One pass per path method reads the attention patterns (no gradients, eager attention);
one pass with gradients measures the Jacobian norms. With ``attention="both"`` that pass
runs a doubled batch — the prompt with full attention and again with every pattern held
constant — so a single set of probes gives the full sensitivity, the frozen-attention
(value-path) sensitivity and the part that flows through the attention scores.
"""

import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from . import _memory as memory
from ._adapter import ModelAdapter, Prompt
from ._errors import PatternsUnavailableError, UnsupportedArchitectureError
from ._paths import attention_paths
from ._sensitivity import computed, gradient_run, sensitivity
from .analyzers._flow import FlowResult
from .analyzers._path_result import PATH_METHODS
from .analyzers._paths import OWN_HEADS
from .analyzers._sensitivity import Sensitivity
from .analyzers._split import split_result

DEFAULT_PATH_METHODS = ("bound", "rollout", "value", "certified")
ATTENTION = ("both", "full")


def trace(
    model: Any,
    prompt: Prompt,
    *,
    method: str = "hutchinson",
    probes: int = 32,
    path_methods: Sequence[str] | None = None,
    path_method: str | None = None,
    heads: str = "mean",
    layers: Any = "all",
    attention: str = "both",
    norm: str | None = None,
    seed: int = 0,
    prepend_bos: bool | None = None,
    checkpoint: bool | None = None,
) -> FlowResult:
    """How each input token reaches the last token: measurements and path proxies.

    Args:
        model: HookedTransformer or TransformerBridge.
        prompt: Text or token ids ``[batch, pos]``.
        method: Sensitivity method: ``"hutchinson"`` (``probes`` probes, default),
            ``"exact"`` or ``"power"`` (spectral norms).
        probes: Hutchinson probes.
        path_methods: The proxies to compare (any of ``"bound"``, ``"rollout"``,
            ``"context"``, ``"value"``, ``"flow"``, ``"certified"``). None: bound, rollout,
            value and certified; a default one the model cannot serve (certified on an
            architecture it does not cover) is left out with a warning, and the reason
            is kept in the provenance. Asked for explicitly, it raises.
        path_method: One proxy (the older spelling of ``path_methods=[...]``).
        heads: How heads are combined for bound/rollout/context (``"mean"``, ``"max"``);
            the other proxies keep their own rule.
        layers: Sensitivity output points: ``"all"``, ``"final"`` (y_n) or a list of
            block numbers and ``"final"`` (each VJP costs about one backward pass).
        attention: ``"both"`` (full, frozen and their difference, default) or ``"full"``.
            On a model whose patterns cannot be frozen the frozen part is left out with a
            warning (and the reason kept in the provenance).
        norm: ``"fro"`` or ``"spectral"``; None: spectral for ``power``, else Frobenius.
        seed: Seed of the probes and of the certified bound's power iterations.
        prepend_bos: Override the model's BOS default for text prompts.
        checkpoint: Recompute each block in the gradient pass's backward passes (see
            :func:`~oversquash_lens.sensitivity`); None: only when that pass would not
            fit in memory otherwise.

    Returns:
        A :class:`~oversquash_lens.FlowResult`; ``.agreement()`` says which proxy
        explains the measurement.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-llama")
        >>> flow = osl.trace(model, "1 1 1 1 1 1", method="exact")
        >>> flow.measures, flow.proxy_methods
        (('full', 'frozen', 'scores'), ('bound', 'rollout', 'value', 'certified'))
    """
    if attention not in ATTENTION:
        raise ValueError(f"attention must be one of {ATTENTION}, got {attention!r}")
    chosen, explicit = _methods(path_methods, path_method)
    adapter = ModelAdapter(model)
    tokens = adapter.to_tokens(prompt, prepend_bos=prepend_bos)
    options: dict[str, Any] = {"method": method, "probes": probes, "layers": layers, "seed": seed}
    if norm is not None:
        options["norm"] = norm
    elif method == "power":
        options["norm"] = "spectral"
    # the gradient pass needs the most memory: refuse it before the path passes run
    measured = Sensitivity(attention="split" if attention == "both" else attention, **options)
    batch, n = int(tokens.shape[0]) * (2 if attention == "both" else 1), int(tokens.shape[-1])
    recompute = memory.checkpoint_needed(adapter, [measured], batch, n, checkpoint)
    names = {measured.name: measured.hook_names(adapter)}
    single = (
        "attention='full' (one copy of the prompt, about half the memory: the full "
        "sensitivity without its frozen and score parts), "
        if attention == "both"
        else ""
    )
    memory.check(
        adapter, [measured], names, batch, n, grad=True, checkpoint=recompute, advice=single
    )
    options["checkpoint"] = recompute
    skipped: dict[str, str] = {}
    paths = []
    for name in chosen:
        try:
            # heads combine attention weights; value, flow and certified have their own rule
            combine = "mean" if name in OWN_HEADS else heads
            paths.append(attention_paths(model, tokens, method=name, heads=combine, seed=seed))
        except (UnsupportedArchitectureError, PatternsUnavailableError) as exc:
            if explicit:
                raise
            skipped[name] = str(exc)
    full, frozen, scores = _measure(model, tokens, attention, dict(options), skipped)
    for name, why in skipped.items():
        warnings.warn(f"trace left out {name}: {why}", UserWarning, stacklevel=2)
    flow = FlowResult.combine(paths, full, frozen=frozen, scores=scores)
    if skipped:
        extra = dict(flow.provenance.extra, skipped=skipped)
        flow.provenance = replace(flow.provenance, extra=extra)
    return flow


def _methods(path_methods: Sequence[str] | None, path_method: str | None) -> tuple[list[str], bool]:
    if path_methods is not None and path_method is not None:
        raise ValueError("give path_methods or path_method, not both")
    if path_method is not None:
        path_methods = [path_method]
    if path_methods is None:
        return list(DEFAULT_PATH_METHODS), False
    chosen = list(path_methods)
    unknown = [m for m in chosen if m not in PATH_METHODS]
    if unknown or not chosen or len(set(chosen)) != len(chosen):
        raise ValueError(
            f"path_methods must be distinct names from {PATH_METHODS}, got {list(path_methods)}"
        )
    return chosen, True


def _measure(
    model: Any, tokens: torch.Tensor, attention: str, options: dict[str, Any], skipped: dict
) -> tuple[Any, Any, Any]:
    """Full, frozen and score-path sensitivity (None for the parts not measured)."""
    if attention != "both":
        result = sensitivity(model, tokens, attention=attention, **options)
        return (result, None, None) if attention == "full" else (result, result, None)
    recompute = options.pop("checkpoint")
    analyzer = Sensitivity(attention="split", **options)

    try:
        with gradient_run(model, analyzer, recompute) as rec:
            model(torch.cat([tokens, tokens]))
            result = computed(rec, analyzer, recompute)
    except PatternsUnavailableError as exc:
        skipped["frozen attention"] = str(exc)
        return sensitivity(model, tokens, checkpoint=recompute, **options), None, None
    full, frozen, scores = split_result(result)  # type: ignore[arg-type]
    return full, frozen, scores
