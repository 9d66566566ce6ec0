"""Which formats a model can run in natively, on which device."""

import torch

from ._errors import UnsupportedPrecisionError
from .precision import FormatLike, get_format

NATIVE_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


def native_torch_dtype(spec: FormatLike, device: str | torch.device = "cpu") -> torch.dtype:
    """The torch dtype for running a model natively in ``spec`` on ``device``.

    Args:
        spec: Anything :func:`~oversquash_lens.precision.get_format` accepts.
        device: Where the model runs.

    Returns:
        One of float64, float32, float16, bfloat16.

    Raises:
        UnknownPrecisionError: For names that are no format at all.
        UnsupportedPrecisionError: For formats torch has no model kernels for (fp8, custom
            widths) or that the device lacks (bf16 on pre-Ampere GPUs); the message says
            how to emulate them instead.

    Example:
        >>> native_torch_dtype("bf16")
        torch.bfloat16
    """
    fmt = get_format(spec)
    if fmt.torch_dtype not in NATIVE_DTYPES:
        raise UnsupportedPrecisionError(
            f"{fmt.name} cannot run a model natively (torch has no kernels for it). Run in "
            f"float32 and emulate it: osl.emulate_precision(model, {fmt.name!r})"
        )
    assert fmt.torch_dtype is not None
    where = torch.device(device)
    if where.type == "cuda" and fmt.torch_dtype == torch.bfloat16:
        if not torch.cuda.is_bf16_supported():
            raise UnsupportedPrecisionError(
                "this GPU has no bfloat16 support; run in float32 and emulate it: "
                "osl.emulate_precision(model, 'bfloat16')"
            )
    return fmt.torch_dtype
