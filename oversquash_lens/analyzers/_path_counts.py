"""Structural path counts in the causal graph (the paper's §5, Thm 5.1's path sum).

M is the n×n all-ones lower-triangular matrix: the causal graph where every position
attends to itself and to all earlier ones. Its powers count paths: (M^L)_{n,i} paths of
L steps lead from position i to position n, and ((M + I)^L)_{n,i} when the residual
connection is counted as a separate edge beside the self-attention edge.
"""

import math

import torch

from .._types import PosValues


def _check(n: int, n_layers: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer (sequence length), got {n!r}")
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 0:
        raise ValueError(f"n_layers must be a non-negative integer, got {n_layers!r}")


def _count(n: int, i: int, steps: int) -> int:
    """(M^steps)_{n,i}: C(n−i+steps−1, steps−1), and the identity for steps = 0."""
    if steps == 0:
        return int(i == n)
    return math.comb(n - i + steps - 1, steps - 1)


def path_counts(n: int, n_layers: int, *, residual: bool = False) -> tuple[int, ...]:
    """Number of causal paths from each position i = 1..n to the last position n.

    Without the residual edge: (M^L)_{n,i} = C(n − i + L − 1, L − 1). With it:
    ((M + I)^L)_{n,i} = Σ_k C(L, k)·(M^k)_{n,i}. Exact Python integers (they grow fast:
    use :func:`log_path_counts` for long sequences).

    Args:
        n: Sequence length (≥ 1).
        n_layers: Path length L (layers, ≥ 0; L = 0 gives the identity's last row).
        residual: Count the residual connection as an extra edge.

    Returns:
        Counts for positions 1..n (index 0 is position 1).

    Raises:
        ValueError: For n < 1 or n_layers < 0.

    Example:
        >>> path_counts(8, 3)
        (36, 28, 21, 15, 10, 6, 3, 1)
        >>> path_counts(3, 2, residual=True)
        (5, 4, 4)
    """
    _check(n, n_layers)
    if not residual:
        return tuple(_count(n, i, n_layers) for i in range(1, n + 1))
    binomials = [math.comb(n_layers, k) for k in range(n_layers + 1)]
    return tuple(sum(c * _count(n, i, k) for k, c in enumerate(binomials)) for i in range(1, n + 1))


def log_path_counts(n: int, n_layers: int, *, residual: bool = False) -> PosValues:
    """Natural logarithm of :func:`path_counts`, in float64, for long sequences.

    Uses log C(a, b) = lgamma(a+1) − lgamma(b+1) − lgamma(a−b+1); with ``residual`` the sum
    over k is a log-sum-exp. Positions with no path get −inf.

    Args:
        n: Sequence length (≥ 1).
        n_layers: Path length L (≥ 0).
        residual: Count the residual connection as an extra edge.

    Returns:
        ``[n]`` float64 (index 0 is position 1).

    Example:
        >>> log_path_counts(8, 3).exp().round().tolist()
        [36.0, 28.0, 21.0, 15.0, 10.0, 6.0, 3.0, 1.0]
    """
    _check(n, n_layers)
    gap = torch.arange(n - 1, -1, -1, dtype=torch.float64)  # n − i for i = 1..n

    def log_count(steps: int) -> PosValues:  # log (M^steps)_{n,i} = log C(gap+steps−1, steps−1)
        if steps == 0:
            return torch.where(gap == 0, torch.zeros_like(gap), torch.full_like(gap, -math.inf))
        log_gamma_steps = torch.lgamma(gap.new_tensor(float(steps)))  # same rounding
        return torch.lgamma(gap + steps) - log_gamma_steps - torch.lgamma(gap + 1.0)

    if not residual:
        return log_count(n_layers)
    total = torch.full((n,), -math.inf, dtype=torch.float64)
    for k in range(n_layers + 1):
        log_binomial = (
            math.lgamma(n_layers + 1) - math.lgamma(k + 1) - math.lgamma(n_layers - k + 1)
        )
        total = torch.logaddexp(total, log_count(k) + log_binomial)
    return total
