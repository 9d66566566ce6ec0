"""GlassesResult and SeparatorSearch: the paper's mitigations measured side by side (Fig 2, 5d, 11).

Both are :class:`~oversquash_lens.results.Result` dataclasses of CPU tensors with
provenance, saved atomically. Axes: ``variant`` (one per mitigation, in the order asked
for), ``length`` (the task's k, ascending) and, for the separator search, ``spacing``.
"""

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from ._types import SpacingFlags, SpacingValues, VariantFlags, VariantInts, VariantValues
from .plotting import log_axes, precision_lines, style
from .precision import get_format, parse_spec
from .results import Provenance, Result

METRIC_COLUMNS: dict[str, str] = {
    "linf": "L∞ of y_n, k vs k+1",
    "eps_ratio": "L∞ in the format / ε",
    "ulps": "largest distance of y_n in ULPs",
    "relevant_sensitivity": "‖∂y_n/∂v_rel(0)‖",
    "relevant_share": "share of sensitivity on the relevant token",
    "items_share": "share of sensitivity on all items",
    "accuracy": "accuracy",
}
"""Plottable per-(variant, length) metrics and their axis labels."""

_LOG_METRICS = (
    "linf",
    "eps_ratio",
    "ulps",
    "relevant_sensitivity",
    "relevant_share",
    "items_share",
)


@dataclass
class GlassesResult(Result):
    """Collapse, sensitivity and accuracy of one task under several mitigations.

    For each variant (a mitigation: separators, a hint, another prompt order, another
    precision, no BOS) and each length k:

    - collapse: the last-token final representations y_n of the instance with k items
      and the one with k + 1 items (the task's pair), compared by
      :func:`~oversquash_lens.collapse` (float64 L∞, L∞ after rounding to the precision
      over its machine epsilon, bitwise equality after rounding, the noise floor);
    - sensitivity: ``‖∂y_n / ∂v_i(0)‖`` (Frobenius) of the answer-relevant token i (the
      final "0" in copy-last), its share of the sum over all positions, and the share of
      all item tokens; averaged over the distinct instances among the first ``samples``;
    - accuracy: the share of ``samples`` greedy answers that are right
      (:func:`~oversquash_lens.behaviour`; NaN when ``behaviour=False``).

    Attributes:
        task: Name of the task the variants were applied to.
        task_params: The base task's fields (JSON).
        variants: Variant labels.
        variant_specs: Each variant's task changes, precision and BOS choice (JSON).
        precisions: The precision each variant ran in.
        lengths: The lengths k, ascending.
        linf: ``[variant, length]`` float64 L∞ between the y_n of k and k + 1 (NaN for
            tasks with no deterministic pair).
        noise_linf: ``[variant, length]`` the noise floor of ``linf`` (NaN if unknown).
        eps_ratio: ``[variant, length]`` L∞ after rounding to the precision, over its ε.
        ulps: ``[variant, length]`` largest element-wise distance of the rounded y_n in
            units in the last place of the precision (1–2 ULPs of a large component can
            exceed ε many times, and a sign change near zero counts ~2·10^9 in float32:
            read it beside ``linf``).
        bitwise_equal: ``[variant, length]`` y_n of k and k + 1 identical after rounding.
        argmax_equal: ``[variant, length]`` 1 if the next-token argmax of k and k + 1
            agree, 0 if not, -1 if not measured.
        relevant_position: ``[variant, length]`` token index of the answer-relevant item
            in sample 0 (-1 when the task names none, e.g. counting).
        relevant_sensitivity: ``[variant, length]`` norm at the relevant token (NaN: none).
        relevant_stderr: ``[variant, length]`` standard error of a Hutchinson estimate of
            that norm (NaN for exact norms; for several instances, the root mean square
            of their errors over the number of instances).
        relevant_share: ``[variant, length]`` that norm over the sum over positions.
        items_share: ``[variant, length]`` sum of the norms at every item over the total.
        accuracy: ``[variant, length]`` share of right answers (NaN: not measured).
        samples: Samples per length for accuracy (and the sensitivity average).
        sensitivity: ``"hutchinson"``, ``"exact"`` or ``"none"``.
        probes: Hutchinson probes.
        provenance: Where the numbers came from.
    """

    task: str
    task_params: dict[str, Any]
    variants: tuple[str, ...]
    variant_specs: tuple[dict[str, Any], ...]
    precisions: tuple[str, ...]
    lengths: tuple[int, ...]
    linf: VariantValues
    noise_linf: VariantValues
    eps_ratio: VariantValues
    ulps: VariantValues
    bitwise_equal: VariantFlags
    argmax_equal: VariantInts
    relevant_position: VariantInts
    relevant_sensitivity: VariantValues
    relevant_stderr: VariantValues
    relevant_share: VariantValues
    items_share: VariantValues
    accuracy: VariantValues
    samples: int
    sensitivity: str
    probes: int
    provenance: Provenance

    def __post_init__(self) -> None:
        shape = (len(self.variants), len(self.lengths))
        others = ("noise_linf", "relevant_stderr", "bitwise_equal", "argmax_equal")
        for name in (*METRIC_COLUMNS, *others):
            value = getattr(self, name)
            if tuple(value.shape) != shape:
                raise ValueError(f"{name} must be [variant, length] = {shape}, got {value.shape}")
        if len(self.precisions) != shape[0] or len(self.variant_specs) != shape[0]:
            raise ValueError("precisions and variant_specs need one entry per variant")
        if list(self.lengths) != sorted(set(self.lengths)):
            raise ValueError("lengths must be ascending and distinct")

    def headline(self) -> str:
        """Per variant at the longest length: L∞ of y_n over ε, and the accuracy."""
        j = len(self.lengths) - 1
        lines = [f"{self.task}: {len(self.variants)} variants × lengths {list(self.lengths)}"]
        for v, label in enumerate(self.variants[:6]):
            lines.append(
                f"{label} ({self.precisions[v]}) at k = {self.lengths[j]}: "
                f"L∞/ε {float(self.eps_ratio[v, j]):.3g}, "
                f"relevant share {float(self.relevant_share[v, j]):.3g}, "
                f"accuracy {float(self.accuracy[v, j]):.2f}"
            )
        if len(self.variants) > 6:
            lines.append(f"… {len(self.variants) - 6} more variants (.to_dataframe())")
        return "\n".join(lines)

    def variant_index(self, label: str) -> int:
        """Index of a variant label.

        Raises:
            KeyError: Naming the labels this result holds.
        """
        if label not in self.variants:
            raise KeyError(f"no variant {label!r}; variants: {list(self.variants)}")
        return self.variants.index(label)

    def to_dataframe(self) -> Any:
        """Long table: one row per (variant, length).

        Returns:
            ``pandas.DataFrame`` with columns variant, precision, length, linf,
            noise_linf, eps_ratio, ulps, bitwise_equal, argmax_equal, relevant_position,
            relevant_sensitivity, relevant_stderr, relevant_share, items_share, accuracy.

        Example:
            >>> import oversquash_lens as osl
            >>> from oversquash_lens._glasses_result import GlassesResult
            >>> GlassesResult.example().to_dataframe().shape
            (4, 15)
        """
        import pandas as pd

        rows = []
        for v, label in enumerate(self.variants):
            for i, k in enumerate(self.lengths):
                argmax = int(self.argmax_equal[v, i])
                rows.append(
                    {
                        "variant": label,
                        "precision": self.precisions[v],
                        "length": k,
                        "linf": float(self.linf[v, i]),
                        "noise_linf": float(self.noise_linf[v, i]),
                        "eps_ratio": float(self.eps_ratio[v, i]),
                        "ulps": float(self.ulps[v, i]),
                        "bitwise_equal": bool(self.bitwise_equal[v, i]),
                        "argmax_equal": None if argmax < 0 else bool(argmax),
                        "relevant_position": int(self.relevant_position[v, i]),
                        "relevant_sensitivity": float(self.relevant_sensitivity[v, i]),
                        "relevant_stderr": float(self.relevant_stderr[v, i]),
                        "relevant_share": float(self.relevant_share[v, i]),
                        "items_share": float(self.items_share[v, i]),
                        "accuracy": float(self.accuracy[v, i]),
                    }
                )
        return pd.DataFrame(rows)

    def plot(self, metrics: tuple[str, ...] | None = None, *, axes: Any = None) -> Any:
        """One panel per metric against length, one line per variant.

        Length is on a log axis when it spans more than a factor 8; distances and
        sensitivities on log axes, accuracy linear in [0, 1]. The L∞ panel draws each
        precision's machine epsilon as a line (dashed, dotted, dash-dotted in turn).
        Metrics that are all NaN (e.g. accuracy with ``behaviour=False``) are left out
        unless asked for.

        Args:
            metrics: Names from :data:`METRIC_COLUMNS` (default: linf, relevant_share,
                accuracy).
            axes: A sequence of matplotlib Axes, one per metric (new figure if None).

        Returns:
            The matplotlib Figure.

        Example:
            >>> from oversquash_lens._glasses_result import GlassesResult
            >>> fig = GlassesResult.example().plot()
            >>> len(fig.axes)
            2
        """
        with style():
            return self._plot(metrics, axes)

    def _plot(self, metrics: tuple[str, ...] | None, axes: Any) -> Any:
        import matplotlib.pyplot as plt

        if metrics is None:
            metrics = tuple(
                m
                for m in ("linf", "relevant_share", "accuracy")
                if not bool(getattr(self, m).isnan().all())
            )
        unknown = [m for m in metrics if m not in METRIC_COLUMNS]
        if unknown or not metrics:
            raise ValueError(f"metrics must be among {list(METRIC_COLUMNS)}, got {list(metrics)}")
        if axes is None:
            fig, created = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4))
            axes = [created] if len(metrics) == 1 else list(created)
        else:
            axes = list(axes)
            fig = axes[0].figure
        if len(axes) != len(metrics):
            raise ValueError(f"give one Axes per metric: {len(metrics)}, got {len(axes)}")
        x = list(self.lengths)
        for ax, metric in zip(axes, metrics, strict=True):
            values = getattr(self, metric)
            for v, label in enumerate(self.variants):
                ax.plot(x, values[v].numpy(), marker="o", ms=3, label=label)
            if metric == "linf":
                names = {parse_spec(p).fmt.name for p in self.precisions}
                by_width = sorted(names, key=lambda n: get_format(n).mantissa_bits)
                precision_lines(ax, by_width)
            log_axes(
                ax,
                x=max(x) > 8 * min(x),
                y=metric in _LOG_METRICS and bool((values > 0).any()),
            )
            if metric == "accuracy":
                ax.set_ylim(-0.05, 1.05)
            ax.set_xlabel("length k")
            ax.set_ylabel(METRIC_COLUMNS[metric])
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{self.task} — {self.provenance.model_name}", fontsize=9)
        fig.tight_layout()
        return fig

    @classmethod
    def example(cls) -> "GlassesResult":
        """A small hand-made result (two variants, two lengths) for docs and tests."""
        two = torch.tensor([[0.5, 0.25], [0.5, 0.5]], dtype=torch.float64)
        nan = torch.full((2, 2), math.nan, dtype=torch.float64)
        return cls(
            task="copy_last",
            task_params={},
            variants=("baseline", "sep:3:left"),
            variant_specs=({}, {"task_changes": {"every": 3}}),
            precisions=("bfloat16", "bfloat16"),
            lengths=(1, 2),
            linf=two,
            noise_linf=torch.zeros((2, 2), dtype=torch.float64),
            eps_ratio=two / 2**-7,
            ulps=two * 64,
            bitwise_equal=torch.zeros((2, 2), dtype=torch.bool),
            argmax_equal=torch.ones((2, 2), dtype=torch.long),
            relevant_position=torch.tensor([[2, 3], [2, 4]]),
            relevant_sensitivity=two,
            relevant_stderr=nan.clone(),
            relevant_share=two / 4,
            items_share=two,
            accuracy=nan,
            samples=1,
            sensitivity="exact",
            probes=0,
            provenance=Provenance(
                "example", "none", None, "float32", "cpu", "eager", None, "hand-made"
            ),
        )


@dataclass
class SeparatorSearch(Result):
    """How sparse separators may get before the pair k vs k + 1 collapses.

    For each spacing m (a separator every m items) and every length k, the y_n of the
    instances with k and k + 1 items are compared as in :class:`GlassesResult`. A
    spacing *keeps the pair apart* when, at every length, the two are distinguishable:
    criterion ``"epsilon"`` (the paper's dashed line): the float64 L∞ of the y_n the
    model produced in the precision is at least the precision's machine epsilon;
    criterion ``"bits"``: the two are not bit-identical after rounding to the precision.

    Attributes:
        task: Name of the task.
        task_params: The base task's fields (JSON).
        precision: The precision the model ran in.
        criterion: ``"epsilon"`` or ``"bits"``.
        group: Where separators are counted from (``"left"`` or ``"right"``).
        separator: The separator text.
        spacings: The spacings tried, ascending.
        lengths: The lengths k, ascending.
        linf: ``[spacing, length]`` float64 L∞ of y_n.
        eps_ratio: ``[spacing, length]`` L∞ after rounding over the precision's ε.
        bitwise_equal: ``[spacing, length]`` identical after rounding.
        apart: ``[spacing, length]`` the criterion holds at that length.
        best: The largest spacing that keeps every length apart (None: no spacing does).
        provenance: Where the numbers came from.
        extra: Anything else the search recorded (JSON).
    """

    task: str
    task_params: dict[str, Any]
    precision: str
    criterion: str
    group: str
    separator: str
    spacings: tuple[int, ...]
    lengths: tuple[int, ...]
    linf: SpacingValues
    eps_ratio: SpacingValues
    bitwise_equal: SpacingFlags
    apart: SpacingFlags
    best: int | None
    provenance: Provenance
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shape = (len(self.spacings), len(self.lengths))
        for name in ("linf", "eps_ratio", "bitwise_equal", "apart"):
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"{name} must be [spacing, length] = {shape}")
        if self.criterion not in ("epsilon", "bits"):
            raise ValueError(f"criterion must be 'epsilon' or 'bits', got {self.criterion!r}")

    def headline(self) -> str:
        """The answer: the largest spacing that keeps every length apart."""
        span = f"k = {self.lengths[0]}..{self.lengths[-1]}" if self.lengths else "no lengths"
        if self.best is None:
            answer = "no spacing tried keeps the pair apart"
        else:
            answer = f"best = {self.best}: a {self.separator!r} every {self.best} items"
        return (
            f"{answer} ({span}, {self.precision}, criterion {self.criterion!r}); "
            f"spacings tried {list(self.spacings)}"
        )

    def plot(self, ax: Any = None) -> Any:
        """L∞ of y_n (k vs k + 1) against length, one line per spacing, with ε dashed.

        Returns:
            The matplotlib Figure (the one ``ax`` belongs to, when given).
        """
        import matplotlib.pyplot as plt

        with style():
            if ax is None:
                _, ax = plt.subplots(figsize=(7, 4))
            marker = {"marker": "o", "markersize": 4} if len(self.lengths) <= 40 else {}
            for s, spacing in enumerate(self.spacings):
                values = self.linf[s].clamp_min(1e-300).numpy()
                best = " (best)" if spacing == self.best else ""
                ax.plot(self.lengths, values, label=f"every {spacing}{best}", **marker)
            precision_lines(ax, [parse_spec(self.precision).fmt.name])
            log_axes(ax, x=max(self.lengths) > 8 * min(self.lengths))
            ax.set_xlabel("length k (items)")
            ax.set_ylabel("L∞ of y_n, k vs k + 1")
            ax.set_title(f"{self.task}: a {self.separator!r} every m items ({self.precision})")
            ax.legend(fontsize=7)
            return ax.figure

    def keeps_apart(self, spacing: int) -> bool:
        """Whether ``spacing`` keeps the pair apart at every length measured."""
        return bool(self.apart[self.spacings.index(spacing)].all())

    def first_collapse(self, spacing: int) -> int | None:
        """The smallest length at which ``spacing`` fails the criterion (None: never)."""
        row = self.apart[self.spacings.index(spacing)]
        failed = [k for k, ok in zip(self.lengths, row.tolist(), strict=True) if not ok]
        return failed[0] if failed else None

    def to_dataframe(self) -> Any:
        """One row per spacing: kept apart or not, first failing length, smallest L∞.

        Returns:
            ``pandas.DataFrame`` with columns spacing, keeps_apart, first_collapse,
            min_linf, argmin_length, min_eps_ratio, any_bitwise_equal.
        """
        import pandas as pd

        rows = []
        for s, m in enumerate(self.spacings):
            row = self.linf[s]
            low = int(torch.nan_to_num(row, nan=math.inf).argmin())
            rows.append(
                {
                    "spacing": m,
                    "keeps_apart": self.keeps_apart(m),
                    "first_collapse": self.first_collapse(m),
                    "min_linf": float(row[low]),
                    "argmin_length": self.lengths[low],
                    "min_eps_ratio": float(self.eps_ratio[s].min()),
                    "any_bitwise_equal": bool(self.bitwise_equal[s].any()),
                }
            )
        return pd.DataFrame(rows)
