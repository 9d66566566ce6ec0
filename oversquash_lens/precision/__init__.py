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

__all__ = [
    "ULP_NOTE",
    "FloatFormat",
    "FormatLike",
    "get_format",
    "list_formats",
    "machine_epsilon",
    "register_format",
    "round_to_format",
    "ulp_distance",
    "ulp_index",
]
