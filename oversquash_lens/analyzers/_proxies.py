"""Two more path proxies: value-weighted rollout and attention flow (pure parts and streams).

**Value-weighted rollout** (after Kobayashi et al. 2020, "Attention is not only a
weight"): an attention weight says how much of a key position is *read*; what reaches the
query also depends on how large the value that position *writes* is. Layer ℓ's
transition is

    T_ij = Σ_h α^h_ij ‖v^h_j W_O^h‖₂ + δ_ij ‖x_i‖₂,      Ā_ij = T_ij / Σ_k T_ik,

with v^h_j the head's value at key j (``hook_v``, bias included), W_O^h its output map
(no output bias: it does not depend on j), and x_i the residual stream entering the layer
(``hook_resid_pre``) standing for the residual connection. Rows are renormalised to sum to
one (a row that is all zero, a position whose residual and values are exactly zero, stays
zero), and the product runs as rollout does.

**Attention flow** (Abnar & Zuidema 2020): the layered graph with a node per (layer,
position), an edge from (ℓ, j) to (ℓ+1, i) of capacity Ā(ℓ)_ij — the rollout transition
½(Λ + I) of the head-mean attention — and, for each input position i and each layer ℓ,
the maximum flow from (0, i) to (ℓ+1, n−1). Capacities are scaled by 2^20 and rounded
to integers for SciPy's max-flow (error ≤ 2^-21 per edge of the minimum cut).
"""

from typing import Any

import numpy as np
import torch
from jaxtyping import Float64
from torch import Tensor

from .._errors import PathBudgetError
from .._types import Pattern
from ._path_math import PathProduct

FLOW_SCALE = 2**20
FLOW_BUDGET = 2 * 10**8  # max-flow work allowed by default: flows × edges


class ValueStream:
    """Value-weighted rollout, one layer at a time, as the layers' hooks fire.

    Args:
        w_o: ``[layer, head, d_head, d_model]`` output maps.
        n_heads: Query heads per layer.
    """

    def __init__(self, w_o: Tensor, n_heads: int) -> None:
        w_o = w_o.detach().to(torch.float64)
        self.gram = w_o @ w_o.transpose(-1, -2)  # [layer, head, d_head, d_head]
        self.n_heads = n_heads
        self._residual: Tensor | None = None
        self._written: Tensor | None = None
        self._product = PathProduct()

    def residual(self, layer: int, x: Tensor) -> None:
        """``hook_resid_pre``: the residual norms ‖x_i‖."""
        if layer == 0:
            self._product.clear()
        self._residual = torch.linalg.vector_norm(x, dim=-1, dtype=torch.float64)

    def values(self, layer: int, values: Tensor) -> None:
        """``hook_v``: ‖v^h_j W_O^h‖ for every query head and key position."""
        group = self.n_heads // values.shape[2]
        v = values.to(torch.float64).repeat_interleave(group, dim=2)  # [b, key, head, k]
        gram = self.gram[layer].to(v.device)
        squared = torch.einsum("bjhk,hkl,bjhl->bhj", v, gram, v)
        self._written = squared.clamp_min(0).sqrt()

    def pattern(self, pattern: Pattern) -> Tensor:
        """``hook_pattern``: extend the product; the last row ``[batch, 1, pos]``."""
        if self._residual is None or self._written is None:
            raise RuntimeError("value-weighted paths need hook_resid_pre and hook_v first")
        transition = value_transition(pattern, self._written, self._residual)
        self._product.push(transition)
        self._residual = self._written = None
        return self._product.last_row()[:, None, :]


def value_transition(
    pattern: Pattern,
    written: Float64[Tensor, "batch head_index key_pos"],
    residual: Float64[Tensor, "batch pos"],
) -> Float64[Tensor, "batch query_pos key_pos"]:
    """One layer's value-weighted transition (rows sum to 1; see the module docstring).

    Example:
        >>> alpha = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]])  # one head
        >>> written = torch.tensor([[[1.0, 3.0]]], dtype=torch.float64)
        >>> value_transition(alpha, written, torch.zeros(1, 2, dtype=torch.float64))[0, 1]
        tensor([0.2500, 0.7500], dtype=torch.float64)
    """
    out = torch.zeros(pattern[:, 0].shape, dtype=torch.float64, device=pattern.device)
    for h in range(pattern.shape[1]):
        out.add_(pattern[:, h].to(torch.float64) * written[:, h, None, :].to(out.device))
    out.diagonal(dim1=-2, dim2=-1).add_(residual.to(out.device))
    total = out.sum(-1, keepdim=True)
    return out.div_(torch.where(total > 0, total, torch.ones_like(total)))


def flow_work(n: int, n_layers: int) -> int:
    """Max-flow work estimate: ``n·L`` flows on graphs of up to ``L·n(n+1)/2`` edges."""
    return n * n_layers * n_layers * n * (n + 1) // 2


def check_flow_budget(n: int, n_layers: int, budget: int = FLOW_BUDGET) -> None:
    """Refuse, before any work, a flow computation beyond ``budget``.

    Raises:
        PathBudgetError: With what to do instead.
    """
    work = flow_work(n, n_layers)
    if work > budget:
        raise PathBudgetError(
            f"attention flow over {n} tokens and {n_layers} layers needs about {work:.2g} "
            f"units of max-flow work, above the budget of {budget:.2g}: use fewer tokens, "
            "method='rollout' (its linear-algebra cousin), or raise flow_budget="
        )


def attention_flow(
    transitions: Float64[Tensor, "layer query_pos key_pos"], budget: int = FLOW_BUDGET
) -> Float64[Tensor, "layer key_pos"]:
    """Max-flow from every input position to the last position after every layer.

    Args:
        transitions: ``[layer, n, n]`` rollout transitions ½(Λ + I) of one batch row.
        budget: Most work (:func:`flow_work`) allowed.

    Returns:
        ``[layer, n]`` float64: entry (ℓ, i) is the max flow from (0, i) to (ℓ+1, n−1).

    Raises:
        PathBudgetError: When the sequence is too long for the budget.

    Example:
        >>> half = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
        >>> attention_flow(half[None])  # one layer: the edge capacities themselves
        tensor([[0.5000, 0.5000]], dtype=torch.float64)
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_flow

    n_layers, n = transitions.shape[0], transitions.shape[-1]
    check_flow_budget(n, n_layers, budget)
    out = torch.zeros(n_layers, n, dtype=torch.float64)
    capacities = (transitions.detach().cpu().numpy() * FLOW_SCALE).round().astype(np.int64)
    for top in range(n_layers):
        graph = _layered_graph(capacities[: top + 1], csr_matrix)
        sink = (top + 1) * n + n - 1
        for source in range(n):
            flow = maximum_flow(graph, source, sink, method="dinic")
            out[top, source] = flow.flow_value / FLOW_SCALE
    return out


def _layered_graph(capacities: Any, csr_matrix: Any) -> Any:
    """CSR graph: node ℓ·n + i; edge (ℓ, j) → (ℓ+1, i) with capacity ``capacities[ℓ, i, j]``."""
    n_layers, n = capacities.shape[0], capacities.shape[-1]
    layer, query, key = np.nonzero(capacities)
    rows = layer * n + key
    cols = (layer + 1) * n + query
    data = capacities[layer, query, key].astype(np.int32)
    size = (n_layers + 1) * n
    return csr_matrix((data, (rows, cols)), shape=(size, size))


def attention_flow_networkx(
    transitions: Float64[Tensor, "layer query_pos key_pos"],
) -> Float64[Tensor, "layer key_pos"]:
    """The same flows with networkx (a slow, independent reference for tests and benchmarks)."""
    import networkx as nx

    n_layers, n = transitions.shape[0], transitions.shape[-1]
    capacities = (transitions.detach().cpu().numpy() * FLOW_SCALE).round().astype(np.int64)
    out = torch.zeros(n_layers, n, dtype=torch.float64)
    for top in range(n_layers):
        graph = nx.DiGraph()
        for layer in range(top + 1):
            for i, j in zip(*np.nonzero(capacities[layer]), strict=True):
                graph.add_edge(
                    (layer, int(j)), (layer + 1, int(i)), capacity=int(capacities[layer, i, j])
                )
        for source in range(n):
            value = nx.maximum_flow_value(graph, (0, source), (top + 1, n - 1))
            out[top, source] = value / FLOW_SCALE
    return out
