"""Prop. B.9: without positions and without a causal mask, only token ratios survive.

A tiny seeded pre-norm Transformer (multi-head attention + MLP, no positional encoding),
on float64 tensors. Bidirectional attention over a sequence sees the multiset of its
tokens, and the softmax normalises counts away: "10" and "1100" (same ratio of ones to
zeros) give every token the same representation at every layer. With a causal mask the
prefixes differ ("1" then "11" then "110" ...) and from the second layer on the states
separate; after the first layer only the last token still agrees (its row sees the
whole sequence).
"""

import math

import torch
from torch import Tensor

from ._threads import one_intra_op_thread
from ._types import Embedding, PointStates, TokenIds

__all__ = ["bidirectional_nope_states"]

_F64 = torch.float64


def _layer_norm(x: Tensor) -> Tensor:
    """LayerNorm without gain and bias, over the last dimension."""
    centered = x - x.mean(dim=-1, keepdim=True)
    return centered / torch.sqrt(centered.pow(2).mean(dim=-1, keepdim=True) + 1e-5)


def bidirectional_nope_states(
    tokens: TokenIds | list[int],
    *,
    n_layers: int = 3,
    d_model: int = 16,
    n_heads: int = 2,
    d_mlp: int = 32,
    seed: int = 0,
    embedding: Embedding | None = None,
    causal: bool = False,
) -> PointStates:
    """Residual stream of a random no-PE Transformer at every layer and position.

    Each block is pre-norm: ``z = x + Attn(LN(x))``, ``x' = z + MLP(LN(z))``, with
    ``n_heads`` heads, scores scaled by ``1/√d_head``, a GELU MLP, and weights drawn from
    ``seed`` (entries ``N(0, 1/fan_in)``, biases ``N(0, 0.1²)``). There is no positional
    encoding anywhere.

    Args:
        tokens: Token ids ``[pos]``.
        n_layers: Number of blocks.
        d_model: Residual width (divisible by ``n_heads``).
        n_heads: Attention heads per block.
        d_mlp: MLP hidden width.
        seed: Seed of the weights (and of the default embedding).
        embedding: ``[d_vocab, d_model]`` token embeddings; default: ``N(0, 1)`` entries
            for two tokens (ids 0 and 1), drawn from ``seed``.
        causal: Apply a causal mask (default False: bidirectional, as in Prop. B.9).

    Returns:
        ``[point, pos, d_model]`` float64 states; point 0 is the embedding, point ``ℓ``
        the output of block ``ℓ − 1``.

    Raises:
        ValueError: For an empty sequence, token ids outside the embedding, or widths
            that do not split into heads.

    Example:
        >>> short = bidirectional_nope_states([1, 0])
        >>> long = bidirectional_nope_states([1, 1, 0, 0])
        >>> bool(torch.allclose(short[:, -1], long[:, -1], rtol=0, atol=1e-12))
        True
    """
    ids = torch.as_tensor(tokens, dtype=torch.int64)
    if ids.ndim != 1 or ids.numel() == 0:
        raise ValueError(f"tokens must be a non-empty 1-D sequence of ids, got shape {ids.shape}")
    if n_layers < 0 or n_heads < 1 or d_mlp < 1 or d_model % n_heads:
        raise ValueError(
            f"need n_layers >= 0, n_heads >= 1, d_mlp >= 1 and d_model divisible by n_heads; "
            f"got n_layers={n_layers}, d_model={d_model}, n_heads={n_heads}, d_mlp={d_mlp}"
        )
    gen = torch.Generator().manual_seed(seed)

    def normal(*shape: int, std: float) -> Tensor:
        return torch.randn(*shape, generator=gen, dtype=_F64) * std

    table = normal(2, d_model, std=1.0) if embedding is None else embedding.to(_F64)
    if table.ndim != 2 or table.shape[1] != d_model:
        raise ValueError(f"embedding must be [d_vocab, {d_model}], got {tuple(table.shape)}")
    if int(ids.min()) < 0 or int(ids.max()) >= table.shape[0]:
        raise ValueError(f"token ids must lie in [0, {table.shape[0]}), got {ids.tolist()}")
    d_head = d_model // n_heads
    n = ids.shape[0]
    mask = torch.ones(n, n, dtype=torch.bool)
    if causal:
        mask = torch.tril(mask)
    with one_intra_op_thread():  # tiny products: a second thread only adds overhead
        x = table[ids]
        states = [x]
        for _ in range(n_layers):
            w_qkv = normal(3, n_heads, d_model, d_head, std=d_model**-0.5)
            w_o = normal(n_heads, d_head, d_model, std=d_model**-0.5)
            w_in, b_in = normal(d_model, d_mlp, std=d_model**-0.5), normal(d_mlp, std=0.1)
            w_out, b_out = normal(d_mlp, d_model, std=d_mlp**-0.5), normal(d_model, std=0.1)
            h = _layer_norm(x)
            q, k, v = (torch.einsum("pd,hde->hpe", h, w) for w in w_qkv)
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(d_head)  # [head, query, key]
            pattern = torch.softmax(scores.masked_fill(~mask, -math.inf), dim=-1)
            z = x + torch.einsum("hqk,hke,hed->qd", pattern, v, w_o)
            x = z + torch.nn.functional.gelu(_layer_norm(z) @ w_in + b_in) @ w_out + b_out
            states.append(x)
        return torch.stack(states)
