"""Activation checkpointing of a model's blocks, for gradient runs at long context.

A pass with gradients keeps every block's autograd graph until the backward passes are
done: at 8192 tokens on SmolLM2-135M that is about 3 × 2.25 GiB of attention tensors per
layer, 30 times over. Inside :func:`checkpointed_blocks` each block keeps only its inputs;
a backward pass recomputes the block's forward when it reaches it (torch's non-reentrant
``torch.utils.checkpoint``), so only one block's graph is alive at a time. The cost is one
more forward computation per backward pass; the numbers are the same bit for bit (the
same operations on the same values, in the same order).

During a recomputation this package's observing hooks stay silent (they saw the block's
forward pass already, see ``capture._hooks.recompute_pass``); its editing hooks (a
detached pattern, precision rounding, the input made differentiable) run again, so the
recomputed values are those of the first pass. The user's own hooks inside the blocks
run again too: they must give the same values on the second call (any pure function of
the activation does). torch checks that the recomputed tensors have the shapes, dtypes
and devices of the first pass and raises ``CheckpointError`` otherwise.
"""

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from .._compat import backend_of
from .._errors import UnsupportedModelError
from ._guard import Token, discard, guarded
from ._hooks import recompute_pass

_CHECKPOINTED: "weakref.WeakKeyDictionary[torch.nn.Module, list[Token]]" = (
    weakref.WeakKeyDictionary()
)


def blocks_checkpointed(model: Any) -> bool:
    """Whether ``model``'s blocks run checkpointed right now (see :func:`checkpointed_blocks`)."""
    return bool(_CHECKPOINTED.get(model))


def _blocks(model: Any) -> list[torch.nn.Module]:
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, torch.nn.ModuleList) or not len(blocks):
        raise UnsupportedModelError(
            f"cannot checkpoint {type(model).__name__}: it has no list of blocks (model.blocks)"
        )
    return list(blocks)


def _checkpointed(model: Any, forward: Callable[..., Any]) -> Callable[..., Any]:
    """``forward`` run under non-reentrant checkpointing, observers silent on recompute."""

    def run(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():  # nothing would be saved: run it plainly
            return forward(*args, **kwargs)
        first = [True]

        def block(*args: Any, **kwargs: Any) -> Any:
            if first[0]:
                first[0] = False
                return forward(*args, **kwargs)
            with recompute_pass(model):
                return forward(*args, **kwargs)

        return checkpoint(block, *args, use_reentrant=False, **kwargs)

    return run


@contextmanager
def checkpointed_blocks(model: Any) -> Iterator[Any]:
    """Inside the block, every transformer block keeps only its inputs for the backward pass.

    Each block's ``forward`` is replaced (on the instance) by a checkpointed call of the
    original; on exit the instances are as before, also when the block raises or is
    interrupted. Graphs recorded inside stay usable after the block ends.

    Yields:
        The model.

    Raises:
        UnsupportedModelError: For a model without ``model.blocks``.

    Example:
        >>> import torch
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-llama")
        >>> tokens = model.to_tokens("1 1 1")
        >>> def sensitivity():
        ...     sens = osl.Sensitivity(layers="final")
        ...     with osl.attach(model, sens) as rec, torch.enable_grad():
        ...         model(tokens)
        ...         return rec.result(sens).norms
        >>> kept = sensitivity()
        >>> with checkpointed_blocks(model):
        ...     recomputed = sensitivity()
        >>> torch.equal(kept, recomputed), "forward" in vars(model.blocks[0])
        (True, False)
    """
    backend_of(model)
    blocks = _blocks(model)
    token, stack = Token("checkpoint"), _CHECKPOINTED.setdefault(model, [])
    replaced: list[tuple[torch.nn.Module, Any]] = []  # (block, its own forward attribute)
    missing = object()

    def restore() -> None:
        discard(stack, token)
        while replaced:
            block, before = replaced[-1]
            if before is missing:
                vars(block).pop("forward", None)
            else:
                vars(block)["forward"] = before
            replaced.pop()

    with guarded(restore):
        stack.append(token)
        for block in blocks:
            before = vars(block).get("forward", missing)
            replaced.append((block, before))
            # vars(): a bridge's blocks forward attribute writes to the wrapped module
            vars(block)["forward"] = _checkpointed(model, block.forward)
        yield model
