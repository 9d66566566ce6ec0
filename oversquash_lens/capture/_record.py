"""Record activations by hook name: every firing of each hook, detached, where asked.

A lighter cousin of TransformerLens's ``run_with_cache`` that keeps every firing (a
generation loop fires each hook once per step) and removes its hooks on exit.
"""

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from ._hooks import HookFn, hooks


class ActivationRecord:
    """Activations recorded by :func:`record`: one tensor per firing of each hook.

    ``record[name]`` is the latest firing (like an ActivationCache entry);
    ``record.all(name)`` lists every firing in order.
    """

    def __init__(self) -> None:
        self._data: dict[str, list[Tensor]] = defaultdict(list)

    def __getitem__(self, name: str) -> Tensor:
        if not self._data.get(name):
            raise KeyError(f"{name!r} did not fire while recording")
        return self._data[name][-1]

    def __contains__(self, name: object) -> bool:
        return bool(self._data.get(name))  # type: ignore[call-overload]

    def __len__(self) -> int:
        return sum(1 for v in self._data.values() if v)

    def keys(self) -> list[str]:
        """Names that fired."""
        return [k for k, v in self._data.items() if v]

    def all(self, name: str) -> list[Tensor]:
        """Every recorded firing of ``name``, oldest first."""
        return list(self._data.get(name, []))

    def _append(self, name: str, value: Tensor) -> None:
        self._data[name].append(value)


def detached_copy(value: Tensor, device: str | torch.device | None) -> Tensor:
    """A detached copy that owns its storage (a slice must not pin the whole activation)."""
    value = value.detach()
    return value.clone() if device is None else value.to(device, copy=True)


@contextmanager
def record(
    model: Any,
    names_to_record: Sequence[str],
    *,
    device: str | torch.device | None = "cpu",
    select: Callable[[str, Tensor], Tensor] | None = None,
) -> Iterator[ActivationRecord]:
    """Record named activations of every forward pass made inside the block.

    Copies are detached, own their storage, keep the dtype they had, and see the final
    value at each point (after precision emulation and the user's own patching hooks).

    Args:
        model: HookedTransformer or TransformerBridge.
        names_to_record: Hook-point names.
        device: Where to keep the copies (None keeps each on its own device, for models
            split across GPUs).
        select: Optional ``fn(name, activation) -> tensor`` applied before copying
            (e.g. keep only the last position).

    Yields:
        An :class:`ActivationRecord` filled as the model runs.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-llama")
        >>> with osl.record(model, ["blocks.0.hook_resid_pre"]) as acts:
        ...     _ = model(model.to_tokens("1 1 1"))
        >>> acts["blocks.0.hook_resid_pre"].shape
        torch.Size([1, 4, 64])
    """
    store = ActivationRecord()

    def make(name: str) -> HookFn:
        def save(activation: Tensor, hook: Any) -> None:
            value = activation if select is None else select(name, activation)
            store._append(name, detached_copy(value, device))

        return save

    with hooks(model, [(n, make(n)) for n in names_to_record], order="last"):
        yield store
