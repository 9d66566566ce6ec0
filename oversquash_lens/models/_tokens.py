"""What a prompt or a batch of token ids must be before a model sees it (pure checks).

The adapter's ``to_tokens`` and ``check_tokens`` call these with the model's sizes, so a
wrong input is refused with what to do, not indexed silently by TransformerLens.
"""

from typing import Any

import torch
from torch import Tensor

from .._errors import EmptySequenceError, InvalidTokensError, PromptTooLongError

ID_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8)
"""Dtypes token ids may come in (bool and uint8 would index like masks)."""


def check_token_ids(tokens: Tensor, *, n_ctx: int, d_vocab: int, name: str) -> Tensor:
    """The ids as int64, once they are integers inside the vocabulary and the context.

    Raises:
        EmptySequenceError: If there are no tokens.
        PromptTooLongError: If there are more than ``n_ctx``.
        InvalidTokensError: For bool, uint8 or floating tensors, and ids outside
            ``0..d_vocab - 1``.

    Example:
        >>> check_token_ids(torch.tensor([[1, 2]], dtype=torch.int32), n_ctx=4, d_vocab=3,
        ...                 name="m").dtype
        torch.int64
    """
    if tokens.dtype not in ID_DTYPES:
        raise InvalidTokensError(
            f"token ids must be an integer tensor (int64 or int32), got {tokens.dtype}"
            + (
                ": a bool or uint8 tensor would index like a mask; convert with .long()"
                if tokens.dtype in (torch.bool, torch.uint8)
                else ""
            )
        )
    if tokens.numel() == 0 or tokens.shape[-1] == 0:
        raise EmptySequenceError("empty sequence: the prompt has no tokens")
    if tokens.shape[-1] > n_ctx:
        raise PromptTooLongError(
            f"the prompt has {tokens.shape[-1]} tokens but {name} has a context "
            f"window of n_ctx={n_ctx}; shorten it (or choose shorter lengths)"
        )
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= d_vocab:
        bad = low if low < 0 else high
        raise InvalidTokensError(
            f"token id {bad} is outside the vocabulary of {name} (ids 0.."
            f"{d_vocab - 1}); check the tokenizer the ids came from"
        )
    return tokens.long()


def prompt_texts(prompt: Any) -> list[str]:
    """A prompt as a list of non-empty strings (one per batch row).

    Raises:
        TypeError: For anything but a string or a list/tuple of strings.
        EmptySequenceError: For an empty prompt.

    Example:
        >>> prompt_texts("1 1 1"), prompt_texts(("a", "b"))
        (['1 1 1'], ['a', 'b'])
    """
    if isinstance(prompt, str):
        texts = [prompt]
    elif isinstance(prompt, list | tuple) and all(isinstance(t, str) for t in prompt):
        texts = list(prompt)
    else:
        raise TypeError(
            "a prompt is a string, a list of strings or a tensor of token ids, got "
            f"{type(prompt).__name__}"
        )
    if not texts or any(t == "" for t in texts):
        raise EmptySequenceError("empty prompt: give at least one token of text")
    return texts
