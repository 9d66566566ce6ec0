"""The one parser of precision specs: ``"bfloat16"`` (run natively) or ``"emulate:bfloat16"``.

A sweep's precision is either a dtype the model runs in, or a format that the residual
stream is rounded to while the model runs in its own dtype; the second is spelled with
the ``emulate:`` prefix. Every module that reads a spec asks here.
"""

from dataclasses import dataclass

from ._formats import FloatFormat, FormatLike, get_format

EMULATE = "emulate:"
"""The prefix of an emulated precision spec: ``"emulate:bf16"`` rounds float32 runs to bf16."""


@dataclass(frozen=True)
class PrecisionSpec:
    """A parsed precision spec.

    Attributes:
        fmt: The format it names.
        emulated: True for ``"emulate:<format>"`` (rounding at the residual stream),
            False for a native dtype.
    """

    fmt: FloatFormat
    emulated: bool

    @property
    def label(self) -> str:
        """The canonical spelling: ``"bfloat16"`` or ``"emulate:bfloat16"``."""
        return f"{EMULATE}{self.fmt.name}" if self.emulated else self.fmt.name


def parse_spec(spec: FormatLike) -> PrecisionSpec:
    """Read ``"<format>"`` or ``"emulate:<format>"`` (a format, a tuple or a dtype too).

    Raises:
        UnknownPrecisionError: If the format is not known.

    Example:
        >>> parse_spec("emulate:bf16").label, parse_spec("float32").emulated
        ('emulate:bfloat16', False)
    """
    if isinstance(spec, str) and spec.startswith(EMULATE):
        return PrecisionSpec(get_format(spec[len(EMULATE) :]), emulated=True)
    return PrecisionSpec(get_format(spec), emulated=False)
