"""Frozen attention and split runs: the hooks that hold patterns fixed, and the parts.

A *split* run is a doubled batch — the same tokens twice — whose second copy runs with
every attention pattern held constant. One backward pass then gives the full Jacobian,
the frozen-attention (value-path) Jacobian and their difference, the part that flows
through the attention scores (``_jacobian_split.paired_vjp``).
"""

import dataclasses
from typing import Any

import torch
from torch import Tensor

from .._errors import IncompatibleRunError
from ._base import RunRecord
from ._sensitivity_result import SensitivityResult


def freeze(activation: Tensor, hook: Any) -> Tensor:
    """Hold a pattern constant: the same values, no gradient through the scores."""
    return activation.detach()


def freeze_second_half(activation: Tensor, hook: Any) -> Tensor:
    """Frozen attention for the second half of the batch only (``attention="split"``)."""
    half = activation.shape[0] // 2
    return torch.cat([activation[:half], activation[half:].detach()])


def check_split(run: RunRecord) -> None:
    tokens = run.tokens
    if tokens is None or tokens.shape[0] % 2 or not torch.equal(*tokens.chunk(2)):
        raise IncompatibleRunError(
            f"attention='split' needs a run whose batch is two copies of the same tokens "
            f"(run {run.index} is not); use attention='full' or 'frozen' on other runs"
        )


def split_tokens(tokens: Tensor | None) -> Tensor | None:
    """The tokens of a split run, one copy per part (full, frozen, scores)."""
    if tokens is None:
        return None
    first = tokens[: tokens.shape[0] // 2]
    return torch.cat([first, first, first])


def split_result(result: SensitivityResult) -> tuple[SensitivityResult, ...]:
    """The full, frozen and score-path parts of an ``attention="split"`` result.

    The score part is ``‖J_full − J_frozen‖``: the sensitivity that flows through the
    attention scores (every path that passes a pattern's dependence on its input at
    least once). Norms are not additive: ``full ≤ frozen + scores`` by the triangle
    inequality.
    """
    if result.attention != "split":
        raise ValueError(f"expected an attention='split' result, got {result.attention!r}")
    batch = result.norms.shape[0] // 3
    tokens = result.tokens[:batch] if result.tokens is not None else None
    parts = []
    for index, label in enumerate(("full", "frozen", "scores")):
        rows = slice(index * batch, (index + 1) * batch)
        parts.append(
            dataclasses.replace(
                result,
                attention=label,
                norms=result.norms[rows],
                stderr=result.stderr[rows] if result.stderr is not None else None,
                tokens=tokens,
            )
        )
    return tuple(parts)
