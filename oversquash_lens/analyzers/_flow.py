"""FlowResult: measured sensitivity beside the attention-path bound, layer by layer.

Layer ℓ of the path product (paths through layers 0..ℓ) is paired with the sensitivity
of block ℓ's residual output; the final norm output y_n is paired with the last layer's
paths (Thm 5.1 divides it by the constant β3, which leaves ranks unchanged).
"""

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float64
from torch import Tensor

from .. import _hooknames as names
from .._types import Tokens
from ..results import Provenance, Result
from ._path_result import PathResult
from ._ranks import kendall, spearman
from ._sensitivity_result import SensitivityResult


@dataclass
class FlowResult(Result):
    """How each input position reaches the last token: sensitivity and path bound.

    Attributes:
        points: Sensitivity output points, in order (blocks' residual outputs, then y_n).
        path_layers: ``[point]`` the path-product layer each point is paired with.
        sensitivity: ``[batch, point, pos]`` ‖∂h_n(ℓ)/∂x_i‖ (float64).
        sensitivity_stderr: ``[batch, point, pos]`` standard errors (zeros when exact).
        paths: ``[batch, point, pos]`` path weights of the paired layer (float64).
        constant: ``[point]`` the Thm 5.1 constant of each paired layer (``bound`` only;
            ones otherwise): ``constant × paths`` is the sensitivity bound.
        spearman: ``[batch, point]`` Spearman's ρ over positions, sensitivity vs paths.
        kendall: ``[batch, point]`` Kendall's τ-b.
        sensitivity_method: ``"exact"``, ``"hutchinson"`` or ``"power"``.
        path_method: ``"bound"``, ``"rollout"`` or ``"context"``.
        str_tokens: Token strings of batch row 0.
        tokens: Token ids of the run.
        provenance: Provenance of the sensitivity run (the path run's is in ``extra``).
    """

    points: tuple[str, ...]
    path_layers: tuple[int, ...]
    sensitivity: Float64[Tensor, "batch point pos"]
    sensitivity_stderr: Float64[Tensor, "batch point pos"]
    paths: Float64[Tensor, "batch point pos"]
    constant: Float64[Tensor, " point"]
    spearman: Float64[Tensor, "batch point"]
    kendall: Float64[Tensor, "batch point"]
    sensitivity_method: str
    path_method: str
    str_tokens: tuple[str, ...]
    tokens: Tokens | None
    provenance: Provenance

    def __post_init__(self) -> None:
        shape = tuple(self.sensitivity.shape)
        if tuple(self.paths.shape) != shape or shape[1] != len(self.points):
            raise ValueError(
                f"sensitivity {shape} and paths {tuple(self.paths.shape)} must both be "
                f"[batch, {len(self.points)} points, pos]"
            )

    @classmethod
    def combine(cls, paths: PathResult, sensitivity: SensitivityResult) -> "FlowResult":
        """Pair a path result with a sensitivity result of the same tokens."""
        if tuple(paths.weights.shape[::2]) != tuple(sensitivity.norms.shape[::2]):
            raise ValueError(
                f"paths {tuple(paths.weights.shape)} and sensitivity "
                f"{tuple(sensitivity.norms.shape)} cover different batches or positions"
            )
        n_layers = paths.weights.shape[1]
        layers = [_paired_layer(point, n_layers) for point in sensitivity.points]
        path_rows = paths.weights[:, layers]
        constant = (
            paths.constant[layers].to(torch.float64)
            if paths.constant is not None
            else torch.ones(len(layers), dtype=torch.float64)
        )
        stderr = (
            sensitivity.stderr
            if sensitivity.stderr is not None
            else torch.zeros_like(sensitivity.norms)
        )
        return cls(
            points=tuple(sensitivity.points),
            path_layers=tuple(layers),
            sensitivity=sensitivity.norms.to(torch.float64),
            sensitivity_stderr=stderr.to(torch.float64),
            paths=path_rows.to(torch.float64),
            constant=constant,
            spearman=spearman(sensitivity.norms, path_rows),
            kendall=kendall(sensitivity.norms, path_rows),
            sensitivity_method=sensitivity.method,
            path_method=paths.method,
            str_tokens=tuple(sensitivity.str_tokens),
            tokens=sensitivity.tokens,
            provenance=_with_paths(sensitivity.provenance, paths.provenance),
        )

    def point_index(self, point: int | str | None = None) -> int:
        """Index of a point (default y_n, else the last point)."""
        if point is None:
            return self.points.index(names.FINAL_NORM) if names.FINAL_NORM in self.points else -1
        if isinstance(point, int):
            return range(len(self.points))[point]
        return self.points.index(point)

    def to_dataframe(self) -> Any:
        """Long table: one row per (batch, point, position).

        Columns: batch, point, path_layer, position, token, sensitivity, stderr, paths,
        bound (constant × paths), spearman, kendall.
        """
        import pandas as pd

        rows = []
        batch, n_points, n_pos = self.sensitivity.shape
        for b in range(batch):
            for k in range(n_points):
                for i in range(n_pos):
                    rows.append(
                        {
                            "batch": b,
                            "point": self.points[k],
                            "path_layer": self.path_layers[k],
                            "position": i,
                            "token": self.str_tokens[i] if b == 0 and self.str_tokens else None,
                            "sensitivity": float(self.sensitivity[b, k, i]),
                            "stderr": float(self.sensitivity_stderr[b, k, i]),
                            "paths": float(self.paths[b, k, i]),
                            "bound": float(self.constant[k] * self.paths[b, k, i]),
                            "spearman": float(self.spearman[b, k]),
                            "kendall": float(self.kendall[b, k]),
                        }
                    )
        return pd.DataFrame(rows)

    def agreement(self) -> Any:
        """Per point: Spearman and Kendall rank agreement (batch row 0)."""
        import pandas as pd

        return pd.DataFrame(
            {
                "point": self.points,
                "path_layer": self.path_layers,
                "spearman": self.spearman[0].tolist(),
                "kendall": self.kendall[0].tolist(),
            }
        )

    # ---------------------------------------------------------------- figures
    def plot_profile(self, ax: Any = None, *, point: int | str | None = None, row: int = 0) -> Any:
        """Sensitivity and path weight over positions (each scaled to sum 1), log scale."""
        import matplotlib.pyplot as plt

        from ..render._style import log_axes, style

        with style():
            if ax is None:
                _, ax = plt.subplots(figsize=(7, 3.5))
            k = self.point_index(point)
            x = range(self.sensitivity.shape[-1])
            for values, label in (
                (self.sensitivity, "sensitivity"),
                (self.paths, self.path_method),
            ):
                row_values = values[row, k]
                ax.plot(x, (row_values / row_values.sum()).numpy(), label=label)
            log_axes(ax)
            ax.set_xlabel("input position i")
            ax.set_ylabel("share of the total")
            ax.set_title(
                f"{_short(self.points[k])}: ρ = {float(self.spearman[row, k]):.2f}, "
                f"τ = {float(self.kendall[row, k]):.2f}"
            )
            ax.legend()
            return ax

    def plot_heatmap(self, axes: Any = None, *, row: int = 0) -> Any:
        """Two layer × position heatmaps (log10): sensitivity and path weights."""
        import matplotlib.pyplot as plt

        from ..render._style import style

        with style():
            if axes is None:
                _, axes = plt.subplots(1, 2, figsize=(11, 4))
            tiny = torch.finfo(torch.float64).tiny
            for ax, values, title in (
                (axes[0], self.sensitivity[row], "log10 sensitivity"),
                (axes[1], self.paths[row], f"log10 {self.path_method} paths"),
            ):
                image = ax.imshow(values.clamp_min(tiny).log10().numpy(), aspect="auto")
                ax.set_yticks(range(len(self.points)), [_short(p) for p in self.points])
                ax.set_xlabel("input position i")
                ax.set_ylabel("output point")
                ax.set_title(title)
                ax.figure.colorbar(image, ax=ax)
                ax.grid(False)  # no grid over an image
            return axes

    def plot_scatter(self, ax: Any = None, *, point: int | str | None = None, row: int = 0) -> Any:
        """Bound (constant × paths) against measured sensitivity, log-log, one dot per position."""
        import matplotlib.pyplot as plt

        from ..render._style import log_axes, style

        with style():
            if ax is None:
                _, ax = plt.subplots(figsize=(4.5, 4.5))
            k = self.point_index(point)
            bound = (self.constant[k] * self.paths[row, k]).numpy()
            measured = self.sensitivity[row, k].numpy()
            colours = range(len(measured))
            dots = ax.scatter(bound, measured, c=colours, cmap="viridis", s=12)
            ax.figure.colorbar(dots, ax=ax, label="position")
            log_axes(ax, x=True, y=True)
            ax.set_xlabel(f"{self.path_method} path weight × C")
            ax.set_ylabel("measured sensitivity")
            ax.set_title(f"{_short(self.points[k])}: Spearman {float(self.spearman[row, k]):.2f}")
            return ax

    def plot(self, *, point: int | str | None = None) -> Any:
        """Profile, heatmaps and scatter in one figure.

        Returns:
            The matplotlib Figure.
        """
        import matplotlib.pyplot as plt

        from ..render._style import style

        with style():
            fig = plt.figure(figsize=(13, 7.5))
            grid = fig.add_gridspec(2, 3)
            self.plot_profile(fig.add_subplot(grid[0, :2]), point=point)
            self.plot_scatter(fig.add_subplot(grid[0, 2]), point=point)
            self.plot_heatmap([fig.add_subplot(grid[1, :2]), fig.add_subplot(grid[1, 2])])
            fig.suptitle(self.provenance.model_name)
            fig.tight_layout()
            return fig


def _paired_layer(point: str, n_layers: int) -> int:
    if point == names.FINAL_NORM:
        return n_layers - 1
    for layer in range(n_layers):
        if point == names.resid_post(layer):
            return layer
    raise ValueError(f"cannot pair sensitivity point {point!r} with a path layer")


def _with_paths(sensitivity: Provenance, paths: Provenance) -> Provenance:
    from dataclasses import replace

    extra = dict(sensitivity.extra)
    extra["paths_provenance"] = paths.to_dict()
    return replace(sensitivity, extra=extra)


def _short(hook: str) -> str:
    if hook == names.FINAL_NORM:
        return "y_n"
    return hook.replace("blocks.", "L").replace(".hook_", " ")
