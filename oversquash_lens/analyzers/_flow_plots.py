"""The figures of a :class:`~oversquash_lens.FlowResult` (its ``plot_*`` methods call these).

Each draws into given axes or a new figure and returns the matplotlib Figure. ``result``
is a ``FlowResult`` (typed ``Any`` here: that module imports this one).
"""

from typing import Any

import torch
from torch import Tensor

from .. import _hooknames as names
from ..plotting import log_axes, style
from ._ranks import spearman


def profile(result: Any, ax: Any = None, *, point: int | str | None = None, row: int = 0) -> Any:
    """Measurements and proxies over positions (each scaled to sum 1), log scale.

    Returns:
        The matplotlib Figure (the one the axes belong to, when given).
    """
    import matplotlib.pyplot as plt

    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 3.5))
        k = result.point_index(point)
        x = range(result.sensitivity.shape[-1])
        for which in result.measures:
            values = result.measure(which)[row, k]
            style_kw = {"linewidth": 2.2} if which == "full" else {"linewidth": 1.6}
            ax.plot(x, _shares(values).numpy(), label=f"measured: {which}", **style_kw)
        for p, method in enumerate(result.proxy_methods):
            values = result.proxies[p, row, k]
            ax.plot(x, _shares(values).numpy(), linestyle="--", label=f"proxy: {method}")
        log_axes(ax)
        ax.set_xlabel("input position i")
        ax.set_ylabel("share of the total")
        ax.set_title(
            f"{_short(result.points[k])}: ρ({result.path_method}, full) = "
            f"{float(result.spearman[row, k]):.2f}"
        )
        ax.legend(fontsize="small")
        return ax.figure


def heatmap(result: Any, axes: Any = None, *, row: int = 0) -> Any:
    """Layer × position heatmaps (log10): full sensitivity and the first proxy.

    Returns:
        The matplotlib Figure (the one the axes belong to, when given).
    """
    import matplotlib.pyplot as plt

    with style():
        if axes is None:
            _, axes = plt.subplots(1, 2, figsize=(11, 4))
        tiny = torch.finfo(torch.float64).tiny
        for ax, values, title in (
            (axes[0], result.sensitivity[row], "log10 sensitivity"),
            (axes[1], result.paths[row], f"log10 {result.path_method}"),
        ):
            image = ax.imshow(values.clamp_min(tiny).log10().numpy(), aspect="auto")
            ax.set_yticks(range(len(result.points)), [_short(p) for p in result.points])
            ax.set_xlabel("input position i")
            ax.set_ylabel("output point")
            ax.set_title(title)
            ax.figure.colorbar(image, ax=ax)
            ax.grid(False)  # no grid over an image
        return axes[0].figure


def agreement(result: Any, ax: Any = None, *, measure: str = "full", row: int = 0) -> Any:
    """Spearman ρ of every proxy against one measurement, by depth.

    Returns:
        The matplotlib Figure (the one the axes belong to, when given).
    """
    import matplotlib.pyplot as plt

    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 3.5))
        measured = result.measure(measure)[row]
        for p, method in enumerate(result.proxy_methods):
            rho = spearman(measured, result.proxies[p, row])
            ax.plot(range(len(result.points)), rho.numpy(), marker="o", label=method)
        ax.axhline(0.8, color="grey", linestyle=":", linewidth=1)
        ax.set_xticks(range(len(result.points)), [_short(p) for p in result.points], rotation=90)
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel(f"Spearman ρ vs {measure} sensitivity")
        ax.set_title("which proxy ranks the positions like the measurement")
        ax.legend(fontsize="small")
        return ax.figure


def scatter(result: Any, ax: Any = None, *, point: int | str | None = None, row: int = 0) -> Any:
    """The first proxy against measured sensitivity, log-log, one dot per position.

    Returns:
        The matplotlib Figure (the one the axes belong to, when given).
    """
    import matplotlib.pyplot as plt

    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 4.5))
        k = result.point_index(point)
        proxy = result.paths[row, k].numpy()
        measured = result.sensitivity[row, k].numpy()
        dots = ax.scatter(proxy, measured, c=range(len(measured)), cmap="viridis", s=12)
        ax.figure.colorbar(dots, ax=ax, label="position")
        log_axes(ax, x=True, y=True)
        ax.set_xlabel(f"{result.path_method}")
        ax.set_ylabel("measured sensitivity")
        ax.set_title(f"{_short(result.points[k])}: Spearman {float(result.spearman[row, k]):.2f}")
        return ax.figure


def overview(result: Any, *, point: int | str | None = None) -> Any:
    """Profiles, rank agreement by depth, heatmaps and scatter in one figure.

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    with style():
        fig = plt.figure(figsize=(13, 11))
        grid = fig.add_gridspec(3, 3)
        profile(result, fig.add_subplot(grid[0, :2]), point=point)
        scatter(result, fig.add_subplot(grid[0, 2]), point=point)
        agreement(result, fig.add_subplot(grid[1, :]))
        heatmap(result, [fig.add_subplot(grid[2, :2]), fig.add_subplot(grid[2, 2])])
        fig.suptitle(result.provenance.model_name)
        fig.tight_layout()
        return fig


def _shares(values: Tensor) -> Tensor:
    total = values.sum()
    return values / total if float(total) > 0 else values


def _short(hook: str) -> str:
    if hook == names.FINAL_NORM:
        return "y_n"
    return hook.replace("blocks.", "L").replace(".hook_", " ")
