"""Pure math of attention paths (the paper's §5): functions on tensors, never a model.

Every method multiplies per-layer *transition matrices* Ā(ℓ) = a·Λ(ℓ) + b·I, where Λ(ℓ)
is a layer's attention (heads reduced to one causal matrix):

- ``bound``: Ā = Λ/β1 + I, the matrix of Thm 5.1; the constant C is kept apart
  (:func:`bound_constants`);
- ``rollout``: Ā = ½(Λ + I), attention rollout (Abnar & Zuidema 2020);
- ``context``: Ā = Λ, the cumulative context of Wu et al. (no residual).

The weight of all causal paths from position i to the last position through layers
0..ℓ is the last row of P_ℓ = Ā(ℓ) ⋯ Ā(0). :class:`PathProduct` keeps P as a running
product, one layer at a time, so only one n×n matrix per batch row lives between layers.

The product is float64 up to ``FLOAT32_FROM`` positions and float32 from there (``"auto"``),
where its n³/6 multiply-adds outgrow the forward pass. Every matrix in it is non-negative,
so rounding has an elementwise bound (:class:`RoundingBound`) that every result carries.
"""

import math
from collections.abc import Sequence

import torch
from jaxtyping import Float, Float64
from torch import Tensor

from .._types import LayerPathWeights, LayerValues, PathMatrix, PathRows, Pattern

METHODS = ("bound", "rollout", "context")
HEAD_REDUCTIONS = ("mean", "max", "each")
BLOCK = 256  # rows and columns per block of the triangular product (bench_paths.py times it)
PRODUCT_DTYPES = ("auto", "float64", "float32")
# "auto" multiplies in float32 from this many positions: at 2048 the float64 product is a
# few percent of the forward pass, at 8192 about a third of it (benchmarks/README.md).
FLOAT32_FROM = 4096
Product = Float[Tensor, "batch query_pos key_pos"]  # a running product: float64 or float32
_UNIT_ROUNDOFF = {torch.float64: 2.0**-53, torch.float32: 2.0**-24}
_FLOAT32_LOG2_LARGEST = 100  # float32 weights stay below 2^100, far from its 2^128 limit
_UNDERFLOW = {torch.float64: 2.0**-1074, torch.float32: 2.0**-149}  # subnormal spacing


def float32_matmul_is_ieee() -> bool:
    """Whether float32 matrix products round as IEEE float32 (no TF32 or bfloat16 passes).

    ``torch.set_float32_matmul_precision("high")`` or ``("medium")`` lets CUDA use TF32
    and oneDNN bfloat16, whose unit roundoff (2⁻¹¹, 2⁻⁸) voids the float32 bound.
    """
    if torch.get_float32_matmul_precision() != "highest":
        return False
    if torch.backends.cuda.matmul.allow_tf32:
        return False
    backends = (torch.backends.cuda.matmul, getattr(torch.backends.mkldnn, "matmul", None))
    return all(getattr(b, "fp32_precision", "none") in ("none", "ieee") for b in backends)


def product_dtype(choice: str, n: int, growth: Sequence[float] = ()) -> torch.dtype:
    """The dtype of the running path product for ``choice`` at ``n`` positions.

    Args:
        choice: ``"auto"`` (float32 from ``FLOAT32_FROM`` positions when float32 is safe,
            else float64), ``"float64"`` or ``"float32"``.
        n: Sequence length.
        growth: An upper bound on each layer's largest row sum of Ā (a·S + b, with S the
            heads' row sum): float32 is safe when their product stays far below its range.

    Raises:
        ValueError: For an unknown choice, or ``"float32"`` when it is not safe: float32
            matrix products may use TF32 or bfloat16, or the weights could overflow.

    Example:
        >>> product_dtype("auto", 1024), product_dtype("float32", 1024)
        (torch.float64, torch.float32)
    """
    if choice not in PRODUCT_DTYPES:
        raise ValueError(f"product_dtype must be one of {PRODUCT_DTYPES}, got {choice!r}")
    if choice == "float64" or (choice == "auto" and n < FLOAT32_FROM):
        return torch.float64
    problem = None
    log2_growth = sum(math.log2(max(g, 1.0)) for g in growth)
    if not float32_matmul_is_ieee():
        problem = (
            "float32 matrix products may round through TF32 or bfloat16 "
            f"(torch.get_float32_matmul_precision() is {torch.get_float32_matmul_precision()!r}"
            "), which voids the weights' error bound: call "
            "torch.set_float32_matmul_precision('highest')"
        )
    elif log2_growth + 0.02 * len(growth) > _FLOAT32_LOG2_LARGEST:
        problem = (
            "the path weights could grow past float32's range (the layers' row sums "
            f"multiply to up to 2^{log2_growth:.0f})"
        )
    elif n * _UNIT_ROUNDOFF[torch.float32] >= 0.5:
        problem = f"{n} positions are too many for float32 accumulation"
    if problem is None:
        return torch.float32
    if choice == "auto":
        return torch.float64
    raise ValueError(f"product_dtype='float32' is not safe here: {problem}; or use 'float64'")


def _widen(log_factor: float) -> float:
    """X from log(1 + x), rounded up (the bound's own float64 arithmetic is ~1e-15 relative)."""
    return _up(math.expm1(log_factor))


def _up(value: float) -> float:
    """``value`` widened past the float64 rounding of the few operations that made it."""
    return value * (1 + 1e-12)


def largest_row_sum(transition: PathMatrix) -> float:
    """The largest row sum of Ā over the batch (R_ℓ of :class:`RoundingBound`)."""
    return float(transition.detach().sum(-1).amax())


class RoundingBound:
    """Tracks a bound on the rounding error of the running path product, layer by layer.

    Every Ā(ℓ) and P_ℓ is non-negative, so rounding has an elementwise bound relative to
    the exact product of the model's patterns: |P̂_ℓ − P_ℓ| ≤ c_ℓ·P_ℓ + t_ℓ. With unit
    roundoff u and underflow unit η of the product's dtype (2⁻²⁴ and 2⁻¹⁴⁹ for float32):

    - a product of non-negative matrices with inner length k ≤ n is within
      γ_n = n·u/(1 − n·u) relative, plus n·η·(1 + γ_n) absolute (underflow), in any
      summation order, with or without fused multiply-adds (Higham, *Accuracy and
      Stability of Numerical Algorithms*, §3.5, with §2.1's underflow model);
    - each Ā is formed in float64 from the patterns (at most H + 6 roundings per entry)
      and, for a float32 product, rounded once more: relative φ, absolute ξ;
    - then c_ℓ = (1 + γ_n)(1 + φ)(1 + c_{ℓ−1}) − 1 and
      t_ℓ = (1 + γ_n)·[t_{ℓ−1}·((1 + φ)·R_ℓ + n·ξ) + n·ξ·(1 + c_{ℓ−1})·M_{ℓ−1}] + n·η·(1 + γ_n),
      with R_ℓ the largest row sum of Ā(ℓ) (measured) and M_{ℓ−1} = Π_{k<ℓ} R_k, which bounds
      every entry of P_{ℓ−1}.

    The same bound holds for float64 products (u = 2⁻⁵³); it is then far below anything
    a plot or a table shows.
    """

    def __init__(self, dtype: torch.dtype, n: int, n_heads: int, scale: float) -> None:
        if dtype not in _UNIT_ROUNDOFF:
            raise ValueError(f"the path product is float64 or float32, not {dtype}")
        u, u64 = _UNIT_ROUNDOFF[dtype], _UNIT_ROUNDOFF[torch.float64]
        if n * max(u, u64) >= 0.5:
            raise ValueError(f"{n} positions are too many for a {dtype} path product")
        self.n = n
        converted = dtype != torch.float64
        steps = n_heads + 6
        # Every factor is 1 + x with x near u: kept as log(1 + x), so 1 + 2⁻⁵³ is not
        # rounded to 1; _widen turns a log back into x, rounded up.
        self.log_gamma = math.log1p(n * u / (1 - n * u))
        self.log_phi = steps * math.log1p(u64) + (math.log1p(u) if converted else 0.0)
        self.underflow = _up(n * _UNDERFLOW[dtype] * (1 + _widen(self.log_gamma)))
        self.xi = steps * _UNDERFLOW[torch.float64] * max(1.0, scale)
        self.xi = _up(self.xi + (_UNDERFLOW[dtype] if converted else 0.0))
        self.row_factor = 1 + _widen(
            steps * math.log1p(u64) + 2 * math.log1p(n * u64 / (1 - n * u64))
        )
        self.relative: list[float] = []
        self.absolute: list[float] = []
        self._log_c = 0.0
        self._largest = 1.0  # M: bounds every entry of the exact product so far

    def push(self, row_sum: float) -> None:
        """Account for one more layer, given the largest row sum of its float64 Ā.

        ``row_sum`` as :func:`largest_row_sum` computes it; it is widened here by the float64
        rounding of that sum, so R_ℓ bounds the exact row sums.
        """
        rows = row_sum * self.row_factor
        if not self.relative:
            self._log_c = self.log_phi
            self.absolute.append(self.xi)
        else:
            c, t = 1 + _widen(self._log_c), self.absolute[-1]
            phi, gamma = 1 + _widen(self.log_phi), 1 + _widen(self.log_gamma)
            self._log_c += self.log_gamma + self.log_phi
            spread = t * (phi * rows + self.n * self.xi)
            self.absolute.append(
                _up(gamma * (spread + self.n * self.xi * c * self._largest) + self.underflow)
            )
        self.relative.append(_widen(self._log_c))
        self._largest = _up(self._largest * rows)

    def bounds(self) -> tuple[LayerValues, LayerValues]:
        """``(relative, absolute)``, each ``[layer]`` float64."""
        return (
            torch.tensor(self.relative, dtype=torch.float64),
            torch.tensor(self.absolute, dtype=torch.float64),
        )


def transition_coefficients(method: str, beta1: float = 1.0) -> tuple[float, float]:
    """The (a, b) of Ā = a·Λ + b·I for a path method.

    Args:
        method: ``"bound"``, ``"rollout"`` or ``"context"``.
        beta1: The first norm's constant β1 (used by ``bound`` only).

    Returns:
        ``(a, b)``.

    Raises:
        ValueError: For unknown methods or a non-positive β1.

    Example:
        >>> transition_coefficients("rollout"), transition_coefficients("bound", 2.0)
        ((0.5, 0.5), (0.5, 1.0))
    """
    if method not in METHODS:
        raise ValueError(f"unknown path method {method!r}: choose one of {METHODS}")
    if not (math.isfinite(beta1) and beta1 > 0):
        raise ValueError(f"beta1 must be a positive number, got {beta1}")
    return {"bound": (1.0 / beta1, 1.0), "rollout": (0.5, 0.5), "context": (1.0, 0.0)}[method]


def reduce_heads(
    pattern: Pattern, heads: str = "mean", weights: Float[Tensor, " head_index"] | None = None
) -> PathMatrix:
    """One causal matrix per batch row from a layer's per-head attention patterns.

    Works head by head, so besides the model's own pattern tensor only n×n float64
    matrices are allocated (never a float64 copy of all heads). The mean reads only the
    causal part, on and below the diagonal (the model is causal; above it is zero).

    Args:
        pattern: ``[batch, head_index, query_pos, key_pos]`` attention probabilities.
        heads: ``"mean"`` (row-stochastic average; also what ``"each"`` propagates) or
            ``"max"`` (element-wise maximum over heads: an upper envelope whose rows may
            sum to more than 1; not renormalized). Ignored when ``weights`` is given.
        weights: Per-head weights: Λ = Σ_h w_h Λ_h (e.g. ‖W_O^h W_V^h‖ to fold the value
            and output maps into a multi-head bound).

    Returns:
        ``[batch, query_pos, key_pos]`` float64.

    Example:
        >>> p = torch.tensor([[1.0, 0.0], [0.5, 0.5]]).expand(1, 2, 2, 2)
        >>> reduce_heads(p)[0]
        tensor([[1.0000, 0.0000],
                [0.5000, 0.5000]], dtype=torch.float64)
    """
    n_heads = pattern.shape[1]
    if weights is not None:
        out = torch.zeros(pattern[:, 0].shape, dtype=torch.float64, device=pattern.device)
        for h in range(n_heads):
            out.add_(pattern[:, h].to(torch.float64), alpha=float(weights[h]))
        return out
    if heads == "max":
        return pattern.amax(dim=1).to(torch.float64)
    if heads not in HEAD_REDUCTIONS:
        raise ValueError(f"unknown head reduction {heads!r}: choose one of {HEAD_REDUCTIONS}")
    return _causal_head_sum(pattern).div_(n_heads)


def _causal_head_sum(pattern: Pattern, block: int = BLOCK) -> PathMatrix:
    """Σ_h pattern[:, h] in float64, on and below the diagonal; zeros above it.

    Causal attention is zero above the diagonal (a model must be causal for the paths to
    be read at all), so only the row blocks' columns up to their last row are added, head
    after head into a float64 copy of the first: the numbers of the full sum, in about
    half its time.
    """
    batch, n_heads, n, _ = pattern.shape
    out = torch.empty((batch, n, n), dtype=torch.float64, device=pattern.device)
    for start in range(0, n, block):
        end = min(start + block, n)
        rows = out[:, start:end]
        rows[..., end:].zero_()
        below = rows[..., :end].copy_(pattern[:, 0, start:end, :end])
        for h in range(1, n_heads):
            below.add_(pattern[:, h, start:end, :end])
    return out


def to_transition_(attention: PathMatrix, a: float, b: float) -> PathMatrix:
    """Turn Λ into Ā = a·Λ + b·I in place (and return it)."""
    if a != 1.0:
        attention.mul_(a)
    if b != 0.0:
        attention.diagonal(dim1=-2, dim2=-1).add_(b)
    return attention


def head_rows(
    pattern: Pattern, a: float, b: float, previous: PathMatrix | None
) -> Float64[Tensor, "batch head_index key_pos"]:
    """Per-head path weights to the last position: last row of Ā_h(ℓ)·P_{ℓ−1}.

    Args:
        pattern: ``[batch, head_index, query_pos, key_pos]`` of layer ℓ.
        a: Coefficient of Λ in Ā (see :func:`transition_coefficients`).
        b: Coefficient of I in Ā.
        previous: P_{ℓ−1}, the head-reduced product of the layers below (None at layer 0).

    Returns:
        ``[batch, head_index, key_pos]`` float64.
    """
    rows = pattern[:, :, -1, :].to(torch.float64, copy=True).mul_(a)
    rows[..., -1] += b
    if previous is None:
        return rows
    return torch.matmul(rows, previous.to(rows.device))


def causal_matmul_(left: Product, right: Product, block: int = BLOCK) -> Product:
    """``left @ right`` for lower-triangular matrices, written into ``left``.

    The product is lower triangular too, and its block (I, J) (J ≤ I, in blocks of
    ``block`` rows and columns) needs only ``left[I, J..I] @ right[J..I, J]``: one matrix
    product per block over the blocks between J and I, about n³/6 multiply-adds in all
    instead of n³ (or n³/3 when only the rows are blocked). Row blocks run from the last
    to the first and, within one, the columns from the first: each result overwrites a
    block of ``left`` that no later product reads, so no second n×n matrix is allocated.

    Args:
        left: ``[batch, n, n]`` lower triangular; overwritten with the product.
        right: ``[batch, n, n]`` lower triangular, of ``left``'s dtype.
        block: Rows and columns per block.

    Returns:
        ``left``, now holding the product.

    Example:
        >>> m = torch.tril(torch.ones(1, 3, 3, dtype=torch.float64))
        >>> causal_matmul_(m.clone(), m, block=2)[0, -1]
        tensor([3., 2., 1.], dtype=torch.float64)
    """
    n = left.shape[-1]
    starts = range(0, n, block)
    for row in reversed(starts):
        rows = slice(row, min(row + block, n))
        for col in range(0, row + 1, block):
            cols, inner = slice(col, min(col + block, n)), slice(col, rows.stop)
            left[:, rows, cols] = torch.matmul(left[:, rows, inner], right[:, inner, cols])
    return left


class PathProduct:
    """The running product P_ℓ = Ā(ℓ) ⋯ Ā(0), one layer at a time, in float64 or float32.

    Each Ā is given in float64; a float32 product rounds it once and multiplies in float32
    (:class:`RoundingBound` bounds the error of either).

    Example:
        >>> prod = PathProduct()
        >>> half = torch.tensor([[[1.0, 0.0], [0.5, 0.5]]], dtype=torch.float64)
        >>> prod.push(half.clone()); prod.push(half.clone())
        >>> prod.last_row()
        tensor([[0.7500, 0.2500]], dtype=torch.float64)
    """

    def __init__(self) -> None:
        self.matrix: Tensor | None = None
        self.n_layers = 0
        self.dtype = torch.float64

    def start(self, dtype: torch.dtype) -> None:
        """Forget the product; multiply the next layers in ``dtype`` (float64 or float32)."""
        self.clear()
        self.dtype = dtype

    def push(self, transition: PathMatrix) -> None:
        """Multiply one more layer on the left; ``transition`` is taken over (overwritten)."""
        step: Tensor = transition.to(self.dtype)
        if self.matrix is not None:
            step = causal_matmul_(step, self.matrix.to(step.device))
        self.matrix = step
        self.n_layers += 1

    def last_row(self) -> PathRows:
        """A float64 CPU copy of the last row of P, ``[batch, key_pos]``."""
        if self.matrix is None:
            raise RuntimeError("no layer pushed yet")
        return self.matrix[:, -1, :].to("cpu", torch.float64, copy=True)

    def clear(self) -> None:
        """Forget the product (frees its memory)."""
        self.matrix = None
        self.n_layers = 0


def uniform_path_weights(n: int, coefficients: Sequence[tuple[float, float]]) -> LayerPathWeights:
    """Path weights under uniform causal attention Λ_ij = 1/i, for every layer.

    Every Ā(ℓ) = a_ℓ·U + b_ℓ·I is a polynomial in the same U, so they commute and the last
    row of Ā(ℓ)⋯Ā(0) is e_nᵀ Ā(0) Ā(1) ⋯ Ā(ℓ): a row vector pushed through the layers, and
    (wU)_j = Σ_{i≥j} w_i/i is a reversed cumulative sum. Cost O(n·L), no n×n matrix.

    Args:
        n: Sequence length.
        coefficients: ``(a_ℓ, b_ℓ)`` per layer, as from :func:`transition_coefficients`
            (times the sum of head weights when heads are weighted).

    Returns:
        ``[layer, key_pos]`` float64.

    Example:
        >>> uniform_path_weights(20, [(0.5, 0.5)])[0, -1].item()
        0.525
    """
    index = torch.arange(1, n + 1, dtype=torch.float64)
    row = torch.zeros(n, dtype=torch.float64)
    row[-1] = 1.0
    out = []
    for a, b in coefficients:
        times_u = torch.flip(torch.cumsum(torch.flip(row / index, (0,)), 0), (0,))
        row = a * times_u + b * row
        out.append(row)
    if not out:
        return torch.zeros((0, n), dtype=torch.float64)
    return torch.stack(out)


def bound_constants(beta2: Sequence[float], beta3: float, sigma_psi: float) -> LayerValues:
    """C of Thm 5.1 for the model truncated after each layer.

    C_ℓ = (1/β3)·Π_{k≤ℓ} (σ_ψ/β2(k) + 1); the last entry is the paper's C for all layers.

    Args:
        beta2: β2(k) per layer (the second norm's constant).
        beta3: The final norm's constant β3.
        sigma_psi: Lipschitz constant σ_ψ of the MLPs (0 for attention-only models).

    Returns:
        ``[layer]`` float64.

    Raises:
        ValueError: For non-positive β or negative σ_ψ.

    Example:
        >>> bound_constants([1.0, 1.0], beta3=2.0, sigma_psi=1.0)
        tensor([1., 2.], dtype=torch.float64)
    """
    if not all(math.isfinite(b) and b > 0 for b in (*beta2, beta3)):
        raise ValueError(f"beta2 and beta3 must be positive, got beta2={beta2}, beta3={beta3}")
    if not (math.isfinite(sigma_psi) and sigma_psi >= 0):
        raise ValueError(f"sigma_psi must be a non-negative number, got {sigma_psi}")
    factors = torch.tensor([sigma_psi / b + 1.0 for b in beta2], dtype=torch.float64)
    return torch.cumprod(factors, 0) / beta3


def thirds(n: int) -> Tensor:
    """Which third (0 early, 1 middle, 2 late) each of n positions falls in: ⌊3i/n⌋."""
    return torch.arange(n) * 3 // n


def path_summary(weights: Float64[Tensor, "*rest key_pos"]) -> dict[str, Tensor]:
    """Summary statistics of path-weight profiles over positions.

    Weights are first normalized to shares (each profile sums to 1).

    Args:
        weights: ``[..., key_pos]`` non-negative path weights.

    Returns:
        Tensors of shape ``[...]``: ``first`` and ``last`` (shares of the first and last
        position), ``early``/``middle``/``late`` (shares of the three thirds, position i in
        third ⌊3i/n⌋), ``argmin`` (0-based position of the smallest weight, the bottom of a
        U-shape), ``min`` (its share), ``entropy`` (nats) and ``entropy_ratio`` (entropy /
        log n, 1 for uniform shares; 0 when n = 1).

    Example:
        >>> s = path_summary(torch.tensor([0.5, 0.1, 0.1, 0.3], dtype=torch.float64))
        >>> round(s["first"].item(), 3), s["argmin"].item(), round(s["late"].item(), 3)
        (0.5, 1, 0.3)
    """
    n = weights.shape[-1]
    total = weights.sum(-1, keepdim=True)
    shares = weights / torch.where(total > 0, total, torch.ones_like(total))
    third = thirds(n).to(weights.device)
    logs = torch.where(shares > 0, shares.log(), torch.zeros_like(shares))
    entropy = -(shares * logs).sum(-1)
    minimum = shares.min(-1)
    return {
        "first": shares[..., 0],
        "last": shares[..., -1],
        "early": shares[..., third == 0].sum(-1),
        "middle": shares[..., third == 1].sum(-1),
        "late": shares[..., third == 2].sum(-1),
        "argmin": minimum.indices,
        "min": minimum.values,
        "entropy": entropy,
        "entropy_ratio": entropy / math.log(n) if n > 1 else torch.zeros_like(entropy),
    }
