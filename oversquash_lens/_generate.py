"""Greedy decoding that is correct on both backends.

TransformerBridge's cached ``generate()`` returns wrong tokens in TL 3.9 and 4.3
(../shared/FINDINGS.md), so this recomputes the whole prefix at every step: slower, but
identical to Hugging Face's greedy output. Fine for the short continuations used here.
"""

from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from .capture import preserve_state


@torch.no_grad()
def greedy_continuation(
    model: Any, tokens: Int[Tensor, "batch pos"], max_new_tokens: int
) -> Int[Tensor, "batch new"]:
    """Append ``max_new_tokens`` argmax tokens, without a KV cache.

    Args:
        model: HookedTransformer or TransformerBridge.
        tokens: Prompt ids ``[batch, pos]``.
        max_new_tokens: How many tokens to generate (≥ 0).

    Returns:
        The generated ids only, ``[batch, max_new_tokens]``.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-gpt2")
        >>> greedy_continuation(model, model.to_tokens("1 1"), 3).shape
        torch.Size([1, 3])
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    generated = tokens
    with preserve_state(model):
        model.eval()
        for _ in range(max_new_tokens):
            logits = model(generated)
            next_token = logits[:, -1].argmax(dim=-1, keepdim=True).to(generated.device)
            generated = torch.cat([generated, next_token], dim=1)
    return generated[:, tokens.shape[1] :]
