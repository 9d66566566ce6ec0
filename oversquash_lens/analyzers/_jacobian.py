"""Norms of per-position Jacobian blocks from vector-Jacobian products (pure math).

An output ``h`` ``[batch, d_out]`` depends on an input ``x`` ``[batch, pos, d_in]``; the
Jacobian block of position i is ``J_i = ∂h / ∂x_i`` (``d_out × d_in``). Batch rows are
independent (a transformer never mixes them), so one cotangent ``v`` ``[batch, d_out]``
gives ``vᵀ J_i`` of every row and every position in a single backward pass.

Everything here takes a *VJP function* (``cotangents [chunk, batch, d_out] → grads
[chunk, batch, pos, d_in]``) and, for power iteration, a *JVP function* (``tangents
[chunk, batch, pos, d_in] → [chunk, batch, d_out]``); :func:`graph_vjp` and
:func:`graph_jvp` build them from a recorded autograd graph, and tests build them from
explicit matrices. Norms are accumulated in float64 whatever the model's dtype.

Strategies:

- **exact Frobenius** (:func:`frobenius_exact`): ``‖J_i‖_F² = Σ_o ‖e_oᵀ J_i‖²`` over the
  ``d_out`` basis vectors: ``d_out`` VJPs give every position at once.
- **Hutchinson** (:func:`hutchinson`): for ``g ~ N(0, I)``, ``E ‖gᵀ J_i‖² = ‖J_i‖_F²``
  for every i simultaneously; ``k`` probes give the mean and its standard error.
- **exact spectral** (:func:`jacobian_blocks` + :func:`spectral_from_blocks`): the same
  ``d_out`` VJPs, kept, then ``‖J_i‖₂`` by SVD (memory ``batch·pos·d_out·d_in``).
- **power iteration** (:func:`spectral_power`): ``u ← J_iᵀ J_i u / ‖·‖`` per position
  with one JVP and one VJP per step (``pos × iterations`` of each; no big memory).
"""

import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from jaxtyping import Float, Float64
from torch import Tensor

from .._types import Cotangents, InputGrads, PositionNorms

VJP = Callable[[Tensor], Tensor]  # [chunk, batch, d_out] -> [chunk, batch, pos, d_in]
JVP = Callable[[Tensor], Tensor]  # [chunk, batch, pos, d_in] -> [chunk, batch, d_out]

# vmap over the backward graph (is_grads_batched) falls back to a per-sample loop for
# the few ops without a batching rule, and says so with this warning; the numbers are
# the same, only slower, so it is silenced where we batch on purpose.
_VMAP_FALLBACK = r"There is a performance drop because we have not yet implemented"


def _chunks(total: int, size: int) -> Iterator[range]:
    if size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {size}")
    for start in range(0, total, size):
        yield range(start, min(start + size, total))


def graph_vjp(output: Tensor, inputs: Tensor) -> VJP:
    """A VJP function over a recorded graph, ``output`` ``[batch, d_out]`` ← ``inputs``.

    A chunk of one cotangent is a plain backward pass; larger chunks are one vmapped
    backward (``torch.autograd.grad(is_grads_batched=True)``). The graph is retained, so
    the function can be called any number of times. Parameters' ``.grad`` is never touched.

    Args:
        output: A tensor computed from ``inputs`` with autograd recording.
        inputs: The tensor to differentiate with respect to, ``[batch, pos, d_in]``.

    Returns:
        ``vjp(cotangents [chunk, batch, d_out]) -> [chunk, batch, pos, d_in]``.

    Example:
        >>> import torch
        >>> x = torch.randn(1, 3, 2, requires_grad=True)
        >>> vjp = graph_vjp(2 * x.sum(dim=1), x)
        >>> vjp(torch.ones(1, 1, 2))[0, 0]
        tensor([[2., 2.],
                [2., 2.],
                [2., 2.]])
    """

    def vjp(cotangents: Tensor) -> Tensor:
        batched = cotangents.shape[0] > 1
        grad_outputs = cotangents if batched else cotangents[0]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_VMAP_FALLBACK)
            (grads,) = torch.autograd.grad(
                output,
                inputs,
                grad_outputs,
                retain_graph=True,
                is_grads_batched=batched,
                allow_unused=True,
                materialize_grads=True,
            )
        return grads if batched else grads.unsqueeze(0)

    return vjp


def graph_jvp(output: Tensor, inputs: Tensor) -> JVP:
    """A JVP function over a recorded graph, by the double-backward trick.

    ``g(v) = Jᵀ v`` is built once with ``create_graph=True`` (linear in a dummy ``v``);
    then ``J u = ∂(uᵀ g) / ∂v``, one more backward per call. Every op on the path must
    support double backward (fused attention kernels may not).

    Args:
        output: ``[batch, d_out]``, computed from ``inputs``.
        inputs: ``[batch, pos, d_in]``.

    Returns:
        ``jvp(tangents [chunk, batch, pos, d_in]) -> [chunk, batch, d_out]``.

    Example:
        >>> import torch
        >>> x = torch.randn(1, 3, 2, requires_grad=True)
        >>> jvp = graph_jvp(2 * x.sum(dim=1), x)
        >>> jvp(torch.ones(1, 1, 3, 2))
        tensor([[[6., 6.]]])
    """
    dummy = torch.zeros_like(output, requires_grad=True)
    (transposed,) = torch.autograd.grad(output, inputs, dummy, create_graph=True)

    def jvp(tangents: Tensor) -> Tensor:
        batched = tangents.shape[0] > 1
        grad_outputs = tangents if batched else tangents[0]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_VMAP_FALLBACK)
            (out,) = torch.autograd.grad(
                transposed,
                dummy,
                grad_outputs,
                retain_graph=True,
                is_grads_batched=batched,
                allow_unused=True,
                materialize_grads=True,
            )
        return out if batched else out.unsqueeze(0)

    return jvp


def _basis(rows: range, batch: int, d_out: int, like: Tensor) -> Cotangents:
    """Cotangents e_o for o in ``rows``, the same for every batch row."""
    eye = torch.zeros(len(rows), batch, d_out, dtype=like.dtype, device=like.device)
    index = torch.arange(len(rows), device=like.device)
    eye[index, :, torch.tensor(list(rows), device=like.device)] = 1
    return eye


def _sq_norms(grads: InputGrads) -> Float64[Tensor, "chunk batch pos"]:
    return torch.linalg.vector_norm(grads, dim=-1, dtype=torch.float64).square()


def frobenius_exact(
    vjp: VJP, *, batch: int, d_out: int, like: Tensor, chunk_size: int = 1
) -> PositionNorms:
    """Exact ``‖J_i‖_F`` for every position from ``d_out`` basis VJPs.

    Args:
        vjp: See the module docstring.
        batch: Batch size of the output.
        d_out: Output width (number of VJPs).
        like: A tensor with the dtype and device cotangents must have (the output).
        chunk_size: Cotangents per backward pass (1: a loop of plain backward passes).

    Returns:
        ``[batch, pos]`` float64 Frobenius norms.

    Example:
        >>> import torch
        >>> x = torch.randn(1, 3, 2, requires_grad=True)
        >>> out = 3 * x[:, 1]  # J_1 = 3 I, the other blocks are zero
        >>> frobenius_exact(graph_vjp(out, x), batch=1, d_out=2, like=out)
        tensor([[0.0000, 4.2426, 0.0000]], dtype=torch.float64)
    """
    total: Tensor | None = None
    for rows in _chunks(d_out, chunk_size):
        part = _sq_norms(vjp(_basis(rows, batch, d_out, like))).sum(dim=0)
        total = part if total is None else total + part
    if total is None:
        raise ValueError("d_out must be at least 1")
    return total.sqrt()


def jacobian_blocks(
    vjp: VJP, *, batch: int, d_out: int, like: Tensor, chunk_size: int = 1
) -> Float[Tensor, "batch pos d_out d_in"]:
    """Every block ``J_i`` from ``d_out`` basis VJPs: ``[batch, pos, d_out, d_in]``.

    Example:
        >>> import torch
        >>> x = torch.randn(1, 2, 3, requires_grad=True)
        >>> out = x[:, 0, :2] * 2
        >>> jacobian_blocks(graph_vjp(out, x), batch=1, d_out=2, like=out)[0, 0]
        tensor([[2., 0., 0.],
                [0., 2., 0.]])
    """
    rows = [vjp(_basis(r, batch, d_out, like)) for r in _chunks(d_out, chunk_size)]
    return torch.cat(rows, dim=0).permute(1, 2, 0, 3)  # [d_out, b, pos, d_in] -> [b, pos, ...]


def spectral_from_blocks(blocks: Float[Tensor, "batch pos d_out d_in"]) -> PositionNorms:
    """``‖J_i‖₂`` (largest singular value) of each block, computed in float64.

    Example:
        >>> import torch
        >>> spectral_from_blocks(torch.diag(torch.tensor([3.0, -4.0]))[None, None])
        tensor([[4.]], dtype=torch.float64)
    """
    return torch.linalg.matrix_norm(blocks.to(torch.float64), ord=2)


@dataclass(frozen=True)
class HutchinsonEstimate:
    """Hutchinson estimates of ``‖J_i‖_F²`` and of ``‖J_i‖_F``.

    Attributes:
        squared: ``[batch, pos]`` mean of ``‖g_jᵀ J_i‖²`` over the probes (unbiased).
        squared_stderr: Its standard error, ``std(ddof=1) / √k``.
        norm: ``√squared`` (consistent; biased low by about ``Var(squared) / (8 m^{3/2})``,
            negligible next to the standard error for k ≥ 16).
        norm_stderr: Delta-method standard error of ``norm``: ``squared_stderr / (2 norm)``
            (0 where the estimate is 0).
    """

    squared: PositionNorms
    squared_stderr: PositionNorms
    norm: PositionNorms
    norm_stderr: PositionNorms


def hutchinson(
    vjp: VJP,
    *,
    batch: int,
    d_out: int,
    like: Tensor,
    probes: int,
    generator: torch.Generator,
    chunk_size: int = 1,
) -> HutchinsonEstimate:
    """Estimate ``‖J_i‖_F`` at every position with ``probes`` Gaussian probes.

    Each probe ``g ~ N(0, I_{d_out})`` (one per batch row) costs one VJP and gives, for
    every position at once, ``‖gᵀ J_i‖²`` with expectation ``‖J_i‖_F²`` and variance
    ``2 ‖J_i J_iᵀ‖_F²``. Probes are drawn on the CPU from ``generator`` in float64 and then
    cast, so a seed gives the same probes on every device.

    Args:
        vjp: See the module docstring.
        batch: Batch size.
        d_out: Output width.
        like: Tensor giving the cotangents' dtype and device.
        probes: Number of probes k (at least 2, for a standard error).
        generator: A seeded CPU generator.
        chunk_size: Probes per backward pass.

    Returns:
        The estimates with standard errors.

    Example:
        >>> import torch
        >>> x = torch.randn(1, 3, 2, requires_grad=True)
        >>> out = 3 * x[:, 1]
        >>> est = hutchinson(graph_vjp(out, x), batch=1, d_out=2, like=out, probes=500,
        ...                  generator=torch.Generator().manual_seed(0))
        >>> bool(abs(est.squared[0, 1] - 18) < 4 * est.squared_stderr[0, 1])
        True
    """
    if probes < 2:
        raise ValueError(f"probes must be at least 2 to give a standard error, got {probes}")
    samples: list[Tensor] = []
    for rows in _chunks(probes, chunk_size):
        g = torch.randn(len(rows), batch, d_out, generator=generator, dtype=torch.float64)
        samples.append(_sq_norms(vjp(g.to(dtype=like.dtype, device=like.device))).cpu())
    stacked = torch.cat(samples, dim=0)  # [k, batch, pos]
    squared = stacked.mean(dim=0)
    squared_stderr = stacked.std(dim=0, correction=1) / math.sqrt(probes)
    norm = squared.sqrt()
    safe = torch.where(norm > 0, norm, torch.ones_like(norm))
    norm_stderr = torch.where(norm > 0, squared_stderr / (2 * safe), torch.zeros_like(norm))
    return HutchinsonEstimate(squared, squared_stderr, norm, norm_stderr)


def spectral_power(
    vjp: VJP,
    jvp: JVP,
    *,
    batch: int,
    pos: int,
    d_in: int,
    like: Tensor,
    generator: torch.Generator,
    iterations: int = 100,
    tol: float = 1e-6,
    chunk_size: int = 1,
) -> PositionNorms:
    """``‖J_i‖₂`` at every position by power iteration on ``J_iᵀ J_i``.

    Per position: ``w = J_i u`` (one JVP), ``u ← J_iᵀ w / ‖J_iᵀ w‖`` (one VJP, of which
    only position i is used), estimate ``σ = ‖J_i u‖`` for unit ``u``: a lower bound that
    rises to ``‖J_i‖₂``, geometrically at rate ``(σ₂/σ₁)²``. Positions are processed
    ``chunk_size`` at a time; a chunk stops when every estimate in it changed by less than
    ``tol`` (relative) in one step, or after ``iterations`` steps. Cost: ``pos ×
    steps`` JVPs and VJPs; use :func:`jacobian_blocks` when ``d_out`` is smaller than that.

    Args:
        vjp: See the module docstring.
        jvp: See the module docstring.
        batch: Batch size.
        pos: Number of input positions.
        d_in: Input width.
        like: Tensor giving the dtype and device of tangents (the input).
        generator: Seeded CPU generator for the starting vectors.
        iterations: Maximum power steps.
        tol: Relative change of σ that counts as converged.
        chunk_size: Positions per batched JVP/VJP.

    Returns:
        ``[batch, pos]`` float64 spectral norms.

    Example:
        >>> import torch
        >>> x = torch.randn(1, 2, 2, requires_grad=True)
        >>> out = x[:, 0] @ torch.tensor([[3.0, 1.0], [0.0, 2.0]]).T  # σ₁ = 3.26
        >>> sigma = spectral_power(graph_vjp(out, x), graph_jvp(out, x), batch=1, pos=2,
        ...                        d_in=2, like=x, generator=torch.Generator().manual_seed(0))
        >>> [round(float(s), 4) for s in sigma[0]]
        [3.2566, 0.0]
    """
    start = torch.randn(batch, pos, d_in, generator=generator, dtype=torch.float64)
    start = start / torch.linalg.vector_norm(start, dim=-1, keepdim=True)
    sigma = torch.zeros(batch, pos, dtype=torch.float64)
    for positions in _chunks(pos, chunk_size):
        index = torch.tensor(list(positions))
        local = torch.arange(len(positions))
        u = start[:, index].transpose(0, 1).to(dtype=like.dtype, device=like.device)
        previous = torch.zeros(len(positions), batch, dtype=torch.float64)
        for _ in range(iterations):
            tangents = torch.zeros(
                len(positions), batch, pos, d_in, dtype=like.dtype, device=like.device
            )
            tangents[local, :, index.to(like.device)] = u
            w = jvp(tangents)  # [c, batch, d_out]
            estimate = torch.linalg.vector_norm(w, dim=-1, dtype=torch.float64).cpu()
            back = vjp(w)[local, :, index.to(like.device)]  # [c, batch, d_in]
            length = torch.linalg.vector_norm(back, dim=-1, keepdim=True)
            u = torch.where(length > 0, back / torch.where(length > 0, length, 1), u)
            change = (estimate - previous).abs()
            previous = estimate
            if bool((change <= tol * estimate).all()):
                break
        sigma[:, index] = previous.T
    return sigma


def pointwise_spectral(
    vjp: VJP,
    jvp: JVP,
    *,
    like: Tensor,
    generator: torch.Generator,
    iterations: int = 100,
    tol: float = 1e-6,
    identity: bool = False,
) -> PositionNorms:
    """``‖J_i‖₂`` of a position-wise map at every position at once, by power iteration.

    A position-wise map (a norm, an MLP) has a block-diagonal Jacobian: position i's
    output depends on position i's input only. One JVP and one VJP with a tangent at
    *every* position therefore advance the power iteration of every block together
    (``tangents [1, batch, pos, d_in]``). With ``identity=True`` the norm is that of
    ``I + J_i`` (a residual sub-block ``x + f(x)``). Estimates approach ``‖J_i‖₂`` from
    below; iteration stops when every one changed by at most ``tol`` (relative).

    Args:
        vjp: ``[1, batch, pos, d_out] → [1, batch, pos, d_in]`` over the map's graph.
        jvp: ``[1, batch, pos, d_in] → [1, batch, pos, d_out]``.
        like: The input, ``[batch, pos, d_in]`` (dtype and device of tangents).
        generator: Seeded CPU generator for the starting vectors.
        iterations: Most power steps.
        tol: Relative change that counts as converged.
        identity: Measure ``‖I + J_i‖₂`` (needs ``d_in == d_out``).

    Returns:
        ``[batch, pos]`` float64.

    Example:
        >>> import torch
        >>> x = torch.randn(1, 3, 2, requires_grad=True)
        >>> out = x * torch.tensor([3.0, -1.0])  # J_i = diag(3, -1) at every position
        >>> sigma = pointwise_spectral(graph_vjp(out, x), graph_jvp(out, x), like=x,
        ...                            generator=torch.Generator().manual_seed(0))
        >>> [round(float(s), 6) for s in sigma[0]]
        [3.0, 3.0, 3.0]
    """
    start = torch.randn(like.shape, generator=generator, dtype=torch.float64)
    u = (start / torch.linalg.vector_norm(start, dim=-1, keepdim=True)).to(like)
    previous = torch.zeros(like.shape[:-1], dtype=torch.float64)
    estimate = previous
    for _ in range(iterations):
        w = jvp(u[None])[0] + (u if identity else 0)
        estimate = torch.linalg.vector_norm(w, dim=-1, dtype=torch.float64).cpu()
        back = vjp(w[None])[0] + (w if identity else 0)
        length = torch.linalg.vector_norm(back, dim=-1, keepdim=True)
        u = torch.where(length > 0, back / torch.where(length > 0, length, 1), u)
        if bool(((estimate - previous).abs() <= tol * estimate).all()):
            break
        previous = estimate
    return estimate
