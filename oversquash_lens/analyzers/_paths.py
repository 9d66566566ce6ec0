"""AttentionPaths: attention-path weights to the last token, streamed layer by layer.

As each layer's attention pattern fires, the analyzer reduces its heads to one causal
matrix Λ(ℓ), turns it into the method's transition Ā(ℓ) and multiplies it onto a running
product P = Ā(ℓ)⋯Ā(0) it holds between hooks. The run record keeps only the last row of
P per layer (plus one row per head with ``heads="each"``), so memory is O(n²) per batch
row at any time: never the L×H×n×n stack of all patterns.
"""

import dataclasses
import math
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .. import _hooknames as hooknames
from .._checks import require_int
from .._errors import IncompatibleRunError, UnsupportedArchitectureError
from .._types import Pattern
from ._base import Analyzer, RunRecord
from ._certified import CertifiedStream
from ._certified_weights import MLP_BOUNDS
from ._memory import ModelShape, Part, path_product_bytes
from ._path_math import (
    HEAD_REDUCTIONS,
    PRODUCT_DTYPES,
    PathProduct,
    RoundingBound,
    bound_constants,
    head_rows,
    largest_row_sum,
    product_dtype,
    reduce_heads,
    to_transition_,
    transition_coefficients,
    uniform_path_weights,
)
from ._path_result import PATH_METHODS, PathResult
from ._proxies import FLOW_BUDGET, ValueStream, attention_flow

if TYPE_CHECKING:  # a type only: these take any object with the adapter's attributes
    from .._adapter import ModelAdapter

# Methods that combine the heads themselves (the ``heads`` option is for the others).
OWN_HEADS = ("value", "flow", "certified")
# What ``keep`` stores instead of rows when a pattern cannot extend the product.
_CACHED_STEP, _OUT_OF_ORDER = 1.0, 2.0
# Columns ``keep`` appends after the positions: R_ℓ, the product's bits, the heads.
_EXTRA = 3
_BITS = {torch.float64: 64.0, torch.float32: 32.0}
PRODUCT_METHODS = ("bound", "rollout", "context")
HeadSpec = str | Tensor | Sequence[float] | Sequence[Sequence[float]]
Beta = float | Sequence[float]


class AttentionPaths(Analyzer[PathResult]):
    """Weight of all causal attention paths from every position to the last one.

    For each layer ℓ and position i: the (n, i) entry of Ā(ℓ)⋯Ā(0) (the paper's §5, Thm 5.1), with

    - ``method="bound"``: Ā = Λ/β1 + I, the path sum of Thm 5.1 (its constant C is
      reported apart, in ``PathResult.constant``);
    - ``method="rollout"``: Ā = ½(Λ + I), attention rollout (Abnar & Zuidema 2020);
    - ``method="context"``: Ā = Λ, cumulative context without the residual (Wu et al.);
    - ``method="value"``: value-weighted rollout: each head's attention weight times the
      norm of what the key position writes, the residual weighted by its norm, rows
      renormalised (see ``_proxies``);
    - ``method="flow"``: attention flow, the max-flow through the layered rollout graph
      (Abnar & Zuidema 2020; budgeted by ``flow_budget``);
    - ``method="certified"``: a true upper bound on ‖∂v_n(ℓ+1)/∂v_i(0)‖₂ of the
      frozen-attention Jacobian, with every constant measured on the run and heads summed
      (see ``_certified`` and ``docs/theory.md``); ``PathResult.sensitivity_bound`` adds a
      row for y_n. Architectures it cannot certify are refused, naming the component.

    Heads are reduced first: ``"mean"`` (row-stochastic), ``"max"`` (element-wise, rows may
    sum above 1), per-head weights (``[n_heads]`` or ``[n_layers, n_heads]``:
    Λ = Σ_h w_h Λ_h), or ``"each"``: the product runs on the head mean, and each head also
    gets its own row, Ā_h(ℓ)·P_{ℓ−1} (head h's layer on top of the mean product below it).
    With grouped-query attention TransformerLens reports one pattern per query head, so
    heads here are query heads.

    Each forward pass inside :func:`~oversquash_lens.attach` is one run; batch rows stay
    apart. The last position is the last column of the input: measure right-padded
    batches row by row. KV-cached generation steps (one query position) are refused.

    Args:
        method: ``"bound"``, ``"rollout"``, ``"context"``, ``"value"``, ``"flow"`` or
            ``"certified"`` (see above).
        heads: ``"mean"``, ``"max"``, ``"each"``, or non-negative head weights (bound,
            rollout and context; the others keep their own rule).
        beta1: β1, the first norm's constant (a number or one per layer; ``bound`` only).
        beta2: β2, the second norm's constant (a number or one per layer; ``bound`` only).
        beta3: β3, the final norm's constant (``bound`` only).
        sigma_psi: σ_ψ, the MLPs' Lipschitz constant (``bound`` only).
        iterations: Power-iteration steps at most for the measured norms (``certified``).
        tol: Their relative convergence tolerance (``certified``).
        seed: Seed of the power-iteration starting vectors (``certified``).
        flow_budget: Most max-flow work for ``flow`` (flows × edges).
        mlp: How ``certified`` bounds ‖I + J_MLP‖: ``"lipschitz"`` (closed form from the
            weights' spectral norms and the activation's slope at each position: fast,
            looser) or ``"power"`` (power iteration on the MLP itself: tight, ~10-70×
            slower).
        product_dtype: The running product's dtype (``bound``, ``rollout``, ``context``):
            ``"auto"`` (float64 below ``FLOAT32_FROM`` = 4096 positions, float32 from
            there when it is safe), ``"float64"`` or ``"float32"``. Either way the result
            carries a rigorous elementwise rounding bound (``PathResult.rounding_error``);
            ``heads="each"`` always multiplies in float64.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-llama")
        >>> with osl.attach(model, osl.AttentionPaths(method="rollout")) as rec:
        ...     _ = model(model.to_tokens("1 1 1"))
        >>> result = rec.result("AttentionPaths")
        >>> result.weights.shape  # [batch, layer, pos]
        torch.Size([1, 2, 4])
        >>> round(result.weights[0, -1].sum().item(), 6)  # rollout rows sum to 1
        1.0
    """

    def __init__(
        self,
        *,
        method: str = "bound",
        heads: HeadSpec = "mean",
        beta1: Beta = 1.0,
        beta2: Beta = 1.0,
        beta3: float = 1.0,
        sigma_psi: float = 1.0,
        iterations: int = 100,
        tol: float = 1e-6,
        seed: int = 0,
        flow_budget: int = FLOW_BUDGET,
        mlp: str = "lipschitz",
        product_dtype: str = "auto",
    ) -> None:
        if method not in PATH_METHODS:
            raise ValueError(f"unknown path method {method!r}: choose one of {PATH_METHODS}")
        if method in OWN_HEADS and heads != "mean":
            raise ValueError(
                f"heads applies to bound, rollout and context; {method} sums (value, "
                "certified) or averages (flow) the heads itself: leave heads='mean'"
            )
        if product_dtype not in PRODUCT_DTYPES:
            raise ValueError(
                f"product_dtype must be one of {PRODUCT_DTYPES}, got {product_dtype!r}"
            )
        if product_dtype == "float32" and (method not in PRODUCT_METHODS or heads == "each"):
            raise ValueError(
                "product_dtype='float32' applies to the running product of bound, rollout "
                f"and context with heads other than 'each'; {method} with heads={heads!r} "
                "keeps float64: leave product_dtype='auto'"
            )
        self.method = method
        self.product_dtype = product_dtype
        self.iterations = require_int("iterations", iterations, minimum=1)
        self.tol, self.seed = float(tol), require_int("seed", seed)
        self.flow_budget = require_int("flow_budget", flow_budget, minimum=1)
        if mlp not in MLP_BOUNDS:
            raise ValueError(f"mlp must be one of {MLP_BOUNDS}, got {mlp!r}")
        self.mlp = mlp
        self._stream: CertifiedStream | ValueStream | None = None
        self.head_scale: Tensor | None = None
        if isinstance(heads, str):
            if heads not in HEAD_REDUCTIONS:
                raise ValueError(
                    f"heads must be one of {HEAD_REDUCTIONS} or a tensor of head weights, "
                    f"got {heads!r}"
                )
            self.heads = heads
        else:
            scale = torch.as_tensor(heads, dtype=torch.float64).detach().cpu()
            if scale.ndim not in (1, 2) or not bool(torch.isfinite(scale).all()):
                raise ValueError(
                    "head weights must be finite, shaped [n_heads] or [n_layers, n_heads]"
                )
            if bool((scale < 0).any()):
                raise ValueError("head weights must be non-negative (they weight paths)")
            self.heads, self.head_scale = "weighted", scale
        self.beta1, self.beta2 = beta1, beta2
        self.beta3, self.sigma_psi = float(beta3), float(sigma_psi)
        if not (math.isfinite(self.beta3) and self.beta3 > 0):
            raise ValueError(f"beta3 must be positive, got {beta3}")
        if not (math.isfinite(self.sigma_psi) and self.sigma_psi >= 0):
            raise ValueError(f"sigma_psi must be non-negative, got {sigma_psi}")
        self._layer_of: dict[str, int] = {}
        self._product = PathProduct()
        self._expected: int | None = None  # next layer the running product can take
        self._last: tuple[str, Callable[[], Any], Tensor] = ("", lambda: None, torch.empty(0))

    # ------------------------------------------------------------------ configuration
    def _per_layer(self, value: Beta, name: str, n_layers: int) -> tuple[float, ...]:
        values = (float(value),) * n_layers if isinstance(value, (int, float)) else value
        values = tuple(float(v) for v in values)
        if len(values) != n_layers:
            raise ValueError(
                f"{name} has {len(values)} entries but the model has {n_layers} layers"
            )
        if not all(math.isfinite(v) and v > 0 for v in values):
            raise ValueError(f"{name} must be positive, got {values}")
        return values

    def _scale(self, n_layers: int, n_heads: int) -> Tensor | None:
        if self.head_scale is None:
            return None
        scale = self.head_scale
        if scale.ndim == 1:
            scale = scale.expand(n_layers, -1)
        if tuple(scale.shape) != (n_layers, n_heads):
            raise ValueError(
                f"head weights have shape {tuple(self.head_scale.shape)}; this model needs "
                f"[{n_heads}] or [{n_layers}, {n_heads}] (one per query head)"
            )
        return scale.contiguous()

    def bind(self, adapter: "ModelAdapter") -> None:
        """Check the constants and head weights against the model's layers and heads.

        Raises:
            UnsupportedArchitectureError: For a model whose attention is bidirectional
                (the path product assumes causal, lower-triangular attention).
            ValueError: For ``product_dtype="float32"`` where it is not safe.
        """
        if self.product_dtype == "float32":  # refuse before any pass, not inside one
            product_dtype("float32", 1, self._growth(adapter.n_layers, adapter.n_heads))
        if not adapter.is_causal:
            raise UnsupportedArchitectureError(
                f"{adapter.info.name} attends bidirectionally: the attention-path analysis "
                "follows causal paths (lower-triangular attention, Thm 5.1) and does not "
                "apply; measure osl.sensitivity instead"
            )
        if self.method == "certified":
            self._stream = CertifiedStream(
                adapter, iterations=self.iterations, tol=self.tol, seed=self.seed, mlp=self.mlp
            )
        elif self.method == "value":
            self._stream = ValueStream(adapter.model.W_O, adapter.n_heads)
        super().bind(adapter)
        self._per_layer(self.beta1, "beta1", adapter.n_layers)
        self._per_layer(self.beta2, "beta2", adapter.n_layers)
        self._scale(adapter.n_layers, adapter.n_heads)

    def _growth(self, n_layers: int, n_heads: int) -> list[float]:
        """Upper bounds on each layer's row sums of Ā (softmax rows sum to 1, slack 1%)."""
        beta1 = self._per_layer(self.beta1, "beta1", n_layers)
        scale = self._scale(n_layers, n_heads)
        growth = []
        for layer in range(n_layers):
            a, b = transition_coefficients(self.method, beta1[layer])
            heads = float(scale[layer].sum()) if scale is not None else 1.0
            heads = float(n_heads) if self.heads == "max" else heads
            growth.append(a * heads * 1.01 + b)
        return growth

    def _entry_scale(self, n_layers: int, n_heads: int) -> float:
        """The largest factor a pattern entry is multiplied by in forming any layer's Ā."""
        beta1 = self._per_layer(self.beta1, "beta1", n_layers)
        scale = self._scale(n_layers, n_heads)
        weight = float(scale.max()) if scale is not None else 1.0
        a = max(transition_coefficients(self.method, beta)[0] for beta in beta1)
        return max(1.0, a) * max(1.0, weight)

    def hook_names(self, adapter: "ModelAdapter") -> list[str]:
        """Every layer's attention pattern, in layer order (and what value/certified read)."""
        patterns = [adapter.pattern(layer) for layer in range(adapter.n_layers)]
        self._layer_of = {name: layer for layer, name in enumerate(patterns)}
        if self.method == "certified":
            stream = self._stream
            if not isinstance(stream, CertifiedStream):  # before bind: the standard points
                stream = CertifiedStream(adapter, mlp=self.mlp)
            return stream.hook_names()
        if self.method == "value":
            return [
                name
                for layer in range(adapter.n_layers)
                for name in (adapter.resid_pre(layer), hooknames.v(layer), patterns[layer])
            ]
        return patterns

    # ------------------------------------------------------------------ streaming
    def memory_parts(
        self, shape: ModelShape, hook_names: list[str], batch: int, n: int
    ) -> list[Part]:
        """The running float64 path product and its working copies, on the CPU."""
        return [Part("the running path products (float64)", path_product_bytes(batch, n), True)]

    def keep(self, name: str, activation: Tensor) -> Tensor:
        """Extend the running product by this layer; keep its last row(s).

        Returns:
            ``[batch, 1 + heads, pos]`` float64 on the CPU: row 0 is the path weight, the
            others (``heads="each"``) the per-head rows; a one-element marker tensor when
            the pattern cannot extend the product (the run is then refused by compute).
        """
        last_name, last_activation, last_rows = self._last
        if name == last_name and last_activation() is activation:
            return last_rows  # the same object attached twice: this layer is already in P
        rows = self._route(name, activation)
        self._last = (name, weakref.ref(activation), rows)
        return rows

    def _route(self, name: str, activation: Tensor) -> Tensor:
        stream = self._stream
        if isinstance(stream, CertifiedStream):
            return stream.see(name, activation)
        layer = self._layer_of.get(name)
        if isinstance(stream, ValueStream):
            if layer is not None:
                return stream.pattern(activation)
            index = int(name.split(".")[1])
            if name.endswith("hook_resid_pre"):
                stream.residual(index, activation.detach())
            else:
                stream.values(index, activation.detach())
            return torch.empty(0)
        if self.method == "flow":  # keep every layer's rollout transition for the max-flow
            if activation.shape[-1] != activation.shape[-2]:
                return torch.tensor([_CACHED_STEP], dtype=torch.float64)
            transition = to_transition_(reduce_heads(activation, "mean"), 0.5, 0.5)
            return transition.cpu()[:, None]
        return self._extend(name, activation)

    def _extend(self, name: str, activation: Pattern) -> Tensor:
        layer, n_layers = self._layer_of[name], len(self._layer_of)
        if activation.shape[-1] != activation.shape[-2]:
            self._reset(None)
            return torch.tensor([_CACHED_STEP], dtype=torch.float64)
        n_heads, n = activation.shape[1], activation.shape[-1]
        if layer == 0:
            self._reset(0)
            choice = "float64" if self.heads == "each" else self.product_dtype
            self._product.start(product_dtype(choice, n, self._growth(n_layers, n_heads)))
        if layer != self._expected:
            self._reset(None)
            return torch.tensor([_OUT_OF_ORDER], dtype=torch.float64)
        beta1 = self._per_layer(self.beta1, "beta1", n_layers)[layer]
        a, b = transition_coefficients(self.method, beta1)
        scale = self._scale(n_layers, activation.shape[1])
        weights = scale[layer] if scale is not None else None
        previous = self._product.matrix
        per_head = head_rows(activation, a, b, previous) if self.heads == "each" else None
        transition = to_transition_(reduce_heads(activation, self.heads, weights), a, b)
        row_sum = largest_row_sum(transition)
        self._product.push(transition)
        rows = self._product.last_row()[:, None, :]
        if per_head is not None:
            rows = torch.cat([rows, per_head.cpu()], dim=1)
        extra = torch.tensor([row_sum, _BITS[self._product.dtype], float(n_heads)])
        rows = torch.cat([rows, extra.to(rows.dtype).expand(*rows.shape[:2], _EXTRA)], dim=-1)
        self._expected = layer + 1
        if self._expected == n_layers:
            self._reset(None)  # the last layer: free the product now
        return rows

    def _reset(self, expected: int | None) -> None:
        self._product.clear()
        self._expected = expected

    # ------------------------------------------------------------------ results
    def check_run(self, run: RunRecord) -> None:
        """Refuse runs whose patterns did not all fire, or could not be chained."""
        if isinstance(self._stream, CertifiedStream) and self._stream.refusal is not None:
            refusal, self._stream.refusal = self._stream.refusal, None
            raise UnsupportedArchitectureError(
                f"{self.name} (certified) refuses run {run.index}: {refusal}"
            )
        fired = [n for n in run.hook_names if n in run.activations]
        if fired and len(fired) < len(run.hook_names):
            missing = [self._layer_of.get(n, n) for n in run.hook_names if n not in fired]
            raise IncompatibleRunError(
                f"{self.name} cannot use run {run.index}: the attention patterns of layers "
                f"{missing} did not fire (the pass stopped early, e.g. stop_at_layer or an "
                "exception, or started late with start_at_layer); paths need a full "
                "forward pass"
            )
        super().check_run(run)  # nothing fired: says to use eager attention
        codes = {
            float(run.activations[n][0])
            for n in self._layer_of
            if n in run.activations and run.activations[n].ndim == 1 and run.activations[n].numel()
        }
        if _CACHED_STEP in codes:
            raise IncompatibleRunError(
                f"{self.name} cannot use run {run.index}: its attention patterns have fewer "
                "query than key positions (a KV-cached generation step); run the whole "
                "sequence in one pass (generate with use_past_kv_cache=False)"
            )
        if _OUT_OF_ORDER in codes:
            raise IncompatibleRunError(
                f"{self.name} cannot use run {run.index}: its attention patterns arrived out "
                "of layer order, so the running product could not be extended; run full "
                "forward passes"
            )

    def compute(self, run: RunRecord) -> PathResult:
        """The PathResult of one run, from the kept rows."""
        self.check_run(run)
        assert run.provenance is not None
        if self.method in OWN_HEADS:
            return self._proxy_result(run)
        n_layers = len(run.hook_names)
        stacked = torch.stack([run.activations[n] for n in run.hook_names], dim=1)
        kept, extra = stacked[..., :-_EXTRA], stacked[0, :, 0, -_EXTRA:].detach()
        dtype = {bits: d for d, bits in _BITS.items()}[float(extra[0, 1])]
        n_heads = int(extra[0, 2])
        entry_scale = self._entry_scale(n_layers, n_heads)
        bound = RoundingBound(dtype, kept.shape[-1], n_heads, entry_scale)
        for row_sum in extra[:, 0].tolist():
            bound.push(row_sum)
        relative, absolute = bound.bounds()
        beta1 = self._per_layer(self.beta1, "beta1", n_layers)
        beta2 = self._per_layer(self.beta2, "beta2", n_layers)
        scale = self.head_scale
        if scale is not None:  # shape checked against the model's heads at bind
            scale = (scale.expand(n_layers, -1) if scale.ndim == 1 else scale).contiguous()
        sums = scale.sum(-1).tolist() if scale is not None else [1.0] * n_layers
        coefficients = []
        for layer in range(n_layers):
            a, b = transition_coefficients(self.method, beta1[layer])
            coefficients.append((a * sums[layer], b))
        is_bound = self.method == "bound"
        return PathResult(
            weights=kept[:, :, 0].contiguous(),
            uniform=uniform_path_weights(kept.shape[-1], coefficients),
            method=self.method,
            heads=self.heads,
            provenance=run.provenance,
            head_weights=kept[:, :, 1:].contiguous() if self.heads == "each" else None,
            head_scale=scale,
            constant=bound_constants(beta2, self.beta3, self.sigma_psi) if is_bound else None,
            beta1=beta1 if is_bound else (),
            beta2=beta2 if is_bound else (),
            beta3=self.beta3,
            sigma_psi=self.sigma_psi,
            tokens=run.tokens,
            str_tokens=tuple(run.str_tokens),
            product_dtype=str(dtype).removeprefix("torch."),
            rounding_relative=relative,
            rounding_absolute=absolute,
        )

    def _proxy_result(self, run: RunRecord) -> PathResult:
        """The result of ``value``, ``flow`` or ``certified`` from the kept rows."""
        assert run.provenance is not None
        patterns = list(self._layer_of)
        final = None
        if self.method == "certified":
            points = [hooknames.resid_post(layer) for layer in range(len(patterns))]
            weights = torch.cat([run.activations[p] for p in points], dim=1)
            final = run.activations[hooknames.FINAL_NORM].to(torch.float64)
        elif self.method == "value":
            weights = torch.cat([run.activations[p] for p in patterns], dim=1)
        else:
            transitions = torch.cat([run.activations[p] for p in patterns], dim=1)
            weights = torch.stack([attention_flow(row, self.flow_budget) for row in transitions])
        n_layers, n = weights.shape[1], weights.shape[2]
        extra = {"iterations": self.iterations, "tol": self.tol} if final is not None else {}
        return PathResult(
            weights=weights.contiguous(),
            uniform=uniform_path_weights(n, [(0.5, 0.5)] * n_layers),
            method=self.method,
            heads="sum" if self.method != "flow" else "mean",
            provenance=dataclasses.replace(
                run.provenance,
                seed=self.seed if final is not None else None,
                extra={**run.provenance.extra, **extra},
            ),
            final_factor=final,
            tokens=run.tokens,
            str_tokens=tuple(run.str_tokens),
        )
