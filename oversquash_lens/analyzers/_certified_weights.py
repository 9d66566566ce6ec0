"""The certified bound's weight constants (exact, once per model) and the block parts it reads.

``s_h = ‖W_V^h W_O^h‖₂`` per head and the MLP's ``‖W_out‖₂`` and ``‖[W_gate W_in]‖₂`` per
layer depend on the weights alone. They are exact (small QR/SVD, or the eigenvalues of
the smaller Gram matrix) and cached per model while its weights' digest is unchanged.
"""

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .._tensors import weights_digest

MLP_BOUNDS = ("lipschitz", "power")


def head_value_output_norms(
    w_v: Tensor, w_o: Tensor, n_heads: int
) -> "torch.Tensor":  # [head] float64
    """``s_h = ‖W_V^{g(h)} W_O^h‖₂`` for every query head, exactly, in float64.

    Args:
        w_v: ``[value_heads, d_model, d_head]`` (one per query head, or one per KV group).
        w_o: ``[n_heads, d_head, d_model]``.
        n_heads: Query heads (query head h reads value head ``h // (n_heads / value_heads)``).

    Returns:
        ``[n_heads]`` float64. The d×d product has rank ≤ d_head, so its norm is that of
        the small ``R_V R_Oᵀ`` of the two thin QR factorizations.

    Example:
        >>> import torch
        >>> w_v = torch.eye(3)[None, :, :2]          # d_model 3, d_head 2
        >>> w_o = 2 * torch.eye(3)[None, :2, :]
        >>> head_value_output_norms(w_v, w_o, 1)
        tensor([2.], dtype=torch.float64)
    """
    group = n_heads // w_v.shape[0]
    values = w_v.to(torch.float64).repeat_interleave(group, dim=0)  # [H, d, k]
    r_v = torch.linalg.qr(values).R  # [H, k, k]
    r_o = torch.linalg.qr(w_o.to(torch.float64).transpose(1, 2)).R  # [H, k, k]
    return torch.linalg.matrix_norm(r_v @ r_o.transpose(1, 2), ord=2)


def activations() -> dict[str, Callable[[Tensor], Tensor]]:
    """TransformerLens's elementwise activation functions, by ``cfg.act_fn`` name."""
    from transformer_lens.utilities.activation_functions import SUPPORTED_ACTIVATIONS

    skip = {"solu_ln"}  # followed by a LayerNorm inside the MLP: not elementwise
    return {k: v for k, v in SUPPORTED_ACTIVATIONS.items() if k not in skip}


_CACHE: "weakref.WeakKeyDictionary[Any, dict[str, tuple[str, Any]]]" = weakref.WeakKeyDictionary()


def cached(model: Any, name: str, make: Callable[[], Any]) -> Any:
    """``make()``, computed once per model while its weights stay the same (by digest)."""
    key = weights_digest(model)
    store = _CACHE.setdefault(model, {})
    if name not in store or store[name][0] != key:
        store[name] = (key, make())
    return store[name][1]


def mlp_weight_norms(model: Any, blocks: list[Any]) -> tuple[list[float], list[float]]:
    """``‖W_out‖₂`` and ``‖[W_gate W_in]‖₂`` (or ``‖W_in‖₂``) per block (0 without an MLP).

    One block at a time (never a stack of all layers' weights), cached per model.
    """

    def make() -> tuple[list[float], list[float]]:
        outs, ins = [], []
        for block in blocks:
            mlp = getattr(block, "mlp", None) if block is not None else None
            if mlp is None:
                outs.append(0.0)
                ins.append(0.0)
                continue
            w_in, w_out = mlp.W_in.detach(), mlp.W_out.detach()
            gate = getattr(mlp, "W_gate", None)
            stacked = torch.cat([gate.detach(), w_in], dim=-1) if gate is not None else w_in
            outs.append(float(spectral_norms(w_out[None])[0]))
            ins.append(float(spectral_norms(stacked[None])[0]))
        return outs, ins

    return cached(model, "mlp", make)


def spectral_norms(weights: Tensor) -> Tensor:
    """``‖W_ℓ‖₂`` of ``[layer, d_in, d_out]`` matrices, exactly (eigenvalues of the Gram)."""
    w = weights.to(torch.float64)
    small = w @ w.transpose(-1, -2) if w.shape[-2] <= w.shape[-1] else w.transpose(-1, -2) @ w
    return torch.linalg.eigvalsh(small)[..., -1].clamp_min(0).sqrt()


# ---------------------------------------------------------------- a block's parts
class Refused(Exception):
    """A block the certified bound does not cover (message names the component)."""


def required(value: Tensor | None) -> Tensor:
    """``value``, or :class:`Refused` when the hook point that gives it has not fired."""
    if value is None:
        raise Refused("a hook point the bound needs did not fire before the next one")
    return value


def call(module: Callable[[Tensor], Tensor], x: Any) -> Tensor:
    """``module(x)`` without a graph, once ``x`` is there (see :func:`required`)."""
    with torch.no_grad():
        return module(required(x))


_MISSING = object()


def block_weight(block: Any, part: str, name: str, default: Any = _MISSING) -> Any:
    """One block's own weight (``block.attn.W_V``, ``block.mlp.W_in``...), never a stack.

    A model-level ``model.W_in`` stacks every layer into a new tensor (a copy of all the
    MLP weights); per block they are the parameters themselves. Biases a layer does not
    have come back as ``default``.
    """
    try:
        value = getattr(getattr(block, part), name)
    except (AttributeError, TypeError):
        value = None
    if isinstance(value, Tensor):
        return value.detach()
    if default is _MISSING:
        raise Refused(f"block has no {part}.{name} to bound")
    return default


def mlp_sub_block(block: Any) -> Callable[[Tensor], Tensor] | None:
    """``z ↦ [ln2_post](mlp(ln2(z)))``: what the MLP adds to the residual stream."""
    mlp, ln2 = getattr(block, "mlp", None), getattr(block, "ln2", None)
    if not isinstance(mlp, torch.nn.Module):
        return None
    post = getattr(block, "ln2_post", None)
    pre = ln2 if isinstance(ln2, torch.nn.Module) else (lambda t: t)

    def sub(z: Tensor) -> Tensor:
        out = mlp(pre(z))
        return post(out) if isinstance(post, torch.nn.Module) else out

    return sub
