"""Distances between two last-token representations, and what a format can tell apart.

Pure functions on tensors. Every distance is computed in float64 from the values the
model produced: the stored tensors are upcast before they are subtracted, so computing a
distance adds no rounding of its own.
"""

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Float64
from torch import Tensor

from ..precision import FloatFormat, FormatLike, get_format, round_to_format, ulp_index

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
    return pair_distances(Prepared.of(a), Prepared.of(b))


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
    return pair_in_format(Prepared.of(a, spec, norms=False), Prepared.of(b, spec, norms=False))


@dataclass(frozen=True)
class Prepared:
    """Rows of representations, with what every comparison among them reuses.

    Comparing many pairs drawn from few distinct representations (a sweep reads pair k's
    second side again as pair k + 1's first) costs one float64 copy, one norm and one
    rounding per representation instead of one per pair. :meth:`rows` picks rows without
    copying when they are consecutive.

    Attributes:
        values: ``[rows, ..., d]`` float64 copies of the values.
        norms: ``[rows, ...]`` their L2 norms (None when not asked for).
        fmt: The format of the comparison in a format, or None.
        order: ``[rows, ..., d]`` integers ordered like the values in ``fmt`` (the bit
            patterns of a native format in its own integer width, else the float64 ULP
            indices), or None without a format.
        nan: ``[rows, ...]`` a NaN along ``d`` after rounding to ``fmt``.
        rounded: ``[rows, ..., d]`` float64 values rounded to ``fmt``; None when rounding
            changes nothing (the format holds every value of the stored dtype).
    """

    values: Float64[Tensor, " *shape d"]
    norms: Float64[Tensor, " *shape"] | None
    fmt: FloatFormat | None = None
    order: Tensor | None = None
    nan: Bool[Tensor, " *shape"] | None = None
    rounded: Float64[Tensor, " *shape d"] | None = None

    @classmethod
    def of(cls, x: Tensor, fmt: FloatFormat | None = None, *, norms: bool = True) -> "Prepared":
        """Prepare ``x`` (any floating dtype) for distances and, with ``fmt``, a format."""
        values = x.to(torch.float64)
        norm = torch.linalg.vector_norm(values, dim=-1) if norms else None
        if fmt is None or x.shape[-1] == 0:
            return cls(values, norm, fmt)
        if fmt.torch_dtype in _BITS and fmt == get_format(fmt.torch_dtype):
            cast = x.to(fmt.torch_dtype)
            order = _key(cast, _BITS[fmt.torch_dtype])
            exact = torch.promote_types(x.dtype, fmt.torch_dtype) == fmt.torch_dtype
            rounded = None if exact else cast.to(torch.float64)
            # a cast to a torch dtype makes no NaN and keeps every NaN, and a norm is NaN
            # exactly when an element is: the norms already say where the NaNs are
            nan = norm.isnan() if norm is not None else values.isnan().any(-1)
            return cls(values, norm, fmt, order, nan, rounded)
        rounded = round_to_format(values, fmt)
        order = ulp_index(rounded, fmt)
        return cls(values, norm, fmt, order, order.isnan().any(-1), rounded)

    @classmethod
    def cat(cls, parts: "list[Prepared]") -> "Prepared":
        """The rows of ``parts``, one after the other (all prepared alike)."""

        def join(field: str) -> Tensor | None:
            tensors = [getattr(p, field) for p in parts]
            return None if tensors[0] is None else torch.cat(tensors)

        return cls(
            join("values"),  # type: ignore[arg-type]
            join("norms"),
            parts[0].fmt,
            join("order"),
            join("nan"),
            join("rounded"),
        )

    def rows(self, index: list[int]) -> "Prepared":
        """The rows ``index`` (views when they are consecutive and ascending)."""

        def pick(t: Tensor | None) -> Tensor | None:
            return None if t is None else take_rows(t, index)

        return Prepared(
            pick(self.values),  # type: ignore[arg-type]
            pick(self.norms),
            self.fmt,
            pick(self.order),
            pick(self.nan),
            pick(self.rounded),
        )


def take_rows(t: Tensor, index: list[int]) -> Tensor:
    """Rows ``index`` of ``t`` along dim 0: a view when they are consecutive and ascending.

    Example:
        >>> t = torch.arange(5)
        >>> take_rows(t, [1, 2, 3])._base is t, take_rows(t, [3, 1]).tolist()
        (True, [3, 1])
    """
    if index and index == list(range(index[0], index[0] + len(index))):
        return t.narrow(0, index[0], len(index))
    return t.index_select(0, torch.tensor(index, dtype=torch.long, device=t.device))


def pair_distances(a: Prepared, b: Prepared) -> Float64[Tensor, " *shape metric"]:
    """:func:`distances` between the rows of ``a`` and of ``b`` (see there)."""
    if a.norms is None or b.norms is None:
        raise ValueError("pair_distances needs rows prepared with norms=True")
    _same_shape(a.values, b.values)
    diff = a.values - b.values
    l2 = torch.linalg.vector_norm(diff, dim=-1)
    absolute = diff.abs_()  # in place: one buffer fewer
    l1 = absolute.sum(-1)
    linf = absolute.amax(-1) if absolute.shape[-1] else torch.zeros_like(l1)
    del absolute, diff
    na, nb = a.norms, b.norms
    both_zero = (na == 0) & (nb == 0)
    one_zero = (na == 0) ^ (nb == 0)
    # 1 − cos = (‖a − b‖² − (‖a‖ − ‖b‖)²) / (2‖a‖‖b‖): exact 0 for equal vectors and no
    # cancellation for nearly equal ones (the interesting case here), no extra copies.
    tiny = torch.finfo(torch.float64).tiny
    half_chord = ((l2 - (na - nb).abs()) * (l2 + (na - nb).abs())) / (2 * na * nb).clamp_min(tiny)
    cosine = torch.where(both_zero, 0.0, torch.where(one_zero, 1.0, half_chord.clamp(0, 2)))
    return torch.stack([l1, l2, linf, cosine], dim=-1)


def pair_in_format(
    a: Prepared, b: Prepared, *, linf: Float64[Tensor, " *shape"] | None = None
) -> FormatComparison:
    """:func:`compare_in_format` between the rows of ``a`` and of ``b``.

    ``linf``: the float64 L∞ distance of the unrounded values, when already computed; it
    is reused where rounding changes nothing.
    """
    spec = a.fmt
    if spec is None or b.fmt != spec:
        raise ValueError("pair_in_format needs both sides prepared with the same format")
    _same_shape(a.values, b.values)
    if a.values.shape[-1] == 0:
        zeros = torch.zeros(a.values.shape[:-1], dtype=torch.float64)
        return FormatComparison(zeros == 0, zeros, zeros, zeros)
    assert a.order is not None and b.order is not None and a.nan is not None
    assert b.nan is not None
    if a.order.dtype in (torch.float64, torch.int64):  # ULP indices or float64's keys:
        # distances beyond 2^53 are not exact in float64 anyway, and int64 could overflow
        ulps = (a.order.to(torch.float64) - b.order.to(torch.float64)).abs_().amax(-1)
    else:  # keys fit the format's own integer width; their difference needs 64 bits
        ulps = (a.order.to(torch.int64) - b.order).abs_().amax(-1).to(torch.float64)
    ulps = torch.where(a.nan | b.nan, float("nan"), ulps)
    if a.rounded is not None and b.rounded is not None:
        linf = (a.rounded - b.rounded).abs_().amax(-1)
    elif linf is None:
        linf = (a.values - b.values).abs_().amax(-1)
    return FormatComparison(
        bitwise_equal=ulps == 0, ulps=ulps, linf=linf, eps_ratio=linf / spec.epsilon
    )


def _same_shape(a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"cannot compare shapes {tuple(a.shape)} and {tuple(b.shape)}")


_BITS = {
    torch.float64: torch.int64,
    torch.float32: torch.int32,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
}


def _key(x: Tensor, bits: torch.dtype) -> Tensor:
    """Integers ordered like the float values of ``x`` (-0 and +0 both map to 0).

    The bit patterns of a sign-magnitude float, read as integers, are ordered like the
    values once the negatives are flipped: the key is the magnitude bits, negated where
    the sign bit is set (``(m ^ s) - s`` with ``s`` = 0 or -1, all in the format's own
    width, no overflow). Same ULP counts as
    :func:`~oversquash_lens.precision.ulp_distance` (a test checks it), several times
    faster; arithmetic on the bits is also about 3× faster than ``torch.where`` on them.
    """
    raw = x.view(bits)
    sign = raw >> (torch.iinfo(bits).bits - 1)  # arithmetic shift: 0 or -1
    key = raw & torch.iinfo(bits).max  # the magnitude bits
    return key.bitwise_xor_(sign).sub_(sign)


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
