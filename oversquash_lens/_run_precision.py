"""The precision a sweep runs in: a native dtype, or a format emulated in float32.

:func:`~oversquash_lens.collapse` and :func:`~oversquash_lens.compare_glasses` read a
precision spec (``"bfloat16"``, ``"emulate:float8_e4m3"``) into a :class:`Setting` and
run each pass inside :func:`precision_context`.
"""

from dataclasses import dataclass
from typing import Any

import torch

from ._dtypes import native_torch_dtype
from ._errors import UnsupportedPrecisionError
from .capture import check_emulation, emulate_precision, native_dtype
from .precision import EMULATE, FloatFormat, FormatLike, parse_spec


@dataclass(frozen=True)
class Setting:
    """One precision to run: a native dtype, or a format emulated at the residual stream."""

    label: str
    fmt: FloatFormat
    native: bool


def parse_precision(
    spec: FormatLike,
    device: torch.device | str = "cpu",
    model_dtype: torch.dtype | None = None,
) -> Setting:
    """``"bfloat16"`` runs natively; ``"emulate:bfloat16"`` rounds the residual stream.

    Args:
        spec: A format name, or ``"emulate:<format>"``.
        device: Where the model runs (for the native formats).
        model_dtype: The dtype the model runs in: an emulated format must fit in it.

    Raises:
        UnsupportedPrecisionError: For a native precision the device cannot run, with the
            ``"emulate:..."`` spelling to use instead; for an emulated format wider than
            the model's dtype (rounding to it would change nothing).

    Example:
        >>> parse_precision("emulate:float8_e4m3").label
        'emulate:float8_e4m3'
    """
    parsed = parse_spec(spec)
    fmt = parsed.fmt
    if parsed.emulated:
        if model_dtype is not None:
            check_emulation(fmt, model_dtype)
        return Setting(parsed.label, fmt, native=False)
    try:
        native_torch_dtype(fmt, device)
    except UnsupportedPrecisionError as error:
        raise UnsupportedPrecisionError(
            f"{error}. In osl.collapse ask for precisions=['{EMULATE}{fmt.name}'] instead"
        ) from None
    return Setting(fmt.name, fmt, native=True)


def precision_context(model: Any, setting: Setting) -> Any:
    """The context that runs ``model`` in ``setting``: its native dtype, or emulated."""
    if setting.native:
        return native_dtype(model, setting.fmt)
    return emulate_precision(model, setting.fmt, points="residual+attention")
