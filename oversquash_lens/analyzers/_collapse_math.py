"""Distances between two last-token representations, and what a format can tell apart.

Pure functions on tensors. Every distance is computed in float64 from the values the
model produced: the stored tensors are upcast before they are subtracted, so computing a
distance adds no rounding of its own.
"""

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Float64
from torch import Tensor

from ..precision import FormatLike, get_format, round_to_format, ulp_distance

METRICS = ("l1", "l2", "linf", "cosine")


def metric_index(metric: str) -> int:
    """Where ``metric`` sits on the last axis of every distance tensor.

    Raises:
        ValueError: For a name that is not one of :data:`METRICS`.

    Example:
        >>> metric_index("linf")
        2
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return METRICS.index(metric)


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
    absolute = diff.abs()
    l1 = absolute.sum(-1)
    l2 = torch.linalg.vector_norm(diff, dim=-1)
    linf = absolute.amax(-1) if diff.shape[-1] else torch.zeros_like(l1)
    del absolute
    na, nb = torch.linalg.vector_norm(a64, dim=-1), torch.linalg.vector_norm(b64, dim=-1)
    both_zero = (na == 0) & (nb == 0)
    one_zero = (na == 0) ^ (nb == 0)
    # 1 − cos = (‖a − b‖² − (‖a‖ − ‖b‖)²) / (2‖a‖‖b‖): exact 0 for equal vectors and no
    # cancellation for nearly equal ones (the interesting case here), no extra copies.
    tiny = torch.finfo(torch.float64).tiny
    half_chord = ((l2 - (na - nb).abs()) * (l2 + (na - nb).abs())) / (2 * na * nb).clamp_min(tiny)
    cosine = torch.where(both_zero, 0.0, torch.where(one_zero, 1.0, half_chord.clamp(0, 2)))
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
    if a.shape[-1] == 0:
        zeros = torch.zeros(a.shape[:-1], dtype=torch.float64)
        return FormatComparison(zeros == 0, zeros, zeros, zeros)
    if spec.torch_dtype in _BITS and spec == get_format(spec.torch_dtype):
        ulps, linf = _native_ulps(a, b, spec.torch_dtype)
    else:
        a64 = round_to_format(a.to(torch.float64), spec)
        b64 = round_to_format(b.to(torch.float64), spec)
        ulps = ulp_distance(a64, b64, spec).amax(-1)
        linf = (a64 - b64).abs().amax(-1)
    return FormatComparison(
        bitwise_equal=ulps == 0, ulps=ulps, linf=linf, eps_ratio=linf / spec.epsilon
    )


_BITS = {
    torch.float64: torch.int64,
    torch.float32: torch.int32,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
}


def _native_ulps(a: Tensor, b: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """ULP distances for a format torch has: cast (round to nearest even), compare bits.

    Same numbers as :func:`~oversquash_lens.precision.ulp_distance` (a test checks it),
    several times faster: the bit patterns of a sign-magnitude float, read as integers,
    are ordered like the values. Returns the largest distance along the last axis (NaN
    where either side holds a NaN) and the L∞ distance of the cast values, both float64.
    """
    ca, cb = a.to(dtype), b.to(dtype)
    bits = _BITS[dtype]
    if dtype == torch.float64:  # distances beyond 2^53 are not exact in float64 anyway
        ulps = (_key(ca, bits).to(torch.float64) - _key(cb, bits).to(torch.float64)).abs()
        ulps = ulps.amax(-1)
    else:  # keys fit the format's own integer width; their difference needs 64 bits
        ulps = (_key(ca, bits).to(torch.int64) - _key(cb, bits)).abs().amax(-1)
        ulps = ulps.to(torch.float64)
    nan = (ca.isnan() | cb.isnan()).any(-1)
    ulps = torch.where(nan, float("nan"), ulps)
    linf = (ca.to(torch.float64) - cb.to(torch.float64)).abs().amax(-1)
    return ulps, linf


def _key(x: Tensor, bits: torch.dtype) -> Tensor:
    """Integers ordered like the float values of ``x`` (-0 and +0 both map to 0).

    A negative float's bit pattern, read as a signed integer, is ``MIN + magnitude``;
    ``MIN - raw`` is then ``-magnitude``, computed without overflow in the same width.
    """
    raw = x.view(bits)
    return torch.where(raw < 0, torch.iinfo(bits).min - raw, raw)


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
