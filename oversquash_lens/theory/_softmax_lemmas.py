"""Softmax facts behind representational collapse: Lemma B.1, Lemma B.2 (Fig 9), Prop. B.4.

Pure functions on float64 tensors. Total variation here is ``Σ|μ − ν|`` **without** the
factor 1/2, as in the paper.
"""

import math

import torch

from ._types import ScoreRow

__all__ = [
    "ALTERNATING_TV_LIMIT",
    "alternating_tv",
    "fig9_total_variation",
    "lemma_b1",
]

ALTERNATING_TV_LIMIT: float = 2.0 * (math.e - 1.0) / (math.e + 1.0)
"""Prop. B.4's constant 2(e − 1)/(e + 1) = 2·tanh(1/2) ≈ 0.9242."""


def _total_variation(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Σ|p − q| over the last dimension (no factor 1/2)."""
    return (p - q).abs().sum(dim=-1)


def lemma_b1(a: ScoreRow, b: float, c: float) -> tuple[float, float]:
    """Last-token weights of ``softmax([a, c])`` and ``softmax([a, b, c])`` (Lemma B.1).

    Appending any logit ``b`` before the last position strictly lowers the last token's
    weight, and with logits bounded by ``M`` both weights are at most ``e^{2M}/n``
    (``n`` = length of ``[a, c]``), so both tend to 0 as the sequence grows.

    Args:
        a: The first ``n − 1`` logits ``[pos]`` (may be empty).
        b: The extra logit inserted before the last one.
        c: The last logit.

    Returns:
        ``(softmax([a, c])[-1], softmax([a, b, c])[-1])``, computed in float64.

    Example:
        >>> short, long = lemma_b1(torch.zeros(9), 0.0, 0.0)
        >>> round(short, 6), round(long, 6)
        (0.1, 0.090909)
    """
    a64 = a.detach().to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(a64).all() or not (math.isfinite(b) and math.isfinite(c)):
        raise ValueError("lemma_b1 needs finite logits; replace inf/nan entries first")
    last = torch.tensor([c], dtype=torch.float64)
    short = torch.cat([a64, last])
    long = torch.cat([a64, torch.tensor([b], dtype=torch.float64), last])
    # exp(c - logsumexp) is the stable form of e^c / Σ e^x.
    w_short = math.exp(c - float(torch.logsumexp(short, dim=0)))
    w_long = math.exp(c - float(torch.logsumexp(long, dim=0)))
    return w_short, w_long


def fig9_total_variation(
    n: int,
    seeds: int = 5,
    noise_len: int = 200,
    noise: float = 0.1,
    *,
    first_seed: int = 0,
) -> float:
    """Lemma B.2 / Fig 9: TV between the softmaxes of a vector and a perturbed copy.

    For each seed ``s`` in ``first_seed, ..., first_seed + seeds − 1`` (one
    ``torch.Generator`` each, so results are reproducible and independent of each
    other): ``x_i ~ U[0, 1]`` for ``i < n``, ``x* = x`` plus ``U[0, noise]`` noise on the
    first ``noise_len`` entries, and ``TV = Σ|softmax(x) − softmax(x*)|``. The mean over
    seeds decays like ``≈ 2·noise_len·E[noise]/n`` (≈ 20/n with the defaults): a
    perturbation of a fixed number of logits is washed out by the growing sum.

    Args:
        n: Vector length (``n ≥ noise_len``).
        seeds: How many seeds to average over.
        noise_len: How many leading entries get noise.
        noise: Upper end of the uniform noise.
        first_seed: The first seed.

    Returns:
        The mean total variation over seeds.

    Raises:
        ValueError: If ``n < noise_len``, ``seeds < 1`` or ``noise < 0``.

    Example:
        >>> round(fig9_total_variation(2000), 4)  # paper, Fig 9: ≈ 0.0093
        0.0091
    """
    if noise_len < 0 or n < max(noise_len, 1):
        raise ValueError(f"need n >= noise_len >= 0 and n >= 1, got n={n}, noise_len={noise_len}")
    if seeds < 1:
        raise ValueError(f"seeds is a count and must be >= 1, got {seeds}")
    if not noise >= 0:
        raise ValueError(f"noise is the upper end of U[0, noise] and must be >= 0, got {noise}")
    total = 0.0
    for s in range(first_seed, first_seed + seeds):
        gen = torch.Generator().manual_seed(s)
        x = torch.rand(n, generator=gen, dtype=torch.float64)
        x_star = x.clone()
        x_star[:noise_len] += noise * torch.rand(noise_len, generator=gen, dtype=torch.float64)
        total += float(_total_variation(torch.softmax(x, 0), torch.softmax(x_star, 0)))
    return total / seeds


def alternating_tv(n: int, gap: float = 1.0) -> float:
    """Prop. B.4: TV between ``softmax(gap, 0, gap, 0, ...)`` and ``softmax(0, gap, 0, ...)``.

    Without positional decay the two alternating patterns stay apart: for every even
    ``n`` the TV equals ``2·tanh(gap/2)`` exactly (``gap = 1``:
    :data:`ALTERNATING_TV_LIMIT` = 2(e − 1)/(e + 1) ≈ 0.9242); for odd ``n`` it tends to
    the same value.

    Args:
        n: Sequence length (``n ≥ 1``).
        gap: Difference between the high and low logits.

    Returns:
        The total variation (no factor 1/2), computed in float64.

    Example:
        >>> round(alternating_tv(10), 4), round(ALTERNATING_TV_LIMIT, 4)
        (0.9242, 0.9242)
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not math.isfinite(gap):
        raise ValueError(f"gap must be finite, got {gap}")
    high = (torch.arange(n) % 2 == 0).to(torch.float64) * gap
    low = (torch.arange(n) % 2 == 1).to(torch.float64) * gap
    return float(_total_variation(torch.softmax(high, 0), torch.softmax(low, 0)))
