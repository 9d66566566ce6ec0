"""VJPs and JVPs of the parts of a doubled batch: full, frozen and score-path Jacobians.

A split run (``analyzers._split``) stacks the same input twice, the second copy with its
attention patterns held constant. These wrap that graph's VJP or JVP so the estimators of
``analyzers._jacobian`` measure one part, or all three from one backward pass.
"""

import torch
from torch import Tensor

from ._jacobian import JVP, VJP


def paired_vjp(vjp: VJP, batch: int) -> VJP:
    """Full, frozen and score-path VJPs of a doubled batch, from one backward pass.

    The graph's batch is two copies of the same input: rows ``[0, batch)`` computed with
    full attention, rows ``[batch, 2·batch)`` with frozen attention. One cotangent ``c``
    ``[chunk, batch, d_out]`` is sent to both copies; the rows of a transformer do not
    mix, so the single backward pass gives ``cᵀJ_full`` and ``cᵀJ_frozen``, and their
    difference ``cᵀ(J_full − J_frozen)``.

    Returns:
        ``vjp(c [chunk, batch, d_out]) -> [chunk, 3·batch, pos, d_in]``: full rows, then
        frozen rows, then their difference.

    Example:
        >>> import torch
        >>> from oversquash_lens.analyzers._jacobian import graph_jvp, graph_vjp
        >>> x = torch.ones(2, 1, 1, requires_grad=True)
        >>> out = x[:, 0] * torch.tensor([[3.0], [2.0]])  # "full" 3, "frozen" 2
        >>> paired_vjp(graph_vjp(out, x), 1)(torch.ones(1, 1, 1)).flatten().tolist()
        [3.0, 2.0, 1.0]
    """

    def split(cotangents: Tensor) -> Tensor:
        grads = vjp(torch.cat([cotangents, cotangents], dim=1))
        full, frozen = grads[:, :batch], grads[:, batch:]
        return torch.cat([full, frozen, full - frozen], dim=1)

    return split


def split_part(vjp: VJP, jvp: JVP, batch: int, part: str) -> tuple[VJP, JVP]:
    """The VJP and JVP of one part of a doubled batch: ``"full"``, ``"frozen"``, ``"scores"``.

    ``"scores"`` is ``J_full − J_frozen``: the same vector goes into both copies and the
    frozen copy's result is subtracted.

    Example:
        >>> import torch
        >>> from oversquash_lens.analyzers._jacobian import graph_jvp, graph_vjp
        >>> x = torch.ones(2, 1, 1, requires_grad=True)
        >>> out = x[:, 0] * torch.tensor([[3.0], [2.0]])
        >>> v, j = split_part(graph_vjp(out, x), graph_jvp(out, x), 1, "scores")
        >>> v(torch.ones(1, 1, 1)).item(), j(torch.ones(1, 1, 1, 1)).item()
        (1.0, 1.0)
    """
    if part not in ("full", "frozen", "scores"):
        raise ValueError(f"part must be 'full', 'frozen' or 'scores', got {part!r}")

    def spread(vectors: Tensor) -> Tensor:
        zero = torch.zeros_like(vectors)
        first = zero if part == "frozen" else vectors
        second = zero if part == "full" else vectors
        return torch.cat([first, second], dim=1)

    def combine(out: Tensor) -> Tensor:
        full, frozen = out[:, :batch], out[:, batch:]
        return {"full": full, "frozen": frozen, "scores": full - frozen}[part]

    return (lambda c: combine(vjp(spread(c)))), (lambda u: combine(jvp(spread(u))))
