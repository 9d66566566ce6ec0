"""Finding and casting every floating tensor a model computes with."""

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

# Hugging Face rotary embeddings keep their frequencies in float32 whatever the weights'
# dtype (rounding them to bf16 would rotate far-away positions by wrong angles).
HF_FLOAT32_BUFFERS = ("inv_freq",)


def floating_tensors(model: Any, *, keep: Sequence[str] = ()) -> list[Tensor]:
    """Parameters, buffers and plain tensor attributes of every submodule.

    Plain attributes matter: TransformerBridge's compatibility mode keeps processed weights
    as ordinary tensor attributes (``_processed_W_in`` ...), which ``.to()`` and
    ``parameters()`` never see.

    Args:
        model: Any ``torch.nn.Module``.
        keep: Buffer-name suffixes to leave out (e.g. ``("inv_freq",)``).

    Returns:
        Each floating tensor once.
    """
    seen: dict[int, Tensor] = {}
    candidates = list(model.parameters())
    candidates += [b for n, b in model.named_buffers() if not n.endswith(tuple(keep))]
    for module in model.modules():
        candidates += [v for v in vars(module).values() if isinstance(v, Tensor)]
    for tensor in candidates:
        if tensor.is_floating_point():
            seen.setdefault(id(tensor), tensor)
    return list(seen.values())


def cast_floating_(model: Any, dtype: torch.dtype, *, keep: Sequence[str] = ()) -> None:
    """Give every floating tensor new data in ``dtype``, in place.

    Callers that must undo it wrap it in ``preserve_state``, which keeps references to
    the original storage.
    """
    for tensor in floating_tensors(model, keep=keep):
        if tensor.dtype != dtype:
            tensor.data = tensor.data.to(dtype)
