"""Rank correlations (Spearman's ρ, Kendall's τ-b), vectorized over leading axes.

Pure functions on tensors, in float64; ties get average ranks (Spearman) and the τ-b
correction (Kendall), as in the usual statistics packages.
"""

import torch
from jaxtyping import Float, Float64
from torch import Tensor


def average_ranks(x: Float[Tensor, " *batch n"]) -> Float64[Tensor, " *batch n"]:
    """Ranks 1..n along the last axis, ties sharing their average rank.

    Example:
        >>> average_ranks(torch.tensor([10.0, 30.0, 20.0, 30.0])).tolist()
        [1.0, 3.5, 2.0, 3.5]
    """
    x = x.to(torch.float64)
    # rank of each element = (# smaller) + (# equal + 1) / 2, via sorting: O(n log n).
    sorted_x, _ = torch.sort(x, dim=-1)
    smaller = torch.searchsorted(sorted_x.contiguous(), x.contiguous(), right=False)
    not_larger = torch.searchsorted(sorted_x.contiguous(), x.contiguous(), right=True)
    return (smaller + not_larger + 1).to(torch.float64) / 2


def spearman(
    x: Float[Tensor, " *batch n"], y: Float[Tensor, " *batch n"]
) -> Float64[Tensor, " *batch"]:
    """Spearman's rank correlation along the last axis (NaN if either side is constant).

    Example:
        >>> round(float(spearman(torch.tensor([1.0, 2, 3, 4]), torch.tensor([1.0, 3, 2, 4]))), 6)
        0.8
    """
    rx, ry = average_ranks(x), average_ranks(y)
    rx = rx - rx.mean(-1, keepdim=True)
    ry = ry - ry.mean(-1, keepdim=True)
    denominator = torch.sqrt((rx * rx).sum(-1) * (ry * ry).sum(-1))
    return (rx * ry).sum(-1) / denominator


def kendall(
    x: Float[Tensor, " *batch n"], y: Float[Tensor, " *batch n"], *, block: int = 1024
) -> Float64[Tensor, " *batch"]:
    """Kendall's τ-b along the last axis (NaN if either side is constant).

    Counts concordant and discordant pairs in blocks of rows, so memory stays
    ``O(block × n)`` for long sequences.

    Example:
        >>> round(float(kendall(torch.tensor([1.0, 2, 3, 4]), torch.tensor([1.0, 3, 2, 4]))), 6)
        0.666667
    """
    x, y = x.to(torch.float64), y.to(torch.float64)
    n = x.shape[-1]
    signed = torch.zeros(x.shape[:-1], dtype=torch.float64)
    tied_x = torch.zeros_like(signed)
    tied_y = torch.zeros_like(signed)
    for start in range(0, n, block):
        stop = min(start + block, n)
        dx = torch.sign(x[..., start:stop, None] - x[..., None, :])
        dy = torch.sign(y[..., start:stop, None] - y[..., None, :])
        signed += (dx * dy).sum((-1, -2))
        tied_x += (dx == 0).sum((-1, -2)).to(torch.float64)
        tied_y += (dy == 0).sum((-1, -2)).to(torch.float64)
    # Each unordered pair was counted twice; the diagonal contributes n ties to each side.
    pairs = n * (n - 1) / 2
    n_x = pairs - (tied_x - n) / 2
    n_y = pairs - (tied_y - n) / 2
    return (signed / 2) / torch.sqrt(n_x * n_y)
