"""CollapseProbe: keep last-token representations of each run, compare any two runs.

The probe keeps, at a few sequence positions, every residual-stream point v(0)..v(L),
the final norm output y_n, every head's output (``hook_z``) and the logits, in the dtype
the model produced them. Two kept representations are compared in float64
(:func:`~oversquash_lens.analyzers._collapse_math.distances`) and in a number format
(bitwise equality, ULPs, distance relative to epsilon).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Bool, Float, Float64
from torch import Tensor

from .. import _hooknames as names
from .._checks import require_int
from .._errors import IncompatibleRunError
from .._types import Tokens
from ..plotting import log_axes, precision_lines, style
from ..precision import FloatFormat, FormatLike, get_format
from ..results import Provenance, Result
from ..results._describe import short_point
from ._base import Analyzer, RunRecord
from ._collapse_math import METRICS, Prepared, metric_index, pair_distances, pair_in_format
from ._memory import ModelShape, Part, kept_bytes

if TYPE_CHECKING:  # a type only: these take any object with the adapter's attributes
    from .._adapter import ModelAdapter

HeadSpec = bool | int | Sequence[int]


@dataclass
class Representations(Result):
    """Representations kept by a :class:`CollapseProbe` from one run.

    Attributes:
        positions: Absolute sequence positions kept.
        points: Hook names of the residual points (v(0)..v(L), then y_n).
        residual: ``[batch, kept_pos, point, d_model]`` in the model's dtype.
        head_layers: Layers whose per-head outputs were kept.
        heads: ``[batch, kept_pos, layer, head, d_head]`` (``layer`` empty without heads).
        logits: ``[batch, kept_pos, d_vocab]`` (``d_vocab`` empty without logits).
        tokens: Token ids of the run, if known.
        provenance: Where the run came from (dtype, active precision...).
    """

    positions: tuple[int, ...]
    points: tuple[str, ...]
    residual: Float[Tensor, "batch kept point d_model"]
    head_layers: tuple[int, ...]
    heads: Float[Tensor, "batch kept layer head d_head"]
    logits: Float[Tensor, "batch kept vocab"]
    tokens: Tokens | None
    provenance: Provenance

    def headline(self) -> str:
        """What was kept."""
        return (
            f"{self.residual.shape[0]} run(s), positions {list(self.positions)[:6]}"
            f"{'…' if len(self.positions) > 6 else ''}, {len(self.points)} residual points"
            f", heads of {len(self.head_layers)} layers, logits "
            f"{'kept' if self.logits.shape[-1] else 'not kept'}"
        )

    def index_of(self, position: int) -> int:
        """Index into the kept axis of an absolute (or negative, from the end) position."""
        length = self.tokens.shape[-1] if self.tokens is not None else None
        absolute = position + length if position < 0 and length is not None else position
        if absolute not in self.positions:
            raise KeyError(
                f"position {position} was not kept (kept: {list(self.positions)[:8]}...); "
                "give the probe positions=[...]"
            )
        return self.positions.index(absolute)


@dataclass
class PairComparison(Result):
    """Two kept representations compared in float64 and in one number format.

    Attributes:
        points: Compared points: the residual points, y_n, then ``"logits"`` if kept.
        distances: ``[point, metric]`` float64 (metrics: l1, l2, linf, cosine).
        head_layers: Layers of ``head_distances``.
        head_distances: ``[layer, head, metric]`` float64.
        format: The number format of the format comparison.
        bitwise_equal: ``[point]`` identical after rounding to ``format``.
        ulps: ``[point]`` largest element-wise distance in ULPs of ``format``; a sign change
            near zero counts ~2·10^9 in float32 (read it beside ``distances``).
        eps_ratio: ``[point]`` L∞ of the rounded values over the format's epsilon.
        argmax_a: Next-token argmax of the first run (-1 without logits).
        argmax_b: Next-token argmax of the second run.
        provenance: Provenance of the first run.
    """

    points: tuple[str, ...]
    distances: Float64[Tensor, "point metric"]
    head_layers: tuple[int, ...]
    head_distances: Float64[Tensor, "layer head metric"]
    format: str
    bitwise_equal: Bool[Tensor, " point"]
    ulps: Float64[Tensor, " point"]
    eps_ratio: Float64[Tensor, " point"]
    argmax_a: int
    argmax_b: int
    provenance: Provenance

    def headline(self) -> str:
        """The y_n comparison (the last residual point when there is no final norm)."""
        k = next(
            (i for i, p in enumerate(self.points) if short_point(p) == "y_n"),
            len(self.points) - 1,
        )
        same = "identical" if bool(self.bitwise_equal[k]) else "different"
        line = (
            f"at {short_point(self.points[k])}: L∞ {float(self.distances[k, 2]):.4g}, "
            f"{same} in {self.format} ({float(self.ulps[k]):.4g} ULPs)"
        )
        if self.argmax_a >= 0:
            line += f"; next token {'same' if self.argmax_a == self.argmax_b else 'differs'}"
        return line

    def plot(self, ax: Any = None, *, metric: str = "linf") -> Any:
        """The distance between the two runs at every point v(0)..v(L), y_n, logits.

        Returns:
            The matplotlib Figure (the one ``ax`` belongs to, when given).
        """
        import matplotlib.pyplot as plt

        j = metric_index(metric)  # before a figure is made
        with style():
            if ax is None:
                _, ax = plt.subplots(figsize=(7, 3.5))
            values = self.distances[:, j].clamp_min(1e-300)
            ax.plot(range(len(self.points)), values.numpy(), marker="o", label=metric)
            ax.set_xticks(
                range(len(self.points)), [short_point(p) for p in self.points], rotation=90
            )
            precision_lines(ax, [self.format])
            log_axes(ax)
            ax.set_ylabel(f"{metric} distance of the last token")
            ax.set_title(f"two runs compared ({self.format})")
            ax.legend(fontsize=7)
            return ax.figure

    def to_dataframe(self) -> Any:
        """One row per point: the four distances and the format comparison."""
        import pandas as pd

        rows = []
        for k, point in enumerate(self.points):
            row: dict[str, Any] = {"point": point}
            row.update({m: float(self.distances[k, j]) for j, m in enumerate(METRICS)})
            row.update(
                bitwise_equal=bool(self.bitwise_equal[k]),
                ulps=float(self.ulps[k]),
                eps_ratio=float(self.eps_ratio[k]),
            )
            rows.append(row)
        return pd.DataFrame(rows)


def compare_arrays(
    residual_a: Float[Tensor, " *pair point d_model"],
    residual_b: Float[Tensor, " *pair point d_model"],
    heads_a: Float[Tensor, " *pair layer head d_head"],
    heads_b: Float[Tensor, " *pair layer head d_head"],
    logits_a: Float[Tensor, " *pair vocab"],
    logits_b: Float[Tensor, " *pair vocab"],
    fmt: FormatLike,
) -> dict[str, Tensor]:
    """Every collapse metric for pairs of representations (leading axes are pairs).

    Returns:
        ``distances [*pair, point(+1 with logits), 4]``, ``head_distances
        [*pair, layer, head, 4]``, ``bitwise_equal``/``ulps``/``eps_ratio``
        ``[*pair, point(+1)]``, ``argmax_a``/``argmax_b`` ``[*pair]`` (-1 without logits).
    """
    spec = get_format(fmt)
    a = Side.of(residual_a, heads_a, logits_a, spec)
    b = Side.of(residual_b, heads_b, logits_b, spec)
    return compare_sides(a, b)


@dataclass(frozen=True)
class Side:
    """One side of many comparisons: kept representations, each prepared once.

    See :class:`~oversquash_lens.analyzers._collapse_math.Prepared`.
    """

    residual: Prepared
    heads: Prepared
    logits: Prepared
    argmax: Tensor  # [rows] (-1 without logits)

    @classmethod
    def of(cls, residual: Tensor, heads: Tensor, logits: Tensor, fmt: FloatFormat | None) -> "Side":
        """Prepare the residual points and logits for ``fmt``, the heads for distances.

        ``fmt`` None prepares everything for distances only.
        """
        with_logits = logits.shape[-1] > 0
        argmax = (  # max's indices: argmax's numbers (first of ties, NaN first), ~3× faster
            logits.max(-1).indices
            if with_logits
            else torch.full(residual.shape[:-2], -1, dtype=torch.long)
        )
        return cls(Prepared.of(residual, fmt), Prepared.of(heads), Prepared.of(logits, fmt), argmax)

    @classmethod
    def cat(cls, sides: "list[Side]") -> "Side":
        """The rows of ``sides``, one after the other (copies)."""
        parts = [[s.residual, s.heads, s.logits] for s in sides]
        residual, heads, logits = (
            Prepared.cat(list(column)) for column in zip(*parts, strict=True)
        )
        return cls(residual, heads, logits, torch.cat([s.argmax for s in sides]))

    def rows(self, index: list[int]) -> "Side":
        """The rows ``index`` of every part (views when consecutive)."""
        argmax = self.argmax.index_select(0, torch.tensor(index, dtype=torch.long))
        return Side(
            self.residual.rows(index), self.heads.rows(index), self.logits.rows(index), argmax
        )


def compare_sides(a: Side, b: Side) -> dict[str, Tensor]:
    """:func:`compare_arrays` on prepared sides: row i of ``a`` against row i of ``b``."""
    dist = pair_distances(a.residual, b.residual)
    in_format = pair_in_format(a.residual, b.residual, linf=dist[..., 2])
    equal, ulps, ratio = in_format.bitwise_equal, in_format.ulps, in_format.eps_ratio
    if a.logits.values.shape[-1] > 0:
        logit_dist = pair_distances(a.logits, b.logits)
        dist = torch.cat([dist, logit_dist.unsqueeze(-2)], dim=-2)
        logit_format = pair_in_format(a.logits, b.logits, linf=logit_dist[..., 2])
        equal = torch.cat([equal, logit_format.bitwise_equal.unsqueeze(-1)], dim=-1)
        ulps = torch.cat([ulps, logit_format.ulps.unsqueeze(-1)], dim=-1)
        ratio = torch.cat([ratio, logit_format.eps_ratio.unsqueeze(-1)], dim=-1)
    return {
        "distances": dist,
        "head_distances": pair_distances(a.heads, b.heads),
        "bitwise_equal": equal,
        "ulps": ulps,
        "eps_ratio": ratio,
        "argmax_a": a.argmax,
        "argmax_b": b.argmax,
    }


def floor_distances(a: Side, b: Side) -> tuple[Tensor, Tensor]:
    """The noise floor between two sides: point distances (logits last) and head distances."""
    floor = pair_distances(a.residual, b.residual)
    if a.logits.values.shape[-1] > 0:
        floor = torch.cat([floor, pair_distances(a.logits, b.logits).unsqueeze(-2)], dim=-2)
    return floor, pair_distances(a.heads, b.heads)


class CollapseProbe(Analyzer[Representations]):
    """Keep last-token representations of every run, to compare runs pairwise.

    Args:
        positions: Sequence positions to keep (negative counts from the end; default the
            last token).
        heads: Keep per-head outputs (``hook_z``): True for every layer, a layer index or
            a list of them, False for none.
        logits: Keep the logits at those positions.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-nope")  # no positional encoding
        >>> with osl.attach(model, osl.CollapseProbe()) as rec:
        ...     _ = model(model.to_tokens("1 1 1"))
        ...     _ = model(model.to_tokens("1 1 1 1"))
        >>> cmp = rec.compare(0, 1)
        >>> cmp.distances.shape, bool(cmp.distances[0].eq(0).all())  # same last token: same v(0)
        (torch.Size([5, 4]), True)
    """

    def __init__(
        self, *, positions: Sequence[int] = (-1,), heads: HeadSpec = True, logits: bool = True
    ) -> None:
        if isinstance(positions, int) or not isinstance(positions, Sequence):
            raise TypeError(f"positions must be a list of ints, got {positions!r}")
        if not positions:
            raise ValueError("positions must name at least one sequence position")
        self.positions = tuple(require_int("positions", p) for p in positions)
        self.heads = heads
        self.logits = logits
        self._head_layers: tuple[int, ...] = ()
        self._stacks: dict[str, _Stack] = {}  # hook name -> the stack its values go into

    def bind(self, adapter: "ModelAdapter") -> None:
        """Resolve the head layers for this model and check the hook points exist."""
        self._head_layers = _head_layers(self.heads, adapter.n_layers)
        super().bind(adapter)
        residual = _residual_names(self.hook_names(adapter))
        heads = [names.z(layer) for layer in self._head_layers]
        self._stacks = {n: stack for stack in map(_Stack, (residual, heads)) for n in stack.keys}

    def hook_names(self, adapter: "ModelAdapter") -> list[str]:
        """Residual points, y_n, the chosen layers' ``hook_z`` and the logits."""
        layers = _head_layers(self.heads, adapter.n_layers)
        out = adapter.residual_points + [adapter.final_norm]
        out += [names.z(layer) for layer in layers]
        return out + [names.LOGITS] if self.logits else out

    def memory_parts(
        self, shape: ModelShape, hook_names: list[str], batch: int, n: int
    ) -> list[Part]:
        """The kept positions of every point read (stacked in place by :meth:`compute`)."""
        kept = min(len(set(self.positions)), n)
        size = sum(kept_bytes(shape, name, batch, n) for name in hook_names) * kept // n
        return [Part(f"CollapseProbe's {kept} kept positions", size, host=True)]

    def keep(self, name: str, activation: Tensor) -> Tensor:
        """Only the kept positions, ``[batch, kept, ...]``, copied to the CPU.

        The residual points and the heads are copied straight into their run's stack
        (:class:`_Stack`), so :meth:`compute` has nothing left to copy.
        """
        index = _absolute(self.positions, activation.shape[1])
        view = index == list(range(index[0], index[0] + len(index)))
        if view:  # a slice: a view, copied once below
            picked = activation.detach()[:, index[0] : index[0] + len(index)]
        else:
            picked = activation.detach()[:, index]  # a list index: always a new tensor
        stack = self._stacks.get(name)
        slot = stack.put(name, picked) if stack is not None else None
        return slot if slot is not None else picked.to("cpu", copy=view)

    def compute(self, run: RunRecord) -> Representations:
        """Stack what was kept into a :class:`Representations`."""
        self.check_run(run)
        assert run.provenance is not None
        residual_names = _residual_names(run.hook_names)
        if _RELEASED in run.activations:
            raise IncompatibleRunError(
                f"{self.name} already computed run {run.index} and released what it kept; "
                "read the cached result with rec.result(...)"
            )
        first = run.activations[residual_names[0]]
        batch, kept = first.shape[:2]
        empty = first.new_zeros((batch, kept, 0))
        logits = run.activations.get(names.LOGITS, empty)
        residual = _stacked(run.activations, residual_names)
        z_names = [names.z(layer) for layer in self._head_layers]
        if z_names:
            heads = _stacked(run.activations, z_names)
        else:
            heads = first.new_zeros((batch, kept, 0, 0, 0))
        run.activations[_RELEASED] = torch.empty(0)
        length = run.tokens.shape[-1] if run.tokens is not None else None
        positions = (
            tuple(_absolute(self.positions, length)) if length is not None else self.positions
        )
        return Representations(
            positions=positions,
            points=tuple(residual_names),
            residual=residual,
            head_layers=self._head_layers,
            heads=heads,
            logits=logits,
            tokens=run.tokens,
            provenance=run.provenance,
        )


_RELEASED = "__collapse_probe_released__"  # marks a run whose kept tensors compute() moved


def _residual_names(hook_names: list[str]) -> list[str]:
    """The residual points and y_n among a probe's hook names (not the heads, not logits)."""
    return [n for n in hook_names if n != names.LOGITS and not n.endswith("attn.hook_z")]


class _Stack:
    """One run's ``[batch, kept, point, ...]`` CPU stack of a group of hook points.

    The group's first point opens a stack for the run; every point of the group is then
    copied into its slot, and the slot (a view) is what the run keeps. The stack closes
    once every slot is filled. A point that does not fit the open stack (another shape or
    dtype, or no stack open: the points fired in an unusual order) closes it and is copied
    on its own, and :func:`_stacked` stacks that run as ``torch.stack`` would, so the
    result is the same either way.
    """

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self._index = {key: i for i, key in enumerate(keys)}
        self._open: Tensor | None = None
        self._filled: set[int] = set()

    def put(self, name: str, picked: Tensor) -> Tensor | None:
        """Copy ``picked`` into its slot of the open stack; None when it does not fit."""
        i = self._index[name]
        if i == 0:
            shape = (*picked.shape[:2], len(self.keys), *picked.shape[2:])
            self._open = torch.empty(shape, dtype=picked.dtype, device="cpu")
            self._filled = set()
        out = self._open
        fits = (
            out is not None
            and i not in self._filled
            and out.dtype == picked.dtype
            and out.shape[:2] == picked.shape[:2]
            and out.shape[3:] == picked.shape[2:]
        )
        if not fits:  # this run is stacked by _stacked's copy: keep nothing more here
            self._open = None
            return None
        assert out is not None
        slot = out[:, :, i]
        slot.copy_(picked)
        self._filled.add(i)
        if len(self._filled) == len(self.keys):
            self._open = None  # complete: nothing more goes into this run's stack
        return slot


def _stacked(kept: dict[str, Tensor], keys: list[str]) -> Tensor:
    """``torch.stack([kept[k] for k in keys], dim=2)``, dropping the entries.

    When every entry is its slot of one :class:`_Stack` (the usual case) that stack is
    the answer, without a copy.
    """
    first = kept[keys[0]]
    base = first._base
    whole = (
        base is not None
        and base.dim() == first.dim() + 1
        and base.shape[2] == len(keys)
        and all(
            kept[k]._base is base and kept[k].data_ptr() == base[:, :, i].data_ptr()
            for i, k in enumerate(keys)
        )
    )
    if not whole:
        return _stack_releasing(kept, keys)
    assert base is not None
    for key in keys:
        del kept[key]
    return base


def _stack_releasing(kept: dict[str, Tensor], keys: list[str]) -> Tensor:
    """``torch.stack([kept[k] for k in keys], dim=2)``, dropping each entry once copied.

    The stack and the kept tensors never both exist in full: at 8192 positions of every
    point of SmolLM2 that saves gigabytes.
    """
    first = kept[keys[0]]
    dtype = first.dtype  # as torch.stack promotes: points may differ (a float32 final norm)
    for key in keys[1:]:
        dtype = torch.promote_types(dtype, kept[key].dtype)
    out = first.new_empty((*first.shape[:2], len(keys), *first.shape[2:]), dtype=dtype)
    for index, key in enumerate(keys):
        out[:, :, index] = kept.pop(key)
    return out


def compare(
    a: Representations,
    b: Representations,
    *,
    position_a: int = -1,
    position_b: int = -1,
    row_a: int = 0,
    row_b: int = 0,
    precision: FormatLike | None = None,
) -> PairComparison:
    """Compare one kept representation of run ``a`` with one of run ``b``.

    Args:
        a: Representations of the first run.
        b: Representations of the second run.
        position_a: Position in ``a`` (default its last token).
        position_b: Position in ``b``.
        row_a: Batch row in ``a``.
        row_b: Batch row in ``b``.
        precision: Format of the bitwise/ULP comparison (default: the dtype ``a`` ran in).
    """
    if a.points != b.points or a.head_layers != b.head_layers:
        raise ValueError("the two runs were probed at different points; use one CollapseProbe")
    fmt = get_format(precision if precision is not None else a.residual.dtype)
    ia, ib = a.index_of(position_a), b.index_of(position_b)
    metrics = compare_arrays(
        a.residual[row_a, ia],
        b.residual[row_b, ib],
        a.heads[row_a, ia],
        b.heads[row_b, ib],
        a.logits[row_a, ia],
        b.logits[row_b, ib],
        fmt,
    )
    points = a.points + (("logits",) if a.logits.shape[-1] else ())
    return PairComparison(
        points=points,
        distances=metrics["distances"],
        head_layers=a.head_layers,
        head_distances=metrics["head_distances"],
        format=fmt.name,
        bitwise_equal=metrics["bitwise_equal"],
        ulps=metrics["ulps"],
        eps_ratio=metrics["eps_ratio"],
        argmax_a=int(metrics["argmax_a"]),
        argmax_b=int(metrics["argmax_b"]),
        provenance=a.provenance,
    )


def _head_layers(heads: HeadSpec, n_layers: int) -> tuple[int, ...]:
    if heads is True:
        return tuple(range(n_layers))
    if heads is False:
        return ()
    if isinstance(heads, str) or not isinstance(heads, int | Sequence):
        raise TypeError(f"heads must be True, False, a layer or a list of layers, got {heads!r}")
    chosen = [heads] if isinstance(heads, int) else list(heads)
    resolved = []
    for layer in (require_int("heads", h) for h in chosen):
        if not -n_layers <= layer < n_layers:
            raise ValueError(f"head layer {layer} does not exist: the model has {n_layers}")
        resolved.append(layer % n_layers)
    return tuple(resolved)


def _absolute(positions: Sequence[int], length: int) -> list[int]:
    out = []
    for p in positions:
        absolute = p + length if p < 0 else p
        if not 0 <= absolute < length:
            raise ValueError(f"position {p} is outside a sequence of {length} tokens")
        out.append(absolute)
    return out
