"""Distances between two last-token representations, and what a format can tell apart.

Pure functions on tensors. Every distance is computed in float64 from the values the
model produced (PAPER.md §2, DESIGN.md: "representational distances are computed in
float64 from the stored tensors").
"""

import math
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Float64
from torch import Tensor

from ..precision import FormatLike, get_format, round_to_format, ulp_distance

METRICS = ("l1", "l2", "linf", "cosine")


def distances(
    a: Float[Tensor, " *shape d"], b: Float[Tensor, " *shape d"]
) -> Float64[Tensor, " *shape metric"]:
    """L1, L2, L∞ and cosine distance between ``a`` and ``b`` along the last axis.

    The cosine distance is ``1 − cos(a, b)`` (computed without cancellation); it is 0
    when both vectors are zero and 1 when only one of them is.

    Args:
        a: ``[..., d]`` any floating dtype.
        b: ``[..., d]`` same shape.

    Returns:
        float64 ``[..., 4]`` in the order of :data:`METRICS`.

    Example:
        >>> distances(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))
        tensor([2.0000, 1.4142, 1.0000, 1.0000], dtype=torch.float64)
    """
    if a.shape != b.shape:
        raise ValueError(f"cannot compare shapes {tuple(a.shape)} and {tuple(b.shape)}")
    a64, b64 = a.to(torch.float64), b.to(torch.float64)
    diff = a64 - b64
    l1 = diff.abs().sum(-1)
    l2 = torch.linalg.vector_norm(diff, dim=-1)
    linf = diff.abs().amax(-1) if diff.shape[-1] else torch.zeros_like(l1)
    na, nb = torch.linalg.vector_norm(a64, dim=-1), torch.linalg.vector_norm(b64, dim=-1)
    both_zero = (na == 0) & (nb == 0)
    one_zero = (na == 0) ^ (nb == 0)
    # 1 − cos = ‖â − b̂‖² / 2 on unit vectors: exact 0 for equal vectors and no
    # cancellation for nearly equal ones (the interesting case here).
    tiny = torch.finfo(torch.float64).tiny
    unit_a, unit_b = a64 / na.clamp_min(tiny)[..., None], b64 / nb.clamp_min(tiny)[..., None]
    half_chord = ((unit_a - unit_b) ** 2).sum(-1) / 2
    cosine = torch.where(both_zero, 0.0, torch.where(one_zero, 1.0, half_chord))
    return torch.stack([l1, l2, linf, cosine], dim=-1)


@dataclass(frozen=True)
class FormatComparison:
    """What a number format can tell apart between two representations.

    Attributes:
        bitwise_equal: ``[...]`` every element identical after rounding to the format.
        ulps: ``[...]`` largest element-wise distance in units in the last place.
        linf: ``[...]`` L∞ distance of the rounded values.
        eps_ratio: ``[...]`` ``linf`` divided by the format's machine epsilon.
    """

    bitwise_equal: Bool[Tensor, " *shape"]
    ulps: Float64[Tensor, " *shape"]
    linf: Float64[Tensor, " *shape"]
    eps_ratio: Float64[Tensor, " *shape"]


def compare_in_format(
    a: Float[Tensor, " *shape d"], b: Float[Tensor, " *shape d"], fmt: FormatLike
) -> FormatComparison:
    """Round both sides to ``fmt`` and compare them there.

    Args:
        a: ``[..., d]`` representations.
        b: ``[..., d]`` the representations they are compared with.
        fmt: Any format :func:`~oversquash_lens.get_format` accepts.

    Example:
        >>> x = torch.tensor([[1.0, 2.0]])
        >>> compare_in_format(x, x + 2**-12, "bfloat16").bitwise_equal
        tensor([True])
    """
    spec = get_format(fmt)
    a64 = round_to_format(a.to(torch.float64), spec)
    b64 = round_to_format(b.to(torch.float64), spec)
    if a64.shape[-1] == 0:
        zeros = torch.zeros(a64.shape[:-1], dtype=torch.float64)
        return FormatComparison(zeros == 0, zeros, zeros, zeros)
    ulps = ulp_distance(a64, b64, spec).amax(-1)
    linf = (a64 - b64).abs().amax(-1)
    return FormatComparison(
        bitwise_equal=ulps == 0, ulps=ulps, linf=linf, eps_ratio=linf / spec.epsilon
    )


def first_stable(flags: Bool[Tensor, " length"]) -> int | None:
    """Index of the first entry from which every later entry is True (None if the last is False).

    Example:
        >>> first_stable(torch.tensor([True, False, True, True]))
        2
    """
    values = [bool(v) for v in flags.tolist()]
    if not values or not values[-1]:
        return None
    index = len(values) - 1
    while index > 0 and values[index - 1]:
        index -= 1
    return index


@dataclass(frozen=True)
class InverseLawFit:
    """A fit of ``D(k) ≈ c · k^slope`` in log space, and the constant of the 1/k law.

    Attributes:
        slope: Least-squares slope of log D against log k (−1 for the 1/n law).
        scale: Intercept ``c`` of that free fit.
        inverse_scale: ``c`` with the slope fixed at −1: geometric mean of ``D(k)·k``.
    """

    slope: float
    scale: float
    inverse_scale: float

    def crossing(self, threshold: float) -> float:
        """The length where the 1/k law falls to ``threshold``: ``inverse_scale / threshold``."""
        return self.inverse_scale / threshold


def fit_inverse_law(lengths: list[int], values: Float[Tensor, " length"]) -> InverseLawFit | None:
    """Fit the collapse curve's power law on the points where it is positive.

    Args:
        lengths: Sequence lengths k.
        values: Distances D(k) (non-positive or NaN values are ignored).

    Returns:
        The fit, or None with fewer than two usable points.

    Example:
        >>> fit = fit_inverse_law([10, 100, 1000], torch.tensor([0.5, 0.05, 0.005]))
        >>> round(fit.slope, 6), round(fit.inverse_scale, 6), round(fit.crossing(2**-7))
        (-1.0, 5.0, 640)
    """
    pairs = [
        (math.log(k), math.log(float(v)))
        for k, v in zip(lengths, values.tolist(), strict=True)
        if k > 0 and v == v and v > 0
    ]
    if len(pairs) < 2:
        return None
    x = torch.tensor([p[0] for p in pairs], dtype=torch.float64)
    y = torch.tensor([p[1] for p in pairs], dtype=torch.float64)
    xc = x - x.mean()
    slope = float((xc * (y - y.mean())).sum() / (xc * xc).sum()) if float((xc * xc).sum()) else 0.0
    scale = math.exp(float(y.mean()) - slope * float(x.mean()))
    inverse_scale = math.exp(float((y + x).mean()))
    return InverseLawFit(slope=slope, scale=scale, inverse_scale=inverse_scale)
