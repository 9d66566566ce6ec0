"""From a collapse curve D(n) to collapse lengths per floating-point format.

Model-free: these functions take lengths and values (from the synthetic layers, or
from a real model's measurements) and know nothing about where they came from.

With ``D(n) ≈ c/n`` (the Θ(1/n) rate of Section 4), ``D`` falls under a precision ``ε``
at ``n ≈ c/ε``: collapse lengths scale as ``1/ε``, so bf16 (2^-7) : fp16 (2^-10) is
1 : 8. :func:`predicted_collapse_length` extrapolates that way; :func:`first_length_below`
and :func:`crossing_length` read the answer off a measured curve.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..precision import FormatLike, machine_epsilon

__all__ = [
    "InverseLawFit",
    "crossing_length",
    "first_length_below",
    "fit_inverse_law",
    "predicted_collapse_length",
]

Numbers = Tensor | np.ndarray | Sequence[float] | Sequence[int]


@dataclass(frozen=True)
class InverseLawFit:
    """Least-squares fits of ``D(n)`` in log-log space.

    Attributes:
        coefficient: ``c`` of ``D ≈ c/n`` with the slope fixed at −1 (the geometric mean
            of ``n·D(n)``).
        slope: Free slope ``s`` of ``log D ≈ log c' + s·log n`` (−1 for a clean 1/n law).
        free_coefficient: ``c'`` of the free fit.
        n_points: How many points were fitted.
    """

    coefficient: float
    slope: float
    free_coefficient: float
    n_points: int

    def collapse_length(self, eps: float) -> float:
        """``c/ε``: where ``c/n`` falls to ``eps``."""
        return self.coefficient / eps


def _as_curve(lengths: Numbers, values: Numbers) -> tuple[Tensor, Tensor]:
    n = torch.as_tensor(np.asarray(lengths, dtype=np.float64))
    d = torch.as_tensor(np.asarray(values, dtype=np.float64))
    if n.ndim != 1 or n.shape != d.shape or n.numel() == 0:
        raise ValueError(
            f"lengths and values must be 1-D and of equal length, got {tuple(n.shape)} "
            f"and {tuple(d.shape)}"
        )
    if not bool((n[1:] > n[:-1]).all()) or not bool((n > 0).all()):
        raise ValueError("lengths must be positive and strictly increasing")
    if not bool(torch.isfinite(d).all()):
        raise ValueError("values must be finite")
    return n, d


def _epsilon(eps: float | FormatLike) -> float:
    value = float(eps) if isinstance(eps, int | float) else machine_epsilon(eps)
    if not value > 0:
        raise ValueError(f"the threshold must be > 0, got {value}")
    return value


def fit_inverse_law(lengths: Numbers, values: Numbers) -> InverseLawFit:
    """Fit ``D(n) ≈ c/n`` (slope fixed) and ``D(n) ≈ c'·n^s`` (free slope) in log space.

    Args:
        lengths: Lengths ``n`` (positive, increasing).
        values: ``D(n) > 0`` at those lengths.

    Returns:
        The fitted coefficients and slope.

    Raises:
        ValueError: For non-positive values, mismatched shapes or unsorted lengths.

    Example:
        >>> fit = fit_inverse_law([10, 100, 1000], [0.6, 0.06, 0.006])
        >>> round(fit.coefficient, 6), round(fit.slope, 6)
        (6.0, -1.0)
    """
    n, d = _as_curve(lengths, values)
    if not bool((d > 0).all()):
        raise ValueError("values must be > 0 to be fitted in log space")
    # Closed-form least squares with correctly rounded sums (math.fsum): the same curve
    # always gives the same bits (a LAPACK solve differed in the last bit between calls).
    x, y = n.log().tolist(), d.log().tolist()
    count = len(x)
    coefficient = math.exp(math.fsum(a + b for a, b in zip(x, y, strict=True)) / count)
    if count > 1:
        x_mean, y_mean = math.fsum(x) / count, math.fsum(y) / count
        spread = math.fsum((a - x_mean) ** 2 for a in x)
        slope = math.fsum((a - x_mean) * (b - y_mean) for a, b in zip(x, y, strict=True)) / spread
        intercept = y_mean - slope * x_mean
    else:
        intercept, slope = math.log(coefficient), -1.0
    return InverseLawFit(coefficient, float(slope), math.exp(intercept), count)


def predicted_collapse_length(lengths: Numbers, values: Numbers, eps: float | FormatLike) -> float:
    """Length at which a ``c/n`` law fitted to the curve reaches ``eps``: ``c/eps``.

    Args:
        lengths: Lengths ``n`` of the measured points (positive, increasing).
        values: Distances ``D(n) > 0``.
        eps: Threshold, or a format whose machine epsilon is the threshold
            (``"bfloat16"`` → 2^-7).

    Returns:
        The predicted collapse length (a real number, not rounded).

    Example:
        >>> round(predicted_collapse_length([10, 100], [0.6, 0.06], "bf16"), 6)  # 6 / 2^-7
        768.0
    """
    return fit_inverse_law(lengths, values).collapse_length(_epsilon(eps))


def first_length_below(lengths: Numbers, values: Numbers, eps: float | FormatLike) -> float:
    """First measured length from which the curve stays strictly below ``eps``.

    Args:
        lengths: Lengths (positive, increasing).
        values: The curve at those lengths.
        eps: Threshold, or a format whose machine epsilon is the threshold.

    Returns:
        That length, or ``inf`` when the last value is not below ``eps``.

    Example:
        >>> first_length_below([1, 2, 3, 4], [0.5, 0.05, 0.5, 0.05], 0.1)
        4.0
    """
    n, d = _as_curve(lengths, values)
    above = (d >= _epsilon(eps)).nonzero()
    if above.numel() == 0:
        return float(n[0])
    last_above = int(above[-1, 0])
    return math.inf if last_above == n.numel() - 1 else float(n[last_above + 1])


def crossing_length(lengths: Numbers, values: Numbers, eps: float | FormatLike) -> float:
    """Where the curve last falls through ``eps``, interpolated linearly in log-log space.

    Between the last point at or above ``eps`` and the next one (below it), assume a
    power law. Use this to read a crossing between grid points (e.g. "2^-7 near 500").

    Args:
        lengths: Lengths (positive, increasing).
        values: The curve at those lengths (> 0).
        eps: Threshold, or a format whose machine epsilon is the threshold.

    Returns:
        The interpolated length; ``lengths[0]`` if the whole curve is below ``eps``,
        ``inf`` if its last point is not.

    Example:
        >>> round(crossing_length([10, 1000], [0.1, 0.001], 0.01), 6)
        100.0
    """
    n, d = _as_curve(lengths, values)
    threshold = _epsilon(eps)
    if not bool((d > 0).all()):
        raise ValueError("values must be > 0 to interpolate in log space")
    above = (d >= threshold).nonzero()
    if above.numel() == 0:
        return float(n[0])
    i = int(above[-1, 0])
    if i == n.numel() - 1:
        return math.inf
    x0, x1 = math.log(float(n[i])), math.log(float(n[i + 1]))
    y0, y1 = math.log(float(d[i])), math.log(float(d[i + 1]))
    t = (math.log(threshold) - y0) / (y1 - y0)
    return math.exp(x0 + t * (x1 - x0))
