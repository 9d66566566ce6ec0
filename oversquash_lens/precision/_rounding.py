"""Round-to-nearest-even emulation of any :class:`FloatFormat`, and ULP distances.

Everything is computed in float64, where the emulation is exact: scaling by a power of
two and rounding an integer-valued significand below 2^53 never rounds twice. The
result is cast back to the input dtype, which is exact whenever the format is no wider
than that dtype (the usual case: bf16 or fp8 emulated on fp32 activations).
"""

from typing import Any, Literal

import torch
from jaxtyping import Float, Float64
from torch import Tensor

from ._formats import FloatFormat, FormatLike, get_format

__all__ = ["round_to_format", "ulp_distance", "ulp_index"]

Overflow = Literal["format", "saturate"]


def _pow2(exponent: Tensor) -> Tensor:
    """Exact float64 powers of two 2^n for integer n in [-1074, 1023], built from bits."""
    normal = exponent >= -1022
    one = torch.ones_like(exponent)
    bits = torch.where(
        normal,
        torch.bitwise_left_shift(exponent.clamp(min=-1022) + 1023, 52),
        torch.bitwise_left_shift(one, (exponent + 1074).clamp(min=0, max=51)),
    )
    return bits.view(torch.float64)


def _binade(magnitude: Tensor, fmt: FloatFormat) -> Tensor:
    """floor(log2 |x|), clamped to the format's smallest normal exponent (int64)."""
    _, exp = torch.frexp(magnitude)  # |x| = f * 2^exp with f in [0.5, 1); exp = 0 for 0
    binade = (exp.to(torch.int64) - 1).clamp(min=fmt.emin)
    return torch.where(magnitude == 0, fmt.emin, binade)


def _round64(x: Tensor, fmt: FloatFormat, overflow: Overflow) -> Tensor:
    magnitude = x.abs()
    finite = torch.isfinite(x)
    safe = torch.where(finite, magnitude, torch.zeros_like(magnitude))
    quantum = _pow2(_binade(safe, fmt) - fmt.mantissa_bits)
    # torch.round rounds half to even; x / quantum and the product are exact in float64.
    rounded = torch.round(torch.where(finite, x, torch.zeros_like(x)) / quantum) * quantum

    too_big = (rounded.abs() > fmt.max_finite) | torch.isinf(x)
    if overflow == "saturate" or fmt.finite_only:
        # finite-only formats have no infinity: they saturate, as torch's own cast does
        on_overflow = torch.copysign(torch.full_like(x, fmt.max_finite), x)
    else:
        on_overflow = torch.copysign(torch.full_like(x, float("inf")), x)
    rounded = torch.where(too_big, on_overflow, rounded)
    return torch.where(torch.isnan(x), x, rounded)


class _RoundStraightThrough(torch.autograd.Function):
    """Rounding with an identity gradient (straight-through), so emulated runs backprop."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, fmt: FloatFormat, overflow: Overflow) -> Tensor:
        return _round64(x.to(torch.float64), fmt, overflow).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor, None, None]:
        return grads[0], None, None


_SOURCE_FORMATS = {
    torch.float64: "float64",
    torch.float32: "float32",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
}


def _check_source(x: Tensor, fmt: FloatFormat) -> FloatFormat:
    if x.dtype not in _SOURCE_FORMATS:
        raise TypeError(
            f"round_to_format takes float64/float32/float16/bfloat16 tensors, got {x.dtype}; "
            "convert with x.float() first"
        )
    source = get_format(_SOURCE_FORMATS[x.dtype])
    if fmt.contains(source):  # every value of x is already in fmt
        return source
    if source.mantissa_bits < 23 and not source.contains(fmt):
        raise ValueError(
            f"cannot emulate {fmt.name} on {x.dtype} tensors exactly (the format is wider "
            "than the tensor); emulate on x.float() instead"
        )
    if fmt.max_finite > source.max_finite:
        raise ValueError(
            f"{fmt.name} reaches beyond {x.dtype}'s range, so rounded values could "
            "overflow the tensor's dtype; emulate on float64 tensors (x.double()) instead"
        )
    return source


def round_to_format(
    x: Float[Tensor, " *shape"], fmt: FormatLike, *, overflow: Overflow = "format"
) -> Float[Tensor, " *shape"]:
    """Round every element to the nearest value of ``fmt`` (ties to even).

    Subnormals are kept, NaN stays NaN, and overflow follows the format: IEEE-style
    formats give ±inf; finite-only formats (``float8_e4m3``) have no infinity and
    saturate to ±max_finite (±inf included), as torch's own cast does;
    ``overflow="saturate"`` clamps IEEE-style formats the same way. The gradient is the
    identity (straight-through), so emulated forward passes can still be differentiated.

    Args:
        x: Tensor of any shape, dtype float64/float32 (or a 16-bit dtype at least as wide
            as ``fmt``).
        fmt: Target format or anything :func:`get_format` accepts.
        overflow: ``"format"`` (the format's own rule) or ``"saturate"``.

    Returns:
        Tensor with the same shape and dtype as ``x`` whose values lie in ``fmt``.

    Example:
        >>> x = torch.tensor([1.0 + 2**-8, 1.0 + 3 * 2**-8, 500.0])
        >>> round_to_format(x, "bfloat16").tolist()
        [1.0, 1.015625, 500.0]
        >>> round_to_format(x, "float8_e4m3").tolist()
        [1.0, 1.0, 448.0]
    """
    spec = get_format(fmt)
    if overflow not in ("format", "saturate"):
        raise ValueError(f"overflow must be 'format' or 'saturate', got {overflow!r}")
    if spec.contains(_check_source(x, spec)):
        return x.clone()
    if x.requires_grad:
        return _RoundStraightThrough.apply(x, spec, overflow)  # type: ignore[no-any-return]
    return _round64(x.to(torch.float64), spec, overflow).to(x.dtype)


def ulp_index(x: Float[Tensor, " *shape"], fmt: FormatLike) -> Float64[Tensor, " *shape"]:
    """Signed position of ``round_to_format(x, fmt)`` in the ordered list of format values.

    Consecutive representable values have consecutive indices; +0 and -0 both map to 0;
    +inf is one past the largest finite value. Exact while |index| < 2^53 (always, except
    for float64-wide formats far from zero).

    Args:
        x: Tensor of any shape.
        fmt: Format or anything :func:`get_format` accepts.

    Returns:
        float64 tensor of indices (NaN where x rounds to NaN).

    Example:
        >>> ulp_index(torch.tensor([0.0, 2**-149, 1.0]), "float32").tolist()
        [0.0, 1.0, 1065353216.0]
    """
    spec = get_format(fmt)
    rounded = _round64(x.detach().to(torch.float64), spec, "format")
    magnitude = rounded.abs()
    finite = torch.isfinite(rounded)
    safe = torch.where(finite, magnitude, torch.zeros_like(magnitude))
    binade = _binade(safe, spec)
    significand = (safe / _pow2(binade - spec.mantissa_bits)).to(torch.int64)
    index = significand + torch.bitwise_left_shift(binade - spec.emin, spec.mantissa_bits)
    top = spec.emax - spec.emin + 1
    inf_index = float(2**spec.mantissa_bits * (top + 1))
    out = torch.where(finite, index.to(torch.float64), torch.full_like(rounded, inf_index))
    out = torch.where(torch.signbit(rounded) & (out != 0), -out, out)
    return torch.where(torch.isnan(rounded), rounded, out)


ULP_NOTE = (
    "ULPs count the numbers representable in the format between the two values, at the "
    "element where they are furthest apart. An element near zero that changes sign spans "
    "every tiny number in between: about 2·10^9 ULPs in float32, 3·10^4 in bfloat16, even "
    "when the values differ by 10^-3. Read the ULPs with the distance beside them."
)
"""What a ULP distance means, shown beside every table column of ULPs."""


def ulp_distance(
    a: Float[Tensor, " *shape"], b: Float[Tensor, " *shape"], fmt: FormatLike
) -> Float64[Tensor, " *shape"]:
    """Number of ``fmt`` values between ``a`` and ``b`` after rounding both to ``fmt``.

    0 means the two are bitwise identical in that format (±0 count as equal). Across zero
    the count includes every tiny number in between (see :data:`ULP_NOTE`): -1e-3 and
    1e-3 are about 2·10^9 float32 ULPs apart.

    Args:
        a: Tensor.
        b: Tensor broadcastable with ``a``.
        fmt: Format or anything :func:`get_format` accepts.

    Returns:
        float64 tensor of non-negative distances (NaN where either side is NaN).

    Example:
        >>> ulp_distance(torch.tensor([1.0]), torch.tensor([1.0 + 2**-6]), "bfloat16")
        tensor([2.], dtype=torch.float64)
    """
    return (ulp_index(a, fmt) - ulp_index(b, fmt)).abs()
