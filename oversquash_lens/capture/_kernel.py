"""Switch a Hugging Face model under a TransformerBridge to eager attention, and back.

SDPA and flash attention never materialize the patterns that path analyses read; eager
attention does. The switch is undone on exit, also on error or interrupt.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .._errors import PatternsUnavailableError
from ._guard import guarded


def attention_kernel(model: Any) -> str:
    """The attention implementation of a bridge's Hugging Face model (``"unknown"``)."""
    config = getattr(getattr(model, "original_model", None), "config", None)
    return str(getattr(config, "_attn_implementation", None) or "unknown")


@contextmanager
def eager_kernel(model: Any, name: str, previous: str) -> Iterator[None]:
    """Inside the block, ``model.original_model`` runs eager attention; ``previous`` after.

    Raises:
        PatternsUnavailableError: If the model has no ``set_attn_implementation`` or the
            switch fails, with what to do instead.
    """
    hf_model = getattr(model, "original_model", None)
    switch = getattr(hf_model, "set_attn_implementation", None)
    if switch is None:
        raise PatternsUnavailableError(
            f"{name} uses {previous} attention, which never materializes "
            "attention patterns, and cannot be switched to eager; reload the Hugging "
            "Face model with attn_implementation='eager'"
        )

    def restore() -> None:
        if attention_kernel(model) != previous:
            switch(previous)

    with guarded(restore):
        try:
            switch("eager")
        except (AttributeError, ValueError) as exc:
            raise PatternsUnavailableError(
                f"{name} uses {previous} attention, which never materializes "
                f"attention patterns, and switching it to eager failed ({exc}); reload "
                "the Hugging Face model with attn_implementation='eager'"
            ) from exc
        yield
