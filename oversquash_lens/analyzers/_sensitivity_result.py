"""SensitivityResult: Jacobian norms of layer outputs with respect to each input position."""

from dataclasses import dataclass
from typing import Any

import torch

from .._hooknames import FINAL_NORM, resid_post
from .._types import SensitivityNorms, Tokens
from ..plotting import style
from ..results import Provenance, Result
from ..results._describe import share_line, short_point

METHODS = ("exact", "hutchinson", "power")
NORMS = ("fro", "spectral")
ATTENTIONS = ("full", "frozen", "scores", "split")


@dataclass
class SensitivityResult(Result):
    """``‖∂h(ℓ) / ∂x_i‖`` for every output point ℓ and input position i, for one run.

    ``h(ℓ)`` is one position (``position``, default the last token) of a block's
    residual output or of the final norm output y_n; ``x`` is the first block's input
    (``wrt="resid_pre0"``, v(0) in the paper) or the token embedding (``wrt="embed"``).

    Attributes:
        norms: ``[batch, point, pos]`` float64 norms (Frobenius or spectral).
        stderr: Same shape: standard error of each Hutchinson estimate of the norm
            (delta method, ``SE(‖J‖²) / (2‖J‖)``); None for exact and power-iteration
            results. ``norms ± 1.96·stderr`` is an approximate 95% interval.
        points: Hook name of each output point, in order.
        method: ``"exact"``, ``"hutchinson"`` or ``"power"``.
        norm: ``"fro"`` or ``"spectral"``.
        probes: Hutchinson probes k (None for other methods).
        wrt: ``"resid_pre0"`` or ``"embed"``.
        wrt_hook: Hook name of the input differentiated against.
        position: The output position measured (-1: the last token).
        seed: Seed of the probes / starting vectors (None for exact).
        tokens: Token ids ``[batch, pos]`` of the run, if known.
        str_tokens: Token strings of the first batch row.
        provenance: Where the numbers came from (``extra`` holds the chunk size and the
            power-iteration settings).
        attention: ``"full"`` (through everything), ``"frozen"`` (attention patterns held
            constant: the value path only), ``"scores"`` (``‖J_full − J_frozen‖``, the part
            through the attention scores) or ``"split"`` (all three stacked along the
            batch, see ``split_result``).
    """

    norms: SensitivityNorms
    stderr: SensitivityNorms | None
    points: tuple[str, ...]
    method: str
    norm: str
    probes: int | None
    wrt: str
    wrt_hook: str
    position: int
    seed: int | None
    tokens: Tokens | None
    str_tokens: tuple[str, ...]
    provenance: Provenance
    attention: str = "full"

    def __post_init__(self) -> None:
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")
        if self.norms.ndim != 3 or self.norms.shape[1] != len(self.points):
            raise ValueError(
                f"norms must be [batch, {len(self.points)}, pos], got {tuple(self.norms.shape)}"
            )
        if self.stderr is not None and self.stderr.shape != self.norms.shape:
            raise ValueError(
                f"stderr must have the shape of norms {tuple(self.norms.shape)}, got "
                f"{tuple(self.stderr.shape)}"
            )
        if self.method not in METHODS or self.norm not in NORMS:
            raise ValueError(f"unknown method/norm {self.method!r}/{self.norm!r}")

    def point_index(self, point: int | str) -> int:
        """Index into ``points`` of a block number, ``"final"`` (y_n) or a hook name.

        A negative block number counts from the end of the block outputs this result
        holds (with ``layers="all"``: from the model's last block).

        Raises:
            KeyError: If the result holds no such point.
        """
        if isinstance(point, int):
            blocks = [p for p in self.points if p != FINAL_NORM]
            if point < 0:
                if -point > len(blocks):
                    raise KeyError(f"block {point} is not among this result's {blocks}")
                return self.points.index(blocks[point])
            name = resid_post(point)
        else:
            name = FINAL_NORM if point == "final" else point
        if name not in self.points:
            raise KeyError(f"{point!r} is not among this result's points {list(self.points)}")
        return self.points.index(name)

    def headline(self) -> str:
        """Where the last point's sensitivity lies (batch row 0)."""
        symbol = "Frobenius" if self.norm == "fro" else "spectral"
        return (
            f"{self.method} {symbol} norms of ∂h_n/∂x_i, {self.attention} attention, "
            f"{len(self.points)} points × {self.norms.shape[-1]} positions\n"
            f"at {short_point(self.points[-1])}: {share_line(self.norms[0, -1])}"
        )

    def to_dataframe(self) -> Any:
        """Long table: one row per (batch row, point, input position).

        Returns:
            ``pandas.DataFrame`` with columns batch, point, hook, pos, token (first batch
            row's strings, else ""), norm, stderr (NaN for exact results).
        """
        import pandas as pd

        batch, n_points, n_pos = self.norms.shape
        stderr = self.stderr if self.stderr is not None else torch.full_like(self.norms, torch.nan)
        rows = [
            {
                "batch": b,
                "point": k,
                "hook": self.points[k],
                "pos": i,
                "token": self.str_tokens[i] if i < len(self.str_tokens) else "",
                "norm": float(self.norms[b, k, i]),
                "stderr": float(stderr[b, k, i]),
            }
            for b in range(batch)
            for k in range(n_points)
            for i in range(n_pos)
        ]
        return pd.DataFrame(rows)

    def plot(
        self,
        ax: Any = None,
        *,
        kind: str = "profile",
        batch: int = 0,
        points: list[int | str] | None = None,
    ) -> Any:
        """Sensitivity against input position.

        Args:
            ax: Matplotlib Axes to draw on (a new figure if None).
            kind: ``"profile"``: one line per chosen point on a log scale, with a ±1.96
                standard-error band for Hutchinson results; ``"heatmap"``: point × position,
                log colour scale.
            batch: Batch row to draw.
            points: Points to draw in a profile (block numbers, ``"final"`` or hook
                names); default all when there are at most 8, else 6 evenly spaced ones
                and the last.

        Returns:
            The matplotlib Figure (the one ``ax`` belongs to, when given).
        """
        import matplotlib.pyplot as plt
        from matplotlib.colors import LogNorm

        with style():
            if kind not in ("profile", "heatmap"):
                raise ValueError(f"kind must be 'profile' or 'heatmap', got {kind!r}")
            if ax is None:
                _, ax = plt.subplots(figsize=(7, 4))
            values = self.norms[batch].numpy()
            symbol = "‖·‖_F" if self.norm == "fro" else "‖·‖₂"
            title = f"{self.provenance.model_name}: {symbol} of ∂h/∂x_i ({self.method})"
            if kind == "heatmap":
                positive = values[values > 0]
                floor = float(positive.min()) if positive.size else 1.0
                image = ax.imshow(
                    values.clip(min=floor), aspect="auto", norm=LogNorm(), interpolation="nearest"
                )
                ax.set_yticks(range(len(self.points)), [short_point(p) for p in self.points])
                ax.set_xlabel("input position i")
                ax.figure.colorbar(image, ax=ax, label=symbol)
                ax.grid(False)  # no grid over an image
                ax.set_title(title)
                return ax.figure
            chosen = (
                self._default_points() if points is None else [self.point_index(p) for p in points]
            )
            positions = range(values.shape[1])
            for k in chosen:
                label = short_point(self.points[k])
                line = ax.plot(positions, values[k], marker=".", label=label)[0]
                if self.stderr is not None:
                    spread = 1.96 * self.stderr[batch, k].numpy()
                    low = (values[k] - spread).clip(min=values[k] * 1e-3)
                    ax.fill_between(
                        positions, low, values[k] + spread, alpha=0.2, color=line.get_color()
                    )
            ax.set_yscale("log")
            ax.set_xlabel("input position i")
            ax.set_ylabel(symbol)
            ax.set_title(title)
            ax.legend(fontsize="small")
            return ax.figure

    def _default_points(self) -> list[int]:
        n = len(self.points)
        if n <= 8:
            return list(range(n))
        step = (n - 1) / 6
        return sorted({round(j * step) for j in range(6)} | {n - 1})
