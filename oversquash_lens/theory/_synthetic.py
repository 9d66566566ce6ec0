"""Untrained single-layer decoders: how fast a repeated last token stops mattering (Fig 8, 10).

Setup (the paper leaves the distributions open; this is the documented choice):

- one attention head of width ``d_model`` (default 64), scores ``q·k/√d_model``, causal
  softmax, and a residual connection: the last token's representation after the layer
  is ``z_n = Σ_j α_nj · W_V x_j + x_n``. No norm and no MLP: they act on ``z_n`` alone, so
  they cannot separate two equal ``z_n``;
- per seed, one draw of the weights ``W_Q, W_K, W_V`` (i.i.d. ``N(0, 1/d)`` entries,
  fan-in initialisation) and of the token embeddings (i.i.d. ``N(0, I/d)``, expected
  norm 1; ``u`` is sampled in float32, then upcast): ``n − 1`` tokens ``u`` and one
  token ``a``. Every operation is float64;
- ``v = [u, a]`` has length ``n`` and ``v* = [u, a, a]`` length ``n + 1``; the curve is
  ``D(n) = ‖z*_{n+1} − z_n‖`` in L1 (Fig 10) and L∞ (Fig 8). Each seed draws ``u`` once
  for the longest length; shorter lengths use its prefixes.

Positional encodings (``pe``):

- ``"nope"``: none. Exactly ``z* − z = α*_{n+1,n+1}·(W_V a − attention output)``: Θ(1/n).
- ``"sinusoidal"``: the Vaswani table ``p_i`` (entries in [−1, 1], times ``pe_scale``)
  added to the projected queries and keys, ``(q_i + p_i)·(k_j + p_j)/√d``. Position
  enters the scores only, as Thm 4.2 assumes.
- ``"sinusoidal_residual"``: the same table added to the token embeddings, so it also
  reaches the values and the residual stream. The residual term ``p_n − p_{n−1}`` never
  vanishes: no collapse (this variant violates Thm 4.2's assumption, on purpose).
- ``"rope"``: queries and keys rotated by ``i·θ_k``, ``θ_k = base^(−2k/d)`` (halves
  layout, as Llama/GPT-NeoX).
- ``"alibi"``: score bias ``−alibi_slope·(i − j)``. The bias is unbounded, so the weight
  of the last token tends to ``≈ 1 − e^{−slope}``, not 0: the curve levels off at about
  ``slope·‖W_V a − output‖`` once ``n ≫ 1/slope``.

Only the last query row enters ``z_n``, and the causal mask excludes nothing from that
row, so each length costs ``O(n·d)`` per seed: no ``n × n`` matrix is ever formed.
"""

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ._threads import one_intra_op_thread
from ._types import Curve, Lengths, SeedCurves

__all__ = ["CollapseCurve", "PositionalEncoding", "SyntheticLayer", "synthetic_collapse_curve"]

PositionalEncoding = Literal["nope", "sinusoidal", "sinusoidal_residual", "rope", "alibi"]
"""The positional encodings of ``SyntheticLayer`` (``pe``), as the module docstring lists them."""
_ENCODINGS: tuple[str, ...] = ("nope", "sinusoidal", "sinusoidal_residual", "rope", "alibi")
_CHUNK_ELEMENTS = 2**22  # float64 elements per [seeds, tokens, d_model] block (32 MiB)
_F64 = torch.float64


@dataclass(frozen=True)
class SyntheticLayer:
    """One untrained attention layer with a positional encoding (see the module docstring).

    Attributes:
        pe: ``"nope"``, ``"sinusoidal"``, ``"sinusoidal_residual"``, ``"rope"`` or
            ``"alibi"``.
        d_model: Width of the residual stream and of the single head (even).
        pe_scale: Amplitude multiplier of the sinusoidal table.
        base: Frequency base of the sinusoidal table and of RoPE.
        alibi_slope: ALiBi slope; 2^-8 is what the standard slope formula gives a
            single head.

    Example:
        >>> SyntheticLayer("rope").d_model
        64
    """

    pe: PositionalEncoding = "nope"
    d_model: int = 64
    pe_scale: float = 1.0
    base: float = 10000.0
    alibi_slope: float = 2.0**-8

    def __post_init__(self) -> None:
        if self.pe not in _ENCODINGS:
            raise ValueError(f"unknown positional encoding {self.pe!r}; use one of {_ENCODINGS}")
        if self.d_model < 2 or self.d_model % 2:
            raise ValueError(f"d_model must be even and >= 2 (RoPE pairs), got {self.d_model}")
        if not (self.base > 1 and math.isfinite(self.base)):
            raise ValueError(f"base must be a finite number > 1, got {self.base}")
        if not (math.isfinite(self.pe_scale) and math.isfinite(self.alibi_slope)):
            raise ValueError("pe_scale and alibi_slope must be finite")
        if self.alibi_slope < 0:
            raise ValueError(f"alibi_slope must be >= 0 (a decaying bias), got {self.alibi_slope}")


@dataclass(frozen=True)
class CollapseCurve:
    """Distances between the last-token representations of ``[u, a]`` and ``[u, a, a]``.

    Attributes:
        layer: The layer measured.
        lengths: ``[length]`` lengths ``n`` of the shorter sequence.
        l1: ``[seed, length]`` L1 distances.
        linf: ``[seed, length]`` L∞ distances.
        first_seed: Seeds are ``first_seed, ..., first_seed + n_seeds − 1``.
    """

    layer: SyntheticLayer
    lengths: Lengths
    l1: SeedCurves
    linf: SeedCurves
    first_seed: int = 0

    def __post_init__(self) -> None:
        if self.l1.shape != self.linf.shape or self.l1.shape[1:] != self.lengths.shape:
            raise ValueError(
                f"l1 {tuple(self.l1.shape)} and linf {tuple(self.linf.shape)} must both be "
                f"[seed, {self.lengths.shape[0]}]"
            )

    @property
    def n_seeds(self) -> int:
        """Number of seeds averaged."""
        return self.l1.shape[0]

    def mean(self, norm: Literal["l1", "linf"] = "l1") -> Curve:
        """Mean distance over seeds at each length.

        Args:
            norm: ``"l1"`` or ``"linf"``.

        Returns:
            ``[length]`` float64 means.
        """
        if norm not in ("l1", "linf"):
            raise ValueError(f"norm must be 'l1' or 'linf', got {norm!r}")
        return (self.l1 if norm == "l1" else self.linf).mean(dim=0)


def _sinusoidal(positions: Tensor, d: int, base: float) -> Tensor:
    """Vaswani table: even columns sin(pos·θ_k), odd columns cos(pos·θ_k)."""
    theta = base ** (-torch.arange(0, d, 2, dtype=_F64) / d)
    angle = positions.to(_F64)[:, None] * theta[None, :]
    table = torch.empty(positions.shape[0], d, dtype=_F64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle)
    return table


def _rotate(x: Tensor, positions: Tensor, base: float) -> Tensor:
    """RoPE, halves layout: rotate (x_k, x_{k+d/2}) by pos·θ_k. x: [..., pos, d]."""
    d = x.shape[-1]
    theta = base ** (-torch.arange(0, d, 2, dtype=_F64) / d)
    angle = positions.to(_F64)[:, None] * theta[None, :]
    cos, sin = torch.cos(angle), torch.sin(angle)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def _draw_into(seed: int, w: Tensor, a: Tensor, u: Tensor) -> None:
    """Fill one seed's weights w [3, d, d] (W_Q, W_K, W_V), token a [d] and tokens u [n, d].

    The many tokens u are drawn in float32 (five times faster than float64 on CPU) and
    upcast; every later operation is float64.
    """
    gen = torch.Generator().manual_seed(seed)
    std = w.shape[-1] ** -0.5
    for buffer in (w, a):
        torch.randn(buffer.shape, generator=gen, dtype=_F64, out=buffer)
    u.copy_(torch.randn(u.shape, generator=gen, dtype=torch.float32))
    for buffer in (w, a, u):
        buffer.mul_(std)


def _draw(seed: int, d: int, n_tokens: int) -> tuple[Tensor, Tensor, Tensor]:
    """One seed's weights [3, d, d], token a [d] and tokens u [n_tokens, d]."""
    w, a = torch.empty(3, d, d, dtype=_F64), torch.empty(d, dtype=_F64)
    u = torch.empty(n_tokens, d, dtype=_F64)
    _draw_into(seed, w, a, u)
    return w, a, u


def _chunk_distances(
    layer: SyntheticLayer, seeds: range, lengths: list[int]
) -> tuple[Tensor, Tensor]:
    """L1 and L∞ distances [len(seeds), len(lengths)] for one block of seeds.

    Without RoPE the keys and values of u are never projected: ``q·W_K x_j`` is
    ``(W_K^T q)·x_j`` and ``Σ α_j W_V x_j`` is ``W_V Σ α_j x_j``, so each length costs two
    matrix-vector passes over the raw tokens.
    """
    d, n_max, g = layer.d_model, max(lengths), len(seeds)
    w = torch.empty(g, 3, d, d, dtype=_F64)
    a = torch.empty(g, d, dtype=_F64)
    u = torch.empty(g, n_max - 1, d, dtype=_F64)
    for i, seed in enumerate(seeds):
        _draw_into(seed, w[i], a[i], u[i])
    w_q, w_k, w_v = (w[:, i].transpose(-1, -2) for i in range(3))  # x @ W^T, [g, d, d]
    u_pos = torch.arange(n_max - 1)
    table_u = layer.pe_scale * _sinusoidal(u_pos, d, layer.base)
    if layer.pe == "sinusoidal_residual":
        u += table_u  # in place: from here on the positions belong to the tokens
    k_u = _rotate(u @ w_k, u_pos, layer.base) if layer.pe == "rope" else None
    scale = d**-0.5
    l1 = torch.empty(g, len(lengths), dtype=_F64)
    linf = torch.empty_like(l1)
    for col, n in enumerate(lengths):
        m = n - 1  # tokens of u in both sequences, at positions 0 .. m-1
        # The token a at position m (end of v = [u, a]) and m+1 (end of v* = [u, a, a]).
        pos = torch.tensor([m, m + 1])
        x_a = a[:, None, :].expand(-1, 2, -1)  # [g, 2, d]
        table_a = layer.pe_scale * _sinusoidal(pos, d, layer.base)
        if layer.pe == "sinusoidal_residual":
            x_a = x_a + table_a
        q, k, v = x_a @ w_q, x_a @ w_k, x_a @ w_v
        if layer.pe == "sinusoidal":
            q, k = q + table_a, k + table_a
        elif layer.pe == "rope":
            q, k = _rotate(q, pos, layer.base), _rotate(k, pos, layer.base)
        # Scores of u [g, m, 2] and of the two a keys [g, 2, 2]; column c: query at m + c.
        if k_u is not None:
            s_u = k_u[:, :m] @ q.transpose(-1, -2)
        else:
            s_u = u[:, :m] @ (q @ w_k.transpose(-1, -2)).transpose(-1, -2)
            if layer.pe == "sinusoidal":
                s_u = s_u + table_u[:m] @ q.transpose(-1, -2)
        s = torch.cat([s_u, k @ q.transpose(-1, -2)], dim=1) * scale  # [g, m + 2, 2]
        if layer.pe == "alibi":
            distance = pos[None, :] - torch.arange(m + 2)[:, None]
            s = s - layer.alibi_slope * distance.to(_F64)
        s[:, m + 1, 0] = -math.inf  # causal: v = [u, a] has no token at m + 1
        alpha = torch.softmax(s, dim=1).transpose(-1, -2)  # [g, 2, m + 2]
        out = (alpha[..., :m] @ u[:, :m]) @ w_v + alpha[..., m:] @ v + x_a  # [g, 2, d]
        diff = out[:, 1] - out[:, 0]
        l1[:, col] = diff.abs().sum(dim=-1)
        linf[:, col] = diff.abs().amax(dim=-1)
    return l1, linf


def synthetic_collapse_curve(
    layer: SyntheticLayer | PositionalEncoding,
    lengths: Lengths | list[int] | tuple[int, ...],
    seeds: int = 100,
    *,
    first_seed: int = 0,
) -> CollapseCurve:
    """Distance between the last-token outputs for ``[u, a]`` and ``[u, a, a]``, per length.

    Seeds run in blocks of about 32 MiB per tensor on one intra-op thread (restored
    afterwards), so 100 seeds at ``n = 10000`` take a few seconds. The paper found the
    spread heavy-tailed and averaged ≥ 100 seeds; in this setup it is mild (NoPE,
    ``n = 1000``: ``n·D`` has mean 6.35, standard deviation 0.84, range 4.7–9.1 over 200
    seeds).

    Args:
        layer: A :class:`SyntheticLayer`, or just its ``pe`` name (other fields default).
        lengths: Lengths ``n ≥ 1`` of the shorter sequence ``[u, a]``.
        seeds: Number of seeds (independent draws of weights and tokens).
        first_seed: The first seed.

    Returns:
        A :class:`CollapseCurve` with per-seed L1 and L∞ distances.

    Example:
        >>> curve = synthetic_collapse_curve("nope", [10, 100, 1000], seeds=20)
        >>> d = curve.mean("l1")
        >>> bool(d[0] > d[1] > d[2]), round(float(d[2] * 1000), 1)  # ≈ c/n with c ≈ 6
        (True, 6.2)
    """
    if isinstance(layer, str):
        layer = SyntheticLayer(pe=layer)
    lens = [int(n) for n in (lengths.tolist() if isinstance(lengths, Tensor) else lengths)]
    if not lens or min(lens) < 1:
        raise ValueError(f"lengths must be a non-empty list of integers >= 1, got {lens}")
    if seeds < 1:
        raise ValueError(f"seeds is a count and must be >= 1, got {seeds}")
    per_block = max(1, _CHUNK_ELEMENTS // (max(lens) * layer.d_model))
    l1_parts, linf_parts = [], []
    with one_intra_op_thread():
        for start in range(first_seed, first_seed + seeds, per_block):
            block = range(start, min(start + per_block, first_seed + seeds))
            l1, linf = _chunk_distances(layer, block, lens)
            l1_parts.append(l1)
            linf_parts.append(linf)
    return CollapseCurve(
        layer=layer,
        lengths=torch.tensor(lens, dtype=torch.int64),
        l1=torch.cat(l1_parts),
        linf=torch.cat(linf_parts),
        first_seed=first_seed,
    )
