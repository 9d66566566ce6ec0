"""The certified path bound: Thm 5.1's path sum with constants measured on the run.

With every attention pattern held fixed, block ℓ maps the residual stream v to v′ by

    z_i  = v_i + P_i( Σ_h Σ_{j≤i} α^h_ij · n1(v_j) W_V^h W_O^h + b )     (P: post-attention norm)
    v′_i = z_i + f(z_i)                      (sequential; f = [post-norm ∘] MLP ∘ n2)
    v′_i = v_i + P_i(…) + f(v_i)             (parallel attention and MLP, GPT-J style)

so its Jacobian block ∂v′_i/∂v_j is M_i (δ_ij I + J_P(a_i) Σ_h α^h_ij (W_V^h W_O^h)ᵀ J_n1(v_j))
with M_i = I + J_f(z_i). The triangle inequality and submultiplicativity bound its
spectral norm by

    B(ℓ)_ij = m_i (δ_ij + p_i Σ_h α^h_ij s_h ρ_j)        (parallel: δ_ij m_i + p_i Σ_h …)

where s_h = ‖W_V^h W_O^h‖₂ (exact, from the weights), ρ_j ≥ ‖J_n1(v_j)‖₂, p_i ≥ ‖J_P(a_i)‖₂
and m_i ≥ ‖I + J_f(z_i)‖₂ are measured on this run, and the chain rule over all paths
gives ‖∂v_n(ℓ+1)/∂v_i(0)‖₂ ≤ [B(ℓ)⋯B(0)]_{n,i}; y_n adds the factor ‖J_final(v_n(L))‖₂.
The position-wise norms are found by power iteration on the model's own modules
(norms, MLPs), batched over positions. Heads are summed, not averaged. The derivation and
its assumptions are written out in ``docs/theory.md``.

Every assumption is checked on the run: the values are n1's output times W_V (+ b_V),
each head's output is its pattern times its values, the attention output is Σ_h z_h W_O^h
(+ b_O) (then the post-norm), the residual stream adds them up, and recomputing the norms
and the MLP from their inputs gives what the run gave. A block that breaks one is refused,
naming the component, instead of bounded wrongly.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .. import _hooknames as names
from .._errors import UnsupportedArchitectureError
from ..capture._hooks import probe_pass
from . import _jacobian as jac
from ._certified_weights import (
    MLP_BOUNDS,
    Refused,
    activations,
    block_weight,
    cached,
    call,
    head_value_output_norms,
    mlp_sub_block,
    mlp_weight_norms,
    required,
)
from ._path_math import PathProduct, reduce_heads

if TYPE_CHECKING:  # a type only: these take any object with the adapter's attributes
    from .._adapter import ModelAdapter

# Relative deviation allowed when a recomputed quantity is compared with the run's. A
# structural mismatch (another formula) deviates by O(1); rounding by far less, but a
# float64 run may still compute a norm in float32 internally (Hugging Face's RMSNorm), so
# recomputing it on another slice of the same tensor differs by float32 rounding.
CHECK_RTOL = {torch.float64: 1e-6, torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 5e-2}


@dataclass
class _Layer:
    """What one block's hooks delivered so far (dropped when the block ends)."""

    x: Tensor | None = None  # residual stream entering the block
    normalized: Tensor | None = None
    rho: Tensor | None = None  # [batch, key_pos] ‖J_n1(v_j)‖
    values: Tensor | None = None
    z_expected: Tensor | None = None
    weighted: Tensor | None = None  # [batch, query, key] Σ_h s_h α^h_ij ρ_j
    attn_raw: Tensor | None = None  # Σ_h z_h W_O^h + b_O
    contribution: Tensor | None = None  # what attention adds to the residual stream
    post: Tensor | None = None  # [batch, query] ‖J_P(a_i)‖ (ones without a post-norm)
    mid: Tensor | None = None
    mlp: dict[str, Tensor] = field(default_factory=dict)  # the MLP's hook points


@dataclass
class CertifiedStream:
    """Measures each block's constants as its hooks fire; multiplies the bound matrices.

    One block's worth of tensors is held at a time (the running product is one n×n
    matrix per batch row, like every other path method).
    """

    adapter: "ModelAdapter"
    iterations: int = 100
    tol: float = 1e-6
    seed: int = 0
    mlp: str = "lipschitz"
    refusal: str | None = None
    _layer: _Layer = field(default_factory=_Layer)
    _product: PathProduct = field(default_factory=PathProduct)
    _last: Tensor | None = None  # v_n(L) at the last block

    def __post_init__(self) -> None:
        model, a = self.adapter.model, self.adapter
        self.n_layers, self.n_heads = a.n_layers, a.n_heads
        self.parallel = bool(getattr(a.cfg, "parallel_attn_mlp", False))
        self.blocks = [model.blocks[layer] for layer in range(self.n_layers)]
        self.head_norms = cached(model, "heads", lambda: torch.stack([
            head_value_output_norms(block_weight(b, "attn", "W_V"), block_weight(b, "attn", "W_O"),
                                    self.n_heads)
            for b in self.blocks
        ]))  # fmt: skip
        if self.mlp not in MLP_BOUNDS:
            raise ValueError(f"mlp must be one of {MLP_BOUNDS}, got {self.mlp!r}")
        available = a.fired_hooks()
        self.has_mid = [names.resid_mid(i) in available for i in range(self.n_layers)]
        self.has_mlp = [mlp_sub_block(block) is not None for block in self.blocks]
        self.gated = [names.mlp_pre_linear(i) in available for i in range(self.n_layers)]
        if self.mlp == "lipschitz":
            self._lipschitz_setup(model, available)
        self.has_final = names.FINAL_NORM in available
        self._generator = torch.Generator().manual_seed(self.seed)

    # ------------------------------------------------------------------ wiring
    def hook_names(self) -> list[str]:
        """Every hook point of every block the bound reads, in firing order, then y_n."""
        out: list[str] = []
        for i in range(self.n_layers):
            out.append(names.resid_pre(i))
            out += [names.v(i), names.pattern(i), names.z(i), names.attn_out(i)]
            if self.has_mid[i]:
                out.append(names.resid_mid(i))
            if self.mlp == "lipschitz" and self.has_mlp[i]:
                out += [p for p in names.mlp_points(i) if self.gated[i] or "linear" not in p]
            out.append(names.resid_post(i))
        return out + ([names.FINAL_NORM] if self.has_final else [])

    def see(self, name: str, activation: Tensor) -> Tensor:
        """Take one hook's activation; the last row of the bound at each block's end.

        Returns:
            ``[batch, 1, pos]`` float64 at ``hook_resid_post``; ``[batch]`` (the final
            norm's factor) at y_n; an empty marker elsewhere.
        """
        empty = torch.empty(0)
        if self.refusal is not None:
            return empty
        try:
            with torch.enable_grad(), probe_pass(self.adapter.model):
                return self._see(name, activation.detach())
        except Refused as refused:
            self.refusal = str(refused)
            self._layer, self._last = _Layer(), None
            self._product.clear()
            return empty

    def _see(self, name: str, act: Tensor) -> Tensor:
        layer = _layer_of(name)
        state, empty = self._layer, torch.empty(0)
        if name == names.FINAL_NORM:
            return self._final(act)
        assert layer is not None
        block = self.blocks[layer]
        if name == names.resid_pre(layer):
            if layer == 0:
                self._product.clear()
            norm = getattr(block, "ln1", None)
            if not isinstance(norm, torch.nn.Module):
                raise Refused(f"block {layer} has no first norm module (ln1) to measure")
            # The values are checked against this recomputation (hook_v), which checks it.
            self._layer = _Layer(x=act, normalized=call(norm, act), rho=self._spectral(norm, act))
            return empty
        if name == names.v(layer):
            expected = self._values(layer, required(state.normalized), act.shape[2])
            state.values = self._check("the attention values (hook_v)", layer, expected, act)
            return empty
        if name == names.pattern(layer):
            return self._pattern(layer, act)
        if name == names.z(layer):
            self._check(
                "the head outputs (hook_z = pattern · values)", layer, state.z_expected, act
            )
            w_o, b_o = block_weight(block, "attn", "W_O"), block_weight(block, "attn", "b_O", None)
            raw = torch.einsum("bqhd,hdm->bqm", act, w_o.to(act.dtype))
            state.attn_raw = raw if b_o is None else raw + b_o.to(act.dtype)
            return empty
        if name == names.attn_out(layer):
            return self._attention_out(layer, block, act)
        if name == names.resid_mid(layer):
            expected = required(state.x) + required(state.contribution)
            state.mid = self._check("the residual sum after attention", layer, expected, act)
            return empty
        if name == names.resid_post(layer):
            return self._block_end(layer, block, act)
        if name in names.mlp_points(layer):
            state.mlp[name.rsplit(".", 1)[-1]] = act
            return empty
        return empty

    # ------------------------------------------------------------------ pieces
    def _values(self, layer: int, normalized: Tensor, value_heads: int) -> Tensor:
        block = self.blocks[layer]
        w_v, b_v = block_weight(block, "attn", "W_V"), block_weight(block, "attn", "b_V", None)
        if b_v is None:
            b_v = torch.zeros(w_v.shape[::2])
        if w_v.shape[0] != value_heads:  # W_V per query head, hook_v per KV head
            step = w_v.shape[0] // value_heads
            w_v, b_v = w_v[::step], b_v[::step]
        values = torch.einsum("bpm,hmd->bphd", normalized.to(w_v.dtype), w_v)
        return values + b_v.to(values)

    def _pattern(self, layer: int, pattern: Tensor) -> Tensor:
        state = self._layer
        if pattern.shape[-1] != pattern.shape[-2]:
            raise Refused("a KV-cached step (fewer queries than keys) cannot be bounded")
        values = required(state.values)
        group = self.n_heads // values.shape[2]
        expanded = values.repeat_interleave(group, dim=2)  # [batch, key, head, d_head]
        state.z_expected = torch.einsum("bhqk,bkhd->bqhd", pattern.to(expanded.dtype), expanded)
        weighted = reduce_heads(pattern, weights=self.head_norms[layer])
        state.weighted = weighted.mul_(required(state.rho).to(weighted.device)[:, None, :])
        return torch.empty(0)

    def _attention_out(self, layer: int, block: Any, act: Tensor) -> Tensor:
        state = self._layer
        raw = required(state.attn_raw)
        post = getattr(block, "ln1_post", None)
        if post is None:
            state.contribution = self._check("the attention output (Σ_h z_h W_O^h + b_O)",
                                             layer, raw, act)  # fmt: skip
            state.post = _ones(raw)
        else:
            state.contribution = self._check(
                "the post-attention norm (ln1_post)", layer, call(post, raw), act
            )
            state.post = self._spectral(post, raw)
        return torch.empty(0)

    def _block_end(self, layer: int, block: Any, act: Tensor) -> Tensor:
        state = self._layer
        x, weighted = required(state.x), required(state.weighted)
        start = x if self.parallel else (state.mid if state.mid is not None else None)
        sub = mlp_sub_block(block)
        if start is None or sub is None:  # attention only: v' = v + attention
            expected, mlp_norm = x + required(state.contribution), _ones(x)
        elif self.mlp == "lipschitz":
            expected = x + required(state.contribution) if self.parallel else start
            expected = expected + required(state.mlp.get("hook_mlp_out"))
            mlp_norm = self._lipschitz(layer, block, start)
        else:
            expected = (x + required(state.contribution) if self.parallel else start) + call(
                sub, start
            )
            mlp_norm = self._spectral(sub, start, identity=True)
        self._check("the block output (residual + MLP)", layer, expected, act)
        matrix = weighted * required(state.post).to(weighted.device)[:, :, None]
        mlp_norm = mlp_norm.to(matrix.device, torch.float64)
        if self.parallel:
            matrix.diagonal(dim1=-2, dim2=-1).add_(mlp_norm)
        else:
            matrix.diagonal(dim1=-2, dim2=-1).add_(1.0)
            matrix.mul_(mlp_norm[:, :, None])
        self._product.push(matrix)
        self._layer = _Layer()
        if layer == self.n_layers - 1:
            self._last = act[:, -1:]
        return self._product.last_row()[:, None, :]

    def _final(self, act: Tensor) -> Tensor:
        last = self._last
        if last is None:
            raise Refused("the final norm fired before the last block ended")
        norm = getattr(self.adapter.model, "ln_final", None)
        if not isinstance(norm, torch.nn.Module):
            return torch.ones(act.shape[0], dtype=torch.float64)
        self._check("the final norm (ln_final)", self.n_layers, call(norm, last), act[:, -1:])
        return self._spectral(norm, last)[:, 0]

    # ------------------------------------------------------------------ the MLP, closed form
    def _lipschitz_setup(self, model: Any, available: set[str]) -> None:
        """Weight norms and the activation function for the closed-form MLP bound."""
        act_name = str(getattr(self.adapter.cfg, "act_fn", ""))
        known = activations()
        self.activation = known.get(act_name)
        mlp_layers = [i for i in range(self.n_layers) if self.has_mlp[i]]
        if mlp_layers and self.activation is None:
            raise UnsupportedArchitectureError(
                f"certified paths cannot bound an MLP with activation {act_name!r} in closed "
                "form (known: " + ", ".join(sorted(known)) + "); pass mlp='power'"
            )
        missing = [p for i in mlp_layers for p in names.mlp_points(i)
                   if p not in available and (self.gated[i] or "linear" not in p)]  # fmt: skip
        if missing:
            raise UnsupportedArchitectureError(
                f"certified paths (mlp='lipschitz') need the MLP hook points {missing[:3]}, "
                "which this model does not fire (a mixture of experts?); pass mlp='power'"
            )
        self.out_norms, self.in_norms = mlp_weight_norms(
            model, [self.blocks[i] if self.has_mlp[i] else None for i in range(self.n_layers)]
        )

    def _lipschitz(self, layer: int, block: Any, start: Tensor) -> Tensor:
        """``1 + p2·‖W_out‖·max_k c_k·‖W_in‖·ρ2 ≥ ‖I + J_f‖`` at every position."""
        parts, act = self._layer.mlp, self.activation
        assert act is not None
        w_in, w_out = block_weight(block, "mlp", "W_in"), block_weight(block, "mlp", "W_out")
        pre, post = required(parts.get("hook_pre")), required(parts.get("hook_post"))
        ln2 = getattr(block, "ln2", None)
        norm = ln2 if isinstance(ln2, torch.nn.Module) else (lambda t: t)
        u = call(norm, start)  # the checks run in the model's dtype; bounds in float64
        leaf = pre.detach().to(torch.float64).requires_grad_(True)
        value = act(leaf)
        (slope,) = torch.autograd.grad(value.sum(), leaf)  # φ' elementwise
        value = value.detach()
        if self.gated[layer]:
            w_gate = block_weight(block, "mlp", "W_gate")
            linear = required(parts.get("hook_pre_linear"))
            self._constant_offset("the gate (hook_pre = ln2(z)·W_gate)", layer, pre,
                                  u @ w_gate.to(u))  # fmt: skip
            self._constant_offset("the linear branch (ln2(z)·W_in)", layer, linear,
                                  u @ w_in.to(u))  # fmt: skip
            linear = linear.to(torch.float64)
            self._constant_offset("the gated product φ(gate)·linear", layer, post, value * linear)
            scale = ((slope * linear).square() + value.square()).sqrt().amax(-1)
        else:
            self._constant_offset("the MLP input (hook_pre = ln2(z)·W_in)", layer, pre,
                                  u @ w_in.to(u))  # fmt: skip
            self._check("the activation (hook_post = φ(hook_pre))", layer, value, post)
            scale = slope.abs().amax(-1)
        raw = post @ w_out.to(post)
        b_out = block_weight(block, "mlp", "b_out", None)
        if b_out is not None:
            raw = raw + b_out.to(raw)
        ln2_post = getattr(block, "ln2_post", None)
        mlp_out = required(parts.get("hook_mlp_out"))
        if isinstance(ln2_post, torch.nn.Module):
            self._check("the post-MLP norm (ln2_post)", layer, call(ln2_post, raw.to(mlp_out)),
                        mlp_out)  # fmt: skip
            post_norm = self._spectral(ln2_post, raw.to(mlp_out))
        else:
            self._check("the MLP output (hook_post·W_out + b_out)", layer, raw, mlp_out)
            post_norm = _ones(start)
        rho2 = self._spectral(norm, start) if isinstance(ln2, torch.nn.Module) else _ones(start)
        weights = float(self.out_norms[layer] * self.in_norms[layer])
        return 1.0 + post_norm * rho2 * scale.cpu() * weights

    def _constant_offset(self, component: str, layer: int, got: Tensor, expected: Tensor) -> None:
        """``got − expected`` must be one vector at every position (a bias), else refuse."""
        offset = got.to(torch.float64) - expected.to(torch.float64)
        self._check(component, layer, expected + offset[:, :1], got)

    # ------------------------------------------------------------------ measurement
    def _spectral(
        self, module: Callable[[Tensor], Tensor], x: Tensor, *, identity: bool = False
    ) -> Tensor:
        """``‖J‖₂`` (or ``‖I + J‖₂``) of a position-wise module at every position."""
        leaf = x.detach().requires_grad_(True)
        out = module(leaf)
        if not out.requires_grad:  # a constant map (e.g. an exactly-zero MLP)
            return torch.ones(x.shape[:2], dtype=torch.float64) if identity else _zeros(x)
        # Rounding makes estimates flicker at a few ULPs: never ask for less than that.
        tol = max(self.tol, 16 * torch.finfo(out.dtype).eps)
        return jac.pointwise_spectral(
            jac.graph_vjp(out, leaf),
            jac.graph_jvp(out, leaf),
            like=leaf,
            generator=self._generator,
            iterations=self.iterations,
            tol=tol,
            identity=identity,
        )

    def _check(self, component: str, layer: int, expected: Any, got: Tensor) -> Tensor:
        """``got`` if it equals ``expected`` within the dtype's rounding, else refuse."""
        if expected is None:
            raise Refused(
                f"cannot certify {component} of layer {layer}: it fired before the hook "
                "points it is computed from (an attention implemented apart from its hooks)"
            )
        expected = expected.to(got.dtype)
        if expected.shape != got.shape:
            raise Refused(
                f"cannot certify {component} of layer {layer}: expected shape "
                f"{tuple(expected.shape)}, the model gave {tuple(got.shape)}"
            )
        scale = float(got.abs().max()) or 1.0
        deviation = float((expected - got).abs().max())
        if deviation > CHECK_RTOL.get(got.dtype, 1e-4) * scale:
            raise Refused(
                f"cannot certify {component} of layer {layer}: recomputing it as the bound's "
                f"derivation assumes gives a different value (max deviation {deviation:.3g} "
                f"of {scale:.3g}); this architecture is outside what the bound covers"
            )
        return got


def _layer_of(name: str) -> int | None:
    parts = name.split(".")
    return int(parts[1]) if parts[0] == "blocks" else None


def _ones(x: Tensor) -> Tensor:
    return torch.ones(x.shape[:2], dtype=torch.float64)


def _zeros(x: Tensor) -> Tensor:
    return torch.zeros(x.shape[:2], dtype=torch.float64)
