"""Finding and casting every floating tensor a model computes with."""

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

# Hugging Face rotary embeddings keep their frequencies in float32 whatever the weights'
# dtype (rounding them to bf16 would rotate far-away positions by wrong angles).
HF_FLOAT32_BUFFERS = ("inv_freq",)


# Plain attributes that cache the last forward pass's activations (TL 3.9's GPT-2
# attention bridge keeps its last pattern): not model state, so never cast or restored.
ACTIVATION_CACHES = ("_pattern",)

TensorSlot = tuple[torch.nn.Module, str, str, Tensor]  # (module, kind, name, tensor)


def tensor_slots(model: Any) -> list[TensorSlot]:
    """Where every floating tensor lives: each parameter, buffer and plain attribute.

    ``kind`` is ``"param"``, ``"buffer"`` or ``"attr"``; ``name`` is local to ``module``.
    A tensor shared by several modules (tied weights) appears once per place.
    """
    slots = []
    for module in model.modules():
        for kind, table in (
            ("param", module._parameters),
            ("buffer", module._buffers),
            ("attr", vars(module)),
        ):
            for name, value in table.items():
                if kind == "attr" and name in ACTIVATION_CACHES:
                    continue
                if isinstance(value, Tensor) and value.is_floating_point():
                    slots.append((module, kind, name, value))
    return slots


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
    for _, kind, name, tensor in tensor_slots(model):
        if not (kind == "buffer" and name.endswith(tuple(keep))):
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
