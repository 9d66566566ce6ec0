"""Snapshot and restore of a model's state: modes, grad flags, dtype, weights' storage."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .._compat import backend_of
from .._tensors import TensorSlot, tensor_slots
from ._guard import guarded


@dataclass
class _Snapshot:
    training: dict[torch.nn.Module, bool] = field(default_factory=dict)
    requires_grad: dict[torch.nn.Parameter, bool] = field(default_factory=dict)
    slots: list[TensorSlot] = field(default_factory=list)
    data: dict[Tensor, Tensor] = field(default_factory=dict)
    cfg_dtype: Any = None
    grad_enabled: bool = True


def _snapshot(model: Any) -> _Snapshot:
    # References only, no copies: enough to undo casts (which swap storage or, for
    # buffers, whole tensor objects) made inside the block.
    slots = tensor_slots(model)
    return _Snapshot(
        training={m: m.training for m in model.modules()},
        requires_grad={p: p.requires_grad for p in model.parameters()},
        slots=slots,
        data={tensor: tensor.data for _, _, _, tensor in slots},
        cfg_dtype=getattr(model.cfg, "dtype", None),
        grad_enabled=torch.is_grad_enabled(),
    )


def _restore(model: Any, snap: _Snapshot) -> None:
    for module, kind, name, tensor in snap.slots:
        table = {"param": module._parameters, "buffer": module._buffers}.get(kind)
        current = table.get(name) if table is not None else vars(module).get(name)
        if current is not tensor:
            if table is not None:
                table[name] = tensor  # type: ignore[assignment]
            else:
                setattr(module, name, tensor)
    for tensor, data in snap.data.items():
        if tensor.data.data_ptr() != data.data_ptr() or tensor.dtype != data.dtype:
            tensor.data = data
    if snap.cfg_dtype is not None:
        model.cfg.dtype = snap.cfg_dtype
    for param, flag in snap.requires_grad.items():
        param.requires_grad_(flag)
    for module, flag in snap.training.items():
        module.training = flag
    torch.set_grad_enabled(snap.grad_enabled)


@contextmanager
def preserve_state(model: Any) -> Iterator[Any]:
    """Restore the model's state on exit, also when the block raises.

    Restored: train/eval flags of every module, ``requires_grad`` of every parameter,
    the global grad mode, ``cfg.dtype``, and the storage of every floating tensor (so a
    cast inside the block, ``model.to(torch.bfloat16)`` included, is undone exactly).
    In-place edits of weights are not undone. The restore completes even when a
    ``KeyboardInterrupt`` lands in the middle of it.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-gpt2")
        >>> with osl.preserve_state(model):
        ...     _ = model.train()
        >>> model.training
        False
    """
    backend_of(model)
    snap = _snapshot(model)
    with guarded(lambda: _restore(model, snap)):
        yield model


@contextmanager
def frozen_parameters(model: Any) -> Iterator[Any]:
    """Parameters stop requiring grad inside the block; restored after, also if interrupted.

    The autograd graph then saves nothing for weight gradients (less memory); gradients
    with respect to activations are unchanged.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-gpt2")
        >>> with frozen_parameters(model):
        ...     any(p.requires_grad for p in model.parameters())
        False
        >>> all(p.requires_grad for p in model.parameters())
        True
    """
    backend_of(model)
    flags = {p: p.requires_grad for p in model.parameters()}

    def restore() -> None:
        for param, flag in flags.items():
            param.requires_grad_(flag)

    with guarded(restore):
        for param in flags:
            param.requires_grad_(False)
        yield model
