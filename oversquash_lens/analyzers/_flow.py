"""FlowResult: measured sensitivity beside every path proxy, layer by layer — and which explains it.

For each output point (each block's residual output, then y_n) the result holds the
measured sensitivity with full attention, with attention frozen (the value path: the
setting of Thm 5.1) and the part that flows through the attention scores
(‖J_full − J_frozen‖), beside one row per path method ("proxy"): the Thm 5.1 bound with
unit constants, rollout, cumulative context, value-weighted rollout, attention flow and
the certified bound. Layer ℓ of a path product (paths through layers 0..ℓ) is paired
with block ℓ's output; y_n with the last layer (the certified bound adds the final norm's
factor there; for the others the final norm's constant leaves ranks unchanged).

:meth:`FlowResult.agreement` says, per point and proxy, how well each proxy ranks the
positions like each measurement (Spearman, Kendall), how much of it sits on the first
token, and for the certified bound where it holds and how loose it is.
"""

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
from jaxtyping import Float64
from torch import Tensor

from .. import _hooknames as names
from .._types import Tokens
from ..results import Provenance, Result
from ..results._describe import short_point
from . import _flow_plots
from ._path_result import PathResult
from ._ranks import kendall, spearman
from ._sensitivity_result import SensitivityResult

Values = Float64[Tensor, "batch point pos"]
MEASURES = ("full", "frozen", "scores")


@dataclass
class FlowResult(Result):
    """How each input position reaches the last token: measurements and path proxies.

    Attributes:
        points: Sensitivity output points, in order (blocks' residual outputs, then y_n).
        path_layers: ``[point]`` the path-product layer each point is paired with.
        sensitivity: ``[batch, point, pos]`` ‖∂h_n(ℓ)/∂x_i‖ with full attention (float64).
        sensitivity_stderr: Its standard errors (zeros when exact).
        frozen: The same with every attention pattern held constant (None if not measured).
        frozen_stderr: Its standard errors.
        scores: ‖J_full − J_frozen‖: what flows through the attention scores (None if not
            measured). Norms are not additive: ``full ≤ frozen + scores``.
        scores_stderr: Its standard errors.
        proxies: ``[proxy, batch, point, pos]`` each path method's values at the paired
            layer: its path weights (for ``bound`` without the constant C, which leaves
            ranks unchanged), and for ``certified`` the bound itself, with the final
            norm's factor at y_n.
        proxy_methods: The path method of each proxy row.
        sensitivity_method: ``"exact"``, ``"hutchinson"`` or ``"power"``.
        norm: ``"fro"`` or ``"spectral"``: the measured norm. The certified bound bounds
            spectral norms, and ‖J‖₂ ≥ ‖J‖_F/√d, so against Frobenius measurements its
            "holds" test uses that lower bound (see :meth:`agreement`).
        d_model: Width of the residual stream (for that test).
        str_tokens: Token strings of batch row 0.
        tokens: Token ids of the run.
        provenance: Provenance of the sensitivity run (each path run's is in ``extra``).
    """

    points: tuple[str, ...]
    path_layers: tuple[int, ...]
    sensitivity: Values
    sensitivity_stderr: Values
    proxies: Float64[Tensor, "proxy batch point pos"]
    proxy_methods: tuple[str, ...]
    sensitivity_method: str
    str_tokens: tuple[str, ...]
    tokens: Tokens | None
    provenance: Provenance
    frozen: Values | None = None
    frozen_stderr: Values | None = None
    scores: Values | None = None
    scores_stderr: Values | None = None
    norm: str = "fro"
    d_model: int = 0

    def __post_init__(self) -> None:
        shape = tuple(self.sensitivity.shape)
        if shape[1] != len(self.points) or tuple(self.proxies.shape[1:]) != shape:
            raise ValueError(
                f"sensitivity {shape} and proxies {tuple(self.proxies.shape)} must be "
                f"[batch, {len(self.points)} points, pos] (proxies with a leading axis)"
            )
        if self.proxies.shape[0] != len(self.proxy_methods):
            raise ValueError("proxies needs one row per proxy method")
        self.proxy_methods = tuple(self.proxy_methods)
        for name in ("frozen", "scores"):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != shape:
                raise ValueError(f"{name} must have the shape of sensitivity {shape}")

    # ---------------------------------------------------------------- building
    @classmethod
    def combine(
        cls,
        paths: PathResult | list[PathResult],
        sensitivity: SensitivityResult,
        frozen: SensitivityResult | None = None,
        scores: SensitivityResult | None = None,
    ) -> "FlowResult":
        """Pair path results with sensitivity results of the same tokens.

        Raises:
            ValueError: For results that cover different batches or positions, or
                sensitivity results of different kinds.
        """
        path_list = [paths] if isinstance(paths, PathResult) else list(paths)
        if not path_list:
            raise ValueError("give at least one path result")
        for result in path_list:
            if tuple(result.weights.shape[::2]) != tuple(sensitivity.norms.shape[::2]):
                raise ValueError(
                    f"paths {tuple(result.weights.shape)} and sensitivity "
                    f"{tuple(sensitivity.norms.shape)} cover different batches or positions"
                )
        for other in (frozen, scores):
            if other is not None and other.norms.shape != sensitivity.norms.shape:
                raise ValueError("the frozen/score sensitivities must match the full one")
        n_layers = path_list[0].weights.shape[1]
        layers = [_paired_layer(point, n_layers) for point in sensitivity.points]
        proxies = torch.stack([_proxy_rows(r, sensitivity.points, layers) for r in path_list])
        provenance = sensitivity.provenance
        extra = dict(provenance.extra)
        extra["paths_provenance"] = {r.method: r.provenance.to_dict() for r in path_list}
        return cls(
            points=tuple(sensitivity.points),
            path_layers=tuple(layers),
            sensitivity=sensitivity.norms.to(torch.float64),
            sensitivity_stderr=_stderr(sensitivity),
            proxies=proxies,
            proxy_methods=tuple(r.method for r in path_list),
            sensitivity_method=sensitivity.method,
            str_tokens=tuple(sensitivity.str_tokens),
            tokens=sensitivity.tokens,
            provenance=_replace_extra(provenance, extra),
            frozen=frozen.norms.to(torch.float64) if frozen is not None else None,
            frozen_stderr=_stderr(frozen) if frozen is not None else None,
            scores=scores.norms.to(torch.float64) if scores is not None else None,
            scores_stderr=_stderr(scores) if scores is not None else None,
            norm=sensitivity.norm,
            d_model=_d_model(sensitivity),
        )

    # ---------------------------------------------------------------- access
    def proxy(self, method: str) -> Values:
        """``[batch, point, pos]`` values of one path method.

        Raises:
            KeyError: If that method is not among the proxies.
        """
        if method not in self.proxy_methods:
            raise KeyError(f"no {method!r} proxy here; proxies: {list(self.proxy_methods)}")
        return self.proxies[self.proxy_methods.index(method)]

    def measure(self, which: str = "full") -> Values:
        """``[batch, point, pos]`` measured sensitivity: ``"full"``, ``"frozen"``, ``"scores"``.

        Raises:
            KeyError: If that one was not measured.
        """
        value = {"full": self.sensitivity, "frozen": self.frozen, "scores": self.scores}.get(which)
        if value is None:
            raise KeyError(f"{which!r} sensitivity was not measured (have: {self.measures})")
        return value

    @property
    def measures(self) -> tuple[str, ...]:
        """The sensitivities measured: ``"full"`` and, when measured, ``"frozen"``, ``"scores"``."""
        return tuple(m for m in MEASURES if m == "full" or getattr(self, m) is not None)

    @property
    def path_method(self) -> str:
        """The first proxy's method."""
        return self.proxy_methods[0]

    @property
    def paths(self) -> Values:
        """The first proxy's values ``[batch, point, pos]``."""
        return self.proxies[0]

    @property
    def spearman(self) -> Float64[Tensor, "batch point"]:
        """Spearman's ρ over positions, full sensitivity vs the first proxy."""
        return spearman(self.sensitivity, self.paths)

    @property
    def kendall(self) -> Float64[Tensor, "batch point"]:
        """Kendall's τ-b over positions, full sensitivity vs the first proxy."""
        return kendall(self.sensitivity, self.paths)

    def point_index(self, point: int | str | None = None) -> int:
        """Index of a point (default y_n, else the last point)."""
        if point is None:
            return self.points.index(names.FINAL_NORM) if names.FINAL_NORM in self.points else -1
        if isinstance(point, int):
            return range(len(self.points))[point]
        return self.points.index(point)

    # ---------------------------------------------------------------- tables
    def headline(self) -> str:
        """Spearman ρ of every proxy against the full measurement at the last point."""
        k = len(self.points) - 1
        measured = self.measure("full")[0, k]
        rhos = ", ".join(
            f"{method} {float(spearman(measured, self.proxies[p, 0, k])):.2f}"
            for p, method in enumerate(self.proxy_methods)
        )
        return (
            f"{len(self.str_tokens) or self.proxies.shape[-1]} tokens, measures "
            f"{', '.join(self.measures)}; at {short_point(self.points[k])} "
            f"Spearman ρ(proxy, full): {rhos}"
        )

    def agreement(self, row: int = 0) -> Any:
        """Which proxy explains which measurement, per point (batch row ``row``).

        Returns:
            ``pandas.DataFrame``, one row per (point, proxy, measure) with columns:
            point, path_layer, proxy, measure, spearman, kendall, proxy_first (the proxy's
            share on the first token), measured_first, and for ``certified`` against
            ``frozen``: holds (share of positions where the bound holds: against spectral
            measurements directly, against Frobenius ones the necessary ‖J‖_F/√d ≤ bound,
            three standard errors allowed for Hutchinson), slack_median and slack_max
            (bound / measured over positions with a non-zero measurement; against
            Frobenius measurements these understate the slack on ‖J‖₂).
        """
        import pandas as pd

        records = []
        for k, point in enumerate(self.points):
            for p, method in enumerate(self.proxy_methods):
                proxy = self.proxies[p, row, k]
                for which in self.measures:
                    measured = self.measure(which)[row, k]
                    record: dict[str, Any] = {
                        "point": point,
                        "path_layer": self.path_layers[k],
                        "proxy": method,
                        "measure": which,
                        "spearman": float(spearman(measured, proxy)),
                        "kendall": float(kendall(measured, proxy)),
                        "proxy_first": _first_share(proxy),
                        "measured_first": _first_share(measured),
                    }
                    if method == "certified" and which == "frozen":
                        record.update(self._certificate(proxy, row, k))
                    records.append(record)
        return pd.DataFrame(records)

    def _certificate(self, bound: Tensor, row: int, k: int) -> dict[str, float]:
        frozen = self.measure("frozen")[row, k]
        stderr = self.frozen_stderr[row, k] if self.frozen_stderr is not None else 0 * frozen
        lower = (frozen - 3 * stderr).clamp_min(0)
        if self.norm == "fro":
            lower = lower / math.sqrt(max(self.d_model, 1))
        holds = bound >= lower * (1 - 1e-9)
        positive = frozen > 0
        slack = bound[positive] / frozen[positive]
        return {
            "holds": float(holds.double().mean()),
            "slack_median": float(slack.median()) if slack.numel() else math.nan,
            "slack_max": float(slack.max()) if slack.numel() else math.nan,
        }

    def to_dataframe(self) -> Any:
        """Long table: one row per (batch, point, position), every measure and proxy.

        Columns: batch, point, path_layer, position, token, sensitivity, stderr, then
        frozen / scores (with their stderr) when measured, then one column per proxy.
        """
        import pandas as pd

        rows = []
        batch, n_points, n_pos = self.sensitivity.shape
        for b in range(batch):
            for k in range(n_points):
                for i in range(n_pos):
                    row: dict[str, Any] = {
                        "batch": b,
                        "point": self.points[k],
                        "path_layer": self.path_layers[k],
                        "position": i,
                        "token": self.str_tokens[i] if b == 0 and self.str_tokens else None,
                        "sensitivity": float(self.sensitivity[b, k, i]),
                        "stderr": float(self.sensitivity_stderr[b, k, i]),
                    }
                    for which in self.measures[1:]:
                        row[which] = float(self.measure(which)[b, k, i])
                        err = getattr(self, f"{which}_stderr")
                        row[f"{which}_stderr"] = float(err[b, k, i])
                    for p, method in enumerate(self.proxy_methods):
                        row[method] = float(self.proxies[p, b, k, i])
                    rows.append(row)
        return pd.DataFrame(rows)

        # ---------------------------------------------------------------- figures

    def plot_profile(self, ax: Any = None, *, point: int | str | None = None, row: int = 0) -> Any:
        """Measurements and proxies over positions (each scaled to sum 1), log scale.

        Returns:
            The matplotlib Figure (the one the axes belong to, when given).
        """
        return _flow_plots.profile(self, ax, point=point, row=row)

    def plot_heatmap(self, axes: Any = None, *, row: int = 0) -> Any:
        """Layer × position heatmaps (log10): full sensitivity and the first proxy.

        Returns:
            The matplotlib Figure (the one the axes belong to, when given).
        """
        return _flow_plots.heatmap(self, axes, row=row)

    def plot_agreement(self, ax: Any = None, *, measure: str = "full", row: int = 0) -> Any:
        """Spearman ρ of every proxy against one measurement, by depth.

        Returns:
            The matplotlib Figure (the one the axes belong to, when given).
        """
        return _flow_plots.agreement(self, ax, measure=measure, row=row)

    def plot_scatter(self, ax: Any = None, *, point: int | str | None = None, row: int = 0) -> Any:
        """The first proxy against measured sensitivity, log-log, one dot per position.

        Returns:
            The matplotlib Figure (the one the axes belong to, when given).
        """
        return _flow_plots.scatter(self, ax, point=point, row=row)

    def plot(self, *, point: int | str | None = None) -> Any:
        """Profiles, rank agreement by depth, heatmaps and scatter in one figure.

        Returns:
            The matplotlib Figure.
        """
        return _flow_plots.overview(self, point=point)


def _proxy_rows(result: PathResult, points: tuple[str, ...], layers: list[int]) -> Values:
    """A path result's values at each sensitivity point ``[batch, point, pos]``."""
    if result.method == "certified":
        bound = result.sensitivity_bound  # blocks, then y_n
        rows = [bound[:, -1] if p == names.FINAL_NORM else bound[:, layer]
                for p, layer in zip(points, layers, strict=True)]  # fmt: skip
        return torch.stack(rows, dim=1).to(torch.float64)
    return result.weights[:, layers].to(torch.float64)


def _paired_layer(point: str, n_layers: int) -> int:
    if point == names.FINAL_NORM:
        return n_layers - 1
    for layer in range(n_layers):
        if point == names.resid_post(layer):
            return layer
    raise ValueError(f"cannot pair sensitivity point {point!r} with a path layer")


def _stderr(result: SensitivityResult | None) -> Values:
    assert result is not None
    if result.stderr is None:
        return torch.zeros_like(result.norms, dtype=torch.float64)
    return result.stderr.to(torch.float64)


def _d_model(result: SensitivityResult) -> int:
    return int(result.provenance.extra.get("d_model", 0))


def _replace_extra(provenance: Provenance, extra: dict[str, Any]) -> Provenance:
    return replace(provenance, extra=extra)


def _first_share(values: Tensor) -> float:
    total = float(values.sum())
    return float(values[0]) / total if total > 0 else math.nan
