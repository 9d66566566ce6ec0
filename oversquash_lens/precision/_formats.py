"""Floating-point formats: named ones (fp64 ... fp8) and any (exponent, mantissa) width.

A format is described by its exponent and explicit mantissa (fraction) bit counts, the
IEEE-754 way. ``finite_only`` formats (OCP ``float8_e4m3fn``) have no infinities: the top
exponent field holds finite values and only the all-ones pattern is NaN, so they reach
one binade higher than the IEEE layout with the same widths.
"""

import re
from dataclasses import dataclass
from typing import Literal

import torch

from .._errors import UnknownPrecisionError
from .._names import Registry

__all__ = [
    "FloatFormat",
    "get_format",
    "list_formats",
    "machine_epsilon",
    "register_format",
]


@dataclass(frozen=True)
class FloatFormat:
    """A binary floating-point format with round-to-nearest-even semantics.

    Attributes:
        name: Canonical name (``"bfloat16"``, ``"e5m7"``, ...).
        exponent_bits: Width of the exponent field (2..11).
        mantissa_bits: Width of the explicit fraction field (1..52).
        finite_only: True for formats without infinities (``float8_e4m3fn``):
            overflow saturates to the largest finite value, as torch casts do.
        torch_dtype: The native torch dtype with exactly this layout, if any.

    Example:
        >>> fmt = get_format("bfloat16")
        >>> fmt.epsilon, fmt.max_finite
        (0.0078125, 3.3895313892515355e+38)
    """

    name: str
    exponent_bits: int
    mantissa_bits: int
    finite_only: bool = False
    torch_dtype: torch.dtype | None = None

    def __post_init__(self) -> None:
        if not 2 <= self.exponent_bits <= 11:
            raise ValueError(
                f"exponent_bits must be in 2..11 (float64 has 11), got {self.exponent_bits}"
            )
        if not 1 <= self.mantissa_bits <= 52:
            # With no fraction bits "ties to even" has no significand digit to be even.
            raise ValueError(
                f"mantissa_bits must be in 1..52 (float64 has 52), got {self.mantissa_bits}"
            )

    @property
    def bias(self) -> int:
        """Exponent bias, 2^(e-1) - 1."""
        return 2 ** (self.exponent_bits - 1) - 1

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal number."""
        return 1 - self.bias

    @property
    def emax(self) -> int:
        """Exponent of the largest finite binade."""
        top = 2**self.exponent_bits - 1  # all-ones exponent field
        return (top if self.finite_only else top - 1) - self.bias

    @property
    def max_finite(self) -> float:
        """Largest finite value (448 for float8_e4m3fn, 65504 for float16)."""
        m = self.mantissa_bits
        # finite-only formats reserve the all-ones mantissa of the top binade for NaN
        top_fraction = (2**m - 2) if self.finite_only else (2**m - 1)
        return float((2**m + top_fraction) * 2.0 ** (self.emax - m))

    @property
    def min_normal(self) -> float:
        """Smallest positive normal value, 2^emin."""
        return 2.0**self.emin

    @property
    def min_subnormal(self) -> float:
        """Smallest positive subnormal value, 2^(emin - m)."""
        return 2.0 ** (self.emin - self.mantissa_bits)

    @property
    def epsilon(self) -> float:
        """Machine epsilon: the gap between 1 and the next value, 2^-m (bf16: 2^-7)."""
        return 2.0**-self.mantissa_bits

    @property
    def is_native(self) -> bool:
        """Whether torch has a dtype with exactly this layout."""
        return self.torch_dtype is not None

    def contains(self, other: "FloatFormat") -> bool:
        """True when every finite value of ``other`` is exactly representable here."""
        return (
            self.mantissa_bits >= other.mantissa_bits
            and self.emin - self.mantissa_bits <= other.emin - other.mantissa_bits
            and self.max_finite >= other.max_finite
        )


_REGISTRY: Registry[FloatFormat] = Registry("precision", fold_case=True)


def register_format(fmt: FloatFormat, *aliases: str) -> FloatFormat:
    """Register a named format so ``get_format(name)`` finds it.

    Args:
        fmt: The format to register.
        *aliases: Extra names for it.

    Returns:
        The registered format.

    Raises:
        ValueError: If the name or an alias is already taken.

    Example:
        >>> tf32 = register_format(FloatFormat("tensorfloat32", 8, 10), "tf32")
        >>> get_format("tf32").epsilon == 2**-10
        True
    """
    return _REGISTRY.register(fmt.name, fmt, *aliases)


register_format(FloatFormat("float64", 11, 52, torch_dtype=torch.float64), "fp64", "double")
register_format(FloatFormat("float32", 8, 23, torch_dtype=torch.float32), "fp32", "float")
register_format(FloatFormat("float16", 5, 10, torch_dtype=torch.float16), "fp16", "half")
register_format(FloatFormat("bfloat16", 8, 7, torch_dtype=torch.bfloat16), "bf16")
register_format(
    FloatFormat("float8_e4m3", 4, 3, finite_only=True, torch_dtype=torch.float8_e4m3fn),
    "float8_e4m3fn",
    "fp8_e4m3",
)
register_format(FloatFormat("float8_e5m2", 5, 2, torch_dtype=torch.float8_e5m2), "fp8_e5m2")

_CUSTOM = re.compile(r"^e(\d+)m(\d+)$")

FormatLike = FloatFormat | str | tuple[int, int] | torch.dtype
"""A format: a ``FloatFormat``, its name (``"bfloat16"``, ``"e5m7"``), ``(exponent bits,
mantissa bits)`` or a torch floating dtype."""


def get_format(spec: FormatLike) -> FloatFormat:
    """Resolve a precision spec to a :class:`FloatFormat`.

    Custom widths are IEEE-style (with infinities): ``"e4m3"`` tops out at 240, while the
    OCP fp8 format without infinities (max 448, torch's ``float8_e4m3fn``) is
    ``"float8_e4m3"``.

    Args:
        spec: A format, a registered name or alias (``"bf16"``), a torch dtype, a custom
            ``"e<exp>m<mant>"`` string, or an ``(exponent_bits, mantissa_bits)`` tuple.

    Returns:
        The format.

    Raises:
        UnknownPrecisionError: For names that are none of the above, and custom widths
            outside 2..11 exponent / 1..52 mantissa bits.

    Example:
        >>> get_format("bf16").name
        'bfloat16'
        >>> get_format((5, 7)).name, get_format("e5m7").epsilon
        ('e5m7', 0.0078125)
    """
    if isinstance(spec, FloatFormat):
        return spec
    if isinstance(spec, torch.dtype):
        for fmt in _REGISTRY.values():
            if fmt.torch_dtype == spec:
                return fmt
        raise UnknownPrecisionError(
            f"torch dtype {spec} is not a floating-point format known here; "
            f"known: {', '.join(list_formats())}"
        )
    if isinstance(spec, tuple):
        exponent_bits, mantissa_bits = spec
        return _custom(int(exponent_bits), int(mantissa_bits), spec)
    if isinstance(spec, str):
        key = spec.strip().lower().removeprefix("torch.")
        if key in _REGISTRY:
            return _REGISTRY[key]
        match = _CUSTOM.match(key)
        if match:
            return _custom(int(match.group(1)), int(match.group(2)), spec)
    raise UnknownPrecisionError(
        f"unknown precision {spec!r}. Use one of {', '.join(list_formats())}, a custom "
        "'e<exponent_bits>m<mantissa_bits>' string such as 'e5m7', or a tuple (5, 7)."
    )


def _custom(exponent_bits: int, mantissa_bits: int, spec: object) -> FloatFormat:
    for fmt in _REGISTRY.values():
        same = (fmt.exponent_bits, fmt.mantissa_bits) == (exponent_bits, mantissa_bits)
        if same and not fmt.finite_only:
            return fmt
    try:
        return FloatFormat(f"e{exponent_bits}m{mantissa_bits}", exponent_bits, mantissa_bits)
    except ValueError as exc:
        raise UnknownPrecisionError(f"invalid precision {spec!r}: {exc}") from exc


def list_formats(kind: Literal["all", "native"] = "all") -> list[str]:
    """Names of the registered formats.

    Args:
        kind: ``"native"`` to list only formats with a torch dtype.

    Returns:
        Canonical names, widest first.

    Example:
        >>> list_formats()[:4]
        ['float64', 'float32', 'float16', 'bfloat16']
    """
    return [f.name for f in _REGISTRY.values() if kind == "all" or f.is_native]


def machine_epsilon(spec: FormatLike) -> float:
    """Machine epsilon 2^-m of a format.

    Args:
        spec: Anything :func:`get_format` accepts.

    Returns:
        The epsilon as a Python float.

    Example:
        >>> machine_epsilon("bfloat16") == 2**-7
        True
    """
    return get_format(spec).epsilon
