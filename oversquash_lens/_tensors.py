"""Finding and casting every floating tensor a model computes with."""

import hashlib
import weakref
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


# Digests per model, reused while no tensor changed (same storage, same version counter).
_DIGESTS: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple[Any, ...], str]]" = (
    weakref.WeakKeyDictionary()
)


def weights_digest(model: Any) -> str:
    """SHA-256 of every parameter, buffer and plain tensor attribute (names, dtypes, bytes).

    Two models with the same digest compute with identical numbers; any edit of a weight
    (in place or by assigning new data), a cast, or other processing changes it. The
    digest is cached per model while no tensor's storage or version counter moves, so
    asking again is cheap; the first call reads every weight once (about a second per
    half gigabyte on a CPU).

    Example:
        >>> import torch
        >>> layer = torch.nn.Linear(2, 2)
        >>> before = weights_digest(layer)
        >>> with torch.no_grad():
        ...     _ = layer.weight.mul_(2)
        >>> weights_digest(layer) != before
        True
    """
    named = []
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for kind, table in (
            ("param", module._parameters),
            ("buffer", module._buffers),
            ("attr", vars(module)),
        ):
            for name, value in table.items():
                if not isinstance(value, Tensor) or id(value) in seen:
                    continue
                if kind == "attr" and name in ACTIVATION_CACHES:
                    continue
                seen.add(id(value))
                named.append((f"{module_name}.{name}", value))
    state = tuple(
        (n, t.data_ptr(), t._version, t.dtype, tuple(t.shape), t.device) for n, t in named
    )
    cached = _DIGESTS.get(model) if isinstance(model, torch.nn.Module) else None
    if cached is not None and cached[0] == state:
        return cached[1]
    digest = hashlib.sha256()
    for name, tensor in named:
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        flat = tensor.detach().reshape(-1)
        for start in range(0, flat.numel(), _HASH_CHUNK):
            piece = flat[start : start + _HASH_CHUNK].cpu().contiguous()
            digest.update(piece.view(torch.uint8).numpy().tobytes())
    value = digest.hexdigest()
    if isinstance(model, torch.nn.Module):
        _DIGESTS[model] = (state, value)
    return value


_HASH_CHUNK = 1 << 24  # elements copied to the CPU at a time (bounds the extra memory)
