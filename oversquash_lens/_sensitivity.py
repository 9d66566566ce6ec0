"""``osl.sensitivity(model, prompt)``: one forward pass with a :class:`Sensitivity` attached.

A function that runs the model, so it sits above the analyzers (which never run one).
"""

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch.utils.checkpoint import CheckpointError

from . import _memory as memory
from ._adapter import ModelAdapter, Prompt
from ._attach import attach
from ._errors import IncompatibleRunError
from .analyzers._sensitivity import Sensitivity
from .analyzers._sensitivity_result import SensitivityResult
from .capture import checkpointed_blocks, frozen_parameters


def sensitivity(
    model: Any,
    prompt: Prompt,
    *,
    method: str = "exact",
    probes: int = 32,
    norm: str | None = None,
    layers: str | Sequence[int | str] = "all",
    wrt: str = "resid_pre0",
    position: int = -1,
    seed: int = 0,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    iterations: int = 100,
    tol: float = 1e-6,
    attention: str = "full",
    prepend_bos: bool | None = None,
    checkpoint: bool | None = None,
) -> SensitivityResult:
    """Jacobian sensitivity of each layer's last-token output to every input token.

    One forward pass with gradients enabled inside :func:`attach` with a
    :class:`Sensitivity` analyzer (see it for the arguments), then its result. The
    model's weights do not record gradients during the pass (less memory); their
    ``.grad`` and ``requires_grad`` are left as they were.

    Args:
        model: HookedTransformer or TransformerBridge.
        prompt: A string, a list of strings of equal token length (a batch; prompts of
            different lengths are refused, not padded) or token ids.
        method: ``"exact"``, ``"hutchinson"`` or ``"power"``.
        probes: Hutchinson probes.
        norm: ``"fro"`` or ``"spectral"``; None: spectral for ``power`` (which only
            estimates spectral norms), else Frobenius.
        layers: ``"all"``, ``"final"`` or block numbers / ``"final"``.
        wrt: ``"resid_pre0"`` or ``"embed"``.
        position: Output position (-1: last token).
        seed: Seed of the probes / starting vectors.
        chunk_size: VJPs per batched backward (None: from ``memory_budget``).
        memory_budget: Bytes for the batched backward passes (None: per device).
        iterations: Power-iteration steps at most.
        tol: Power-iteration tolerance.
        attention: ``"full"`` or ``"frozen"`` (every attention pattern held constant: the
            value path only, Thm 5.1's setting).
        prepend_bos: Override the model's BOS default for string prompts.
        checkpoint: Recompute each block in the backward passes instead of keeping every
            block's autograd graph (``capture.checkpointed_blocks``): memory for one
            block's graph instead of all of them, for one more forward computation per
            backward pass, the same numbers bit for bit. None (automatic): only when the
            run would not fit in memory otherwise. The result's
            ``provenance.extra["checkpoint"]`` says which was used. Your own hooks inside
            the blocks run again in the recomputation and must give the same values.

    Returns:
        A :class:`SensitivityResult` with ``norms`` ``[batch, point, pos]``.

    Raises:
        IncompatibleRunError: Inside ``torch.inference_mode()``, or on a model whose
            weights are inference tensors.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-llama")
        >>> result = osl.sensitivity(model, "1 1 1 1", method="hutchinson", probes=8)
        >>> result.norms.shape, result.points[-1]
        (torch.Size([1, 3, 5]), 'ln_final.hook_normalized')
    """
    if torch.is_inference_mode_enabled():
        raise IncompatibleRunError(
            "sensitivity() needs gradients and cannot run inside torch.inference_mode(); "
            "call it outside that block"
        )
    if norm is None:
        norm = "spectral" if method == "power" else "fro"
    analyzer = Sensitivity(
        method=method,
        probes=probes,
        norm=norm,
        layers=layers,
        wrt=wrt,
        position=position,
        seed=seed,
        chunk_size=chunk_size,
        memory_budget=memory_budget,
        iterations=iterations,
        tol=tol,
        attention=attention,
    )
    if attention == "split":
        raise ValueError(
            "attention='split' is for osl.trace (a doubled batch); pass 'full' or 'frozen'"
        )
    adapter = ModelAdapter(model)
    tokens = adapter.to_tokens(prompt, prepend_bos=prepend_bos)
    batch, n = int(tokens.shape[0]), int(tokens.shape[-1])
    recompute = memory.checkpoint_needed(adapter, [analyzer], batch, n, checkpoint)
    with gradient_run(model, analyzer, recompute) as rec:
        model(tokens)
        result = computed(rec, analyzer, recompute)
    if not isinstance(result, SensitivityResult):  # pragma: no cover - compute's type
        raise TypeError(type(result).__name__)
    return result


@contextmanager
def gradient_run(model: Any, analyzer: Sensitivity, recompute: bool) -> Iterator[Any]:
    """``attach`` for one gradient run: weights frozen, grad on, blocks maybe checkpointed."""
    with (
        attach(model, analyzer) as rec,
        frozen_parameters(model),
        torch.enable_grad(),
        checkpointed_blocks(model) if recompute else nullcontext(),
    ):
        yield rec


def computed(rec: Any, analyzer: Sensitivity, recompute: bool) -> Any:
    """The analyzer's result, with ``provenance.extra["checkpoint"]`` set.

    Raises:
        IncompatibleRunError: When a recomputed block differs from its first pass.
    """
    try:
        result = rec.result(analyzer)
    except CheckpointError as exc:
        raise IncompatibleRunError(
            "recomputing a block in the backward pass did not give the tensors of "
            "its first pass (a hook of yours that changes between calls, or a cache?); "
            f"pass checkpoint=False ({exc})"
        ) from exc
    extra = dict(result.provenance.extra, checkpoint=recompute)
    result.provenance = dataclasses.replace(result.provenance, extra=extra)
    return result
