"""Floating-point formats, round-to-nearest-even emulation, epsilon and ULP distances.

Pure functions on tensors; the hooks that apply them inside a model live in
``oversquash_lens.capture`` (:func:`~oversquash_lens.emulate_precision`).
"""

from ._formats import FloatFormat as FloatFormat
from ._formats import FormatLike as FormatLike
from ._formats import get_format as get_format
from ._formats import list_formats as list_formats
from ._formats import machine_epsilon as machine_epsilon
from ._formats import register_format as register_format
from ._rounding import ULP_NOTE as ULP_NOTE
from ._rounding import round_to_format as round_to_format
from ._rounding import ulp_distance as ulp_distance
from ._rounding import ulp_index as ulp_index
from ._spec import EMULATE as EMULATE
from ._spec import PrecisionSpec as PrecisionSpec
from ._spec import parse_spec as parse_spec

__all__ = [
    "EMULATE",
    "ULP_NOTE",
    "FloatFormat",
    "FormatLike",
    "PrecisionSpec",
    "get_format",
    "list_formats",
    "machine_epsilon",
    "parse_spec",
    "register_format",
    "round_to_format",
    "ulp_distance",
    "ulp_index",
]
