"""CollapseResult: how far apart the two sequences of a family stay, by length and format."""

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float64, Int
from torch import Tensor

from .. import _hooknames as names
from ..plotting import log_axes, precision_lines, style
from ..precision import get_format, parse_spec
from ..results import Provenance, Result
from ..theory import InverseLawFit, fit_inverse_law
from ._collapse_math import METRICS, first_stable, metric_index

Criterion = Literal["bits", "epsilon", "eps", "argmax"]
BF16_EPS, FP16_EPS = 2.0**-7, 2.0**-10


@dataclass(frozen=True)
class CollapseLength:
    """When a pair collapses in one format, measured and predicted.

    Attributes:
        precision: The precision label of the measured run.
        criterion: ``"bits"`` (bitwise equal in the format), ``"epsilon"`` (L∞ below the
            format's machine epsilon) or ``"argmax"`` (same next token).
        point: The compared point.
        measured: First measured length from which the pair stays collapsed (None: it
            never does within the lengths measured).
        predicted: Length where the 1/k law fitted on the most precise run falls to the
            format's epsilon (None without a usable fit).
        reference: Precision label of the run the law was fitted on.
        fit: The fitted power law (its ``slope`` says how close to 1/k the curve is).
    """

    precision: str
    criterion: str
    point: str
    measured: int | None
    predicted: float | None
    reference: str | None
    fit: InverseLawFit | None

    def __repr__(self) -> str:
        measured = "never (within the lengths measured)" if self.measured is None else self.measured
        predicted = "no fit" if self.predicted is None else f"{self.predicted:.4g}"
        if self.fit is not None:
            predicted += f" (fit on {self.reference}: slope {self.fit.slope:.2f})"
        return (
            f"CollapseLength({self.precision}, criterion {self.criterion!r}, at {self.point}: "
            f"measured={measured}, predicted={predicted})"
        )


@dataclass
class CollapseResult(Result):
    """Distances between the last-token representations of a family's pairs.

    Axes: ``precision`` (one per run setting), ``length`` (the family's k), ``point``
    (residual points v(0)..v(L), y_n, then ``"logits"``), ``metric`` (l1, l2, linf,
    cosine), ``layer``/``head`` for per-head outputs (``hook_z``).

    Attributes:
        lengths: The lengths k, ascending.
        precisions: Precision labels (``"float32"``, ``"emulate:bfloat16"``...).
        formats: The number format each precision's comparisons were made in.
        points: Point names.
        head_layers: Layers of the per-head distances.
        distances: ``[precision, length, point, metric]`` float64.
        noise: ``[precision, length, point, metric]`` the same position computed by two
            different passes (NaN where the pair shares no prefix).
        head_distances: ``[precision, length, layer, head, metric]``.
        head_noise: ``[precision, length, layer, head, metric]``.
        bitwise_equal: ``[precision, length, point]`` identical after rounding to the format.
        ulps: ``[precision, length, point]`` largest element-wise distance in ULPs; a sign change
            near zero counts ~2·10^9 in float32 (read it beside ``distances``).
        eps_ratio: ``[precision, length, point]`` L∞ in the format over its epsilon.
        argmax_a: ``[precision, length]`` next-token argmax after A_k (-1 without logits).
        argmax_b: ``[precision, length]`` next-token argmax after B_k.
        continuation_equal: ``[precision, length]`` 1 if the greedy continuations of
            ``continuation`` tokens agree, 0 if not, -1 if not measured.
        continuation: Length of the compared greedy continuations (0: not measured).
        family: The family's name.
        family_params: The family's parameters.
        mode: ``"shared"`` (one pass per prefix chain) or ``"independent"``.
        passes: Forward passes made per precision.
        provenance: Where the numbers came from.
    """

    lengths: tuple[int, ...]
    precisions: tuple[str, ...]
    formats: tuple[str, ...]
    points: tuple[str, ...]
    head_layers: tuple[int, ...]
    distances: Float64[Tensor, "precision length point metric"]
    noise: Float64[Tensor, "precision length point metric"]
    head_distances: Float64[Tensor, "precision length layer head metric"]
    head_noise: Float64[Tensor, "precision length layer head metric"]
    bitwise_equal: Bool[Tensor, "precision length point"]
    ulps: Float64[Tensor, "precision length point"]
    eps_ratio: Float64[Tensor, "precision length point"]
    argmax_a: Int[Tensor, "precision length"]
    argmax_b: Int[Tensor, "precision length"]
    continuation_equal: Int[Tensor, "precision length"]
    continuation: int
    family: str
    mode: str
    passes: int
    provenance: Provenance
    family_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shape = (len(self.precisions), len(self.lengths), len(self.points), len(METRICS))
        if tuple(self.distances.shape) != shape or tuple(self.noise.shape) != shape:
            raise ValueError(f"distances and noise must be {shape}")
        if list(self.lengths) != sorted(self.lengths):
            raise ValueError("lengths must be ascending")

    # ------------------------------------------------------------------ lookups
    def precision_index(self, precision: str) -> int:
        """Index of a precision label (also accepts a format name when unambiguous)."""
        if precision in self.precisions:
            return self.precisions.index(precision)
        name = parse_spec(precision).fmt.name
        matches = [i for i, f in enumerate(self.formats) if f == name]
        if len(matches) != 1:
            raise KeyError(f"no precision {precision!r} here; measured: {list(self.precisions)}")
        return matches[0]

    def point_index(self, point: str | int | None = None) -> int:
        """Index of a point name (default y_n, the final norm output)."""
        if point is None:
            point = names.FINAL_NORM
        if isinstance(point, int):
            return range(len(self.points))[point]
        if point not in self.points:
            raise KeyError(f"no point {point!r}; points: {list(self.points)}")
        return self.points.index(point)

    def curve(
        self, precision: str, point: str | int | None = None, metric: str = "linf"
    ) -> Float64[Tensor, " length"]:
        """One distance against length."""
        p, k = self.precision_index(precision), self.point_index(point)
        return self.distances[p, :, k, metric_index(metric)]

    # ------------------------------------------------------------------ analysis
    def collapse_length(
        self,
        precision: str,
        criterion: Criterion = "bits",
        *,
        point: str | int | None = None,
    ) -> CollapseLength:
        """The first length from which the pair stays collapsed, and the 1/ε prediction.

        The prediction fits ``D(k) ≈ c/k`` to the L∞ curve of the most precise run
        measured (float64, else float32...) and returns ``c / ε`` for the format of
        ``precision`` (a c/k distance crosses ε at k ≈ c/ε: collapse length scales as 1/ε).

        Args:
            precision: A measured precision label.
            criterion: ``"bits"``, ``"epsilon"`` (or ``"eps"``) or ``"argmax"``.
            point: Point name or index (default y_n; ignored for ``"argmax"``).

        Returns:
            A :class:`CollapseLength`: the length is ``.measured`` (None: the pair never
            stays collapsed within the lengths measured), the 1/ε prediction
            ``.predicted``.
        """
        criterion = "epsilon" if criterion == "eps" else criterion
        p, k = self.precision_index(precision), self.point_index(point)
        fmt = get_format(self.formats[p])
        if criterion == "bits":
            flags = self.bitwise_equal[p, :, k]
        elif criterion == "epsilon":
            flags = self.distances[p, :, k, metric_index("linf")] < fmt.epsilon
        elif criterion == "argmax":
            if bool((self.argmax_a[p] < 0).any()):
                raise ValueError("the logits were not kept: rerun with logits")
            flags = self.argmax_a[p] == self.argmax_b[p]
        else:
            raise ValueError(
                f"criterion must be 'bits', 'epsilon' (or 'eps') or 'argmax', got {criterion!r}"
            )
        index = first_stable(flags)
        reference = self._most_precise()
        fit = None
        if reference is not None:
            curve = self.distances[reference, :, k, metric_index("linf")]
            usable = [
                (n, float(v))
                for n, v in zip(self.lengths, curve.tolist(), strict=True)
                if 0 < v < math.inf
            ]
            if len(usable) >= 2:
                fit = fit_inverse_law([n for n, _ in usable], [v for _, v in usable])
        return CollapseLength(
            precision=self.precisions[p],
            criterion=criterion,
            point=self.points[k],
            measured=None if index is None else self.lengths[index],
            predicted=None if fit is None else fit.collapse_length(fmt.epsilon),
            reference=None if reference is None else self.precisions[reference],
            fit=fit,
        )

    def _most_precise(self) -> int | None:
        widths = [get_format(f).mantissa_bits for f in self.formats]
        return max(range(len(widths)), key=lambda i: widths[i]) if widths else None

    # ------------------------------------------------------------------ tables
    def headline(self) -> str:
        """Per precision: from which k y_n is bit-identical, and the smallest L∞ there."""
        span = f"{self.lengths[0]}..{self.lengths[-1]}" if self.lengths else "none"
        lines = [f"{self.family}, {len(self.lengths)} lengths {span}, {self.mode} mode"]
        k = self.point_index(None) if names.FINAL_NORM in self.points else len(self.points) - 1
        for p, label in enumerate(self.precisions):
            found = self.collapse_length(label, "bits", point=k).measured
            when = "never bit-identical" if found is None else f"bit-identical from k = {found}"
            low = float(torch.nan_to_num(self.distances[p, :, k, 2], nan=math.inf).min())
            lines.append(
                f"{label}: y_n {when}; smallest L∞ {low:.3g} "
                f"(ε = {get_format(self.formats[p]).epsilon:.3g})"
            )
        return "\n".join(lines)

    def metric(self, name: str = "linf", *, of: str = "distances") -> Tensor:
        """One metric of a distance field: ``of`` without its last (metric) axis.

        Args:
            name: One of ``"l1"``, ``"l2"``, ``"linf"``, ``"cosine"``.
            of: ``"distances"`` or ``"noise"`` (``[precision, length, point]``),
                ``"head_distances"`` or ``"head_noise"`` (``[precision, length, layer,
                head]``).

        Example:
            >>> import oversquash_lens as osl
            >>> r = osl.collapse(osl.load_model("tiny-gpt2"), osl.tasks.ones(), [1, 2],
            ...                  progress=False)
            >>> r.metric("linf").shape, r.metric("l2", of="head_noise").shape
            (torch.Size([1, 2, 5]), torch.Size([1, 2, 2, 4]))
        """
        fields = ("distances", "noise", "head_distances", "head_noise")
        if of not in fields:
            raise ValueError(f"of must be one of {fields}, got {of!r}")
        return getattr(self, of)[..., metric_index(name)]

    def rows(self) -> list[dict[str, Any]]:
        """The :meth:`to_dataframe` rows, as dicts of plain Python values."""
        rows = []
        for p, precision in enumerate(self.precisions):
            for i, length in enumerate(self.lengths):
                argmax_equal = (
                    bool(self.argmax_a[p, i] == self.argmax_b[p, i])
                    if int(self.argmax_a[p, i]) >= 0
                    else None
                )
                cont = int(self.continuation_equal[p, i])
                for k, point in enumerate(self.points):
                    row: dict[str, Any] = {
                        "precision": precision,
                        "format": self.formats[p],
                        "length": length,
                        "point": point,
                    }
                    for j, metric in enumerate(METRICS):
                        row[metric] = float(self.distances[p, i, k, j])
                    row["noise_linf"] = float(self.noise[p, i, k, metric_index("linf")])
                    row["bitwise_equal"] = bool(self.bitwise_equal[p, i, k])
                    row["ulps"] = float(self.ulps[p, i, k])
                    row["eps_ratio"] = float(self.eps_ratio[p, i, k])
                    row["argmax_equal"] = argmax_equal
                    row["continuation_equal"] = None if cont < 0 else bool(cont)
                    rows.append(row)
        return rows

    def to_dataframe(self) -> Any:
        """Long table: one row per (precision, length, point).

        Columns: precision, format, length, point, l1, l2, linf, cosine, noise_linf,
        bitwise_equal, ulps, eps_ratio, argmax_equal, continuation_equal.
        """
        import pandas as pd

        return pd.DataFrame(self.rows())

    def heads_dataframe(self, metric: str = "linf") -> Any:
        """Per-head summary: one row per (precision, length, layer) with mean/min/max over heads."""
        import pandas as pd

        j = metric_index(metric)
        rows = []
        for p, precision in enumerate(self.precisions):
            for i, length in enumerate(self.lengths):
                for li, layer in enumerate(self.head_layers):
                    values = self.head_distances[p, i, li, :, j]
                    noise = self.head_noise[p, i, li, :, j]
                    rows.append(
                        {
                            "precision": precision,
                            "length": length,
                            "layer": layer,
                            f"mean_{metric}": float(values.mean()),
                            f"min_{metric}": float(values.min()),
                            f"max_{metric}": float(values.max()),
                            f"noise_max_{metric}": float(noise.max()),
                        }
                    )
        return pd.DataFrame(rows)

    def _head_layer_index(self, layer: int | None) -> int:
        wanted = range(max(self.head_layers) + 1)[layer if layer is not None else -1]
        if wanted not in self.head_layers:
            raise KeyError(f"layer {layer} heads were not measured; measured {self.head_layers}")
        return self.head_layers.index(wanted)

    # ------------------------------------------------------------------ figure
    def plot(
        self,
        ax: Any = None,
        *,
        layer: int | None = -1,
        point: str | int | None = None,
        metric: str = "linf",
        precisions: list[str] | None = None,
    ) -> Any:
        """The paper's Fig 5: distance against length on a log axis.

        By default the per-head distances of the last layer (mean over heads, min–max
        band with its edges drawn), with a dashed line at 2^-7 (bf16 epsilon), a dotted one
        at 2^-10 (fp16 epsilon) and the noise floor shaded; a floor that is 0 at every length is
        said in words instead (a band at 0 cannot show on a log axis). Markers are drawn
        only up to 40 lengths. ``layer=None`` plots a residual point instead (``point``).

        Returns:
            The matplotlib Figure (the one ``ax`` belongs to, when given).
        """
        import matplotlib.pyplot as plt

        with style():
            if ax is None:
                _, ax = plt.subplots(figsize=(6, 4))
            j = metric_index(metric)
            x = list(self.lengths)
            # a marker per length only while they stay apart; 1000 markers make a blob
            marker = {"marker": "o", "markersize": 4} if len(x) <= 40 else {}
            chosen = precisions if precisions is not None else list(self.precisions)
            use_heads = layer is not None and len(self.head_layers) > 0
            plotted: list[Tensor] = []
            zero_floor: list[str] = []
            for label in chosen:
                p = self.precision_index(label)
                if use_heads:
                    li = self._head_layer_index(layer)
                    values = self.head_distances[p, :, li, :, j]
                    mean, low, high = values.mean(-1), values.amin(-1), values.amax(-1)
                    plotted += [low, high]
                    noise = self.head_noise[p, :, li, :, j].amax(-1)
                    line = ax.plot(
                        x, mean.numpy(), label=f"{label} (mean over heads)", zorder=3, **marker
                    )
                    colour = line[0].get_color()
                    # every band translucent under every line, its edges drawn thin, so
                    # one precision's band never hides another's
                    ax.fill_between(
                        x, low.numpy(), high.numpy(), alpha=0.12, color=colour, zorder=1
                    )
                    for edge in (low, high):
                        ax.plot(x, edge.numpy(), color=colour, linewidth=0.6, alpha=0.7, zorder=2)
                    what = f"layer {self.head_layers[li]} heads"
                else:
                    k = self.point_index(point)
                    mean = self.distances[p, :, k, j]
                    noise = self.noise[p, :, k, j]
                    ax.plot(x, mean.numpy(), label=label, zorder=3, **marker)
                    plotted.append(mean)
                    what = self.points[k]
                finite = torch.nan_to_num(noise, nan=0.0)
                if not bool((finite > 0).any()):  # a band at 0 is invisible on a log axis
                    zero_floor.append(label)
                    continue
                ax.fill_between(
                    x,
                    1e-300,
                    finite.clamp_min(1e-300).numpy(),
                    alpha=0.15,
                    color="grey",
                    hatch="//",
                    zorder=0,
                    label=f"noise floor ({label})",
                )
            if zero_floor:  # said in the legend, where a band's entry would be
                ax.plot(
                    [], [], " ", label=f"noise floor: 0 at every length ({', '.join(zero_floor)})"
                )
            precision_lines(ax, ["bfloat16", "float16"])
            log_axes(ax, x=True, y=True)
            ax.set_xlabel("length k (tokens)")
            ax.set_ylabel(f"{metric} distance, {what}")
            ax.set_title(f"{self.family} ({self.mode}) — {self.provenance.model_name}")
            ax.legend(fontsize=7)
            shown = torch.cat([torch.as_tensor(y).flatten() for y in plotted])
            positive = shown[shown > 0]
            top = max(float(positive.max()) * 3 if positive.numel() else 1.0, BF16_EPS * 3)
            bottom = min(float(positive.min()) / 10 if positive.numel() else 1e-6, FP16_EPS / 3)
            ax.set_ylim(max(bottom, 1e-16), top)
            return ax.figure
