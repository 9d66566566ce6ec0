"""``osl.collapse``: sweep a sequence family over lengths and precisions (paper §4).

For every length k the family gives two token sequences (A_k, B_k); the last-token
representations of both are kept by a :class:`CollapseProbe` and compared in float64 and
in each precision's format. Beside every distance sits its noise floor: one position
computed by two different passes, which the causal mask makes mathematically the same
vector.

``mode="shared"`` uses the causal mask: a sequence that is a prefix of a longer one needs
no pass of its own, so ``repeated_last`` over lengths 1..N costs one pass over the
longest sequence (plus one for the noise floor) instead of 2N passes.
"""

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from . import _memory as memory
from ._adapter import ModelAdapter
from ._attach import attach
from ._errors import CheckpointError, UnsupportedArchitectureError
from ._generate import greedy_continuation
from ._progress import progress_bar
from ._run_precision import parse_precision, precision_context
from .analyzers._collapse_math import METRICS, take_rows
from .analyzers._collapse_plan import Unit, plan
from .analyzers._collapse_probe import (
    CollapseProbe,
    HeadSpec,
    Representations,
    Side,
    compare_sides,
    floor_distances,
)
from .analyzers._collapse_result import CollapseResult
from .analyzers._memory import Part, kept_bytes
from .precision import FloatFormat, FormatLike
from .results import Provenance
from .results._checkpoint import Checkpoint
from .tasks._base import check_lengths
from .tasks._custom import PairFamily

Mode = Literal["shared", "independent"]
RECIPE = "recipe"  # the checkpoint entry of a shard's plan
_CHUNK = 8  # pairs compared at once: bounds the float64 copies of the logits
_COMPARE_COPIES = 16  # float64-sized rows per pair of a chunk alive while it is compared:
# up to 4 distinct places per pair, each a float64 copy, its rounding and its keys, and the
# differences of the pairs


def _run_passes(
    model: Any, unit: Unit, heads: HeadSpec, device: torch.device
) -> list[Representations]:
    wanted: list[set[int]] = [set() for _ in unit.passes]
    for where in [*unit.a, *unit.b, *(p for n in unit.noise if n for p in n)]:
        wanted[where[0]].add(where[1])
    out = []
    for index, seq in enumerate(unit.passes):
        probe = CollapseProbe(positions=sorted(wanted[index]), heads=heads, logits=True)
        tokens = torch.tensor([seq], dtype=torch.long, device=device)
        with torch.no_grad(), attach(model, probe) as rec:
            model(tokens)
        reps = rec.result(probe)
        assert isinstance(reps, Representations)
        out.append(reps)
    return out


def check_memory(adapter: ModelAdapter, units: list[Unit], heads: HeadSpec) -> None:
    """Refuse, before the first pass, a sweep whose largest unit would not fit.

    The largest unit's passes run one after the other and each one's kept positions stay
    until the unit is compared; the check covers the longest pass while every other pass
    of that unit is held.
    """

    def kept(unit: Unit, index: int) -> int:
        places = [*unit.a, *unit.b, *(p for n in unit.noise if n for p in n)]
        return len({pos for q, pos in places if q == index})

    worst = max(units, key=lambda u: max(len(s) for s in u.passes))
    lengths = [len(seq) for seq in worst.passes]
    longest = lengths.index(max(lengths))
    probe = CollapseProbe(positions=tuple(range(kept(worst, longest))), heads=heads)
    names = {probe.name: probe.hook_names(adapter)}
    shape = memory.shape_of(adapter, eager=False)
    held = [
        part
        for index, seq in enumerate(worst.passes)
        if index != longest
        for part in CollapseProbe(
            positions=tuple(range(kept(worst, index))), heads=heads
        ).memory_parts(shape, names[probe.name], 1, len(seq))
    ]
    # comparing: _CHUNK pairs gathered, then float64 copies, differences and ULP keys
    width = sum(kept_bytes(shape, name, 1, 1) for name in names[probe.name])
    width //= shape.element_size
    held.append(Part(f"comparing {_CHUNK} pairs at a time", _COMPARE_COPIES * _CHUNK * width * 8))
    memory.check(adapter, [probe], names, 1, max(lengths), grad=False, extra=held)


class _Places:
    """The kept vectors of one chunk's places, prepared once per pass (no copy first)."""

    def __init__(
        self,
        reps: list[Representations],
        rows_of: list[dict[int, int]],
        places: set[tuple[int, int]],
        fmt: FloatFormat,
        compared: set[tuple[int, int]],
    ) -> None:
        """Prepare ``places``; ``compared``: those also compared in ``fmt``.

        ``rows_of``: per pass, position -> row of its kept tensors (:func:`_rows_of`). The
        places not compared in ``fmt`` are prepared for distances only.
        """
        self.slots: dict[tuple[int, int], tuple[int, int]] = {}  # place -> (pass, row)
        self.sides: dict[int, Side] = {}
        for q in sorted({q for q, _ in places}):
            rep = reps[q]
            positions = sorted(pos for p, pos in places if p == q)
            kept = [rows_of[q][pos] for pos in positions]
            self.slots.update({(q, pos): (q, i) for i, pos in enumerate(positions)})
            residual, heads, logits = (
                take_rows(t[0], kept) for t in (rep.residual, rep.heads, rep.logits)
            )
            in_format = fmt if any((q, pos) in compared for pos in positions) else None
            self.sides[q] = Side.of(residual, heads, logits, in_format)

    def rows(self, where: list[tuple[int, int]]) -> Side:
        """The prepared rows at ``where``, in order."""
        at = [self.slots[place] for place in where]
        passes = {q for q, _ in at}
        if len(passes) == 1:
            return self.sides[passes.pop()].rows([i for _, i in at])
        return Side.cat([self.sides[q].rows([i]) for q, i in at])


def _rows_of(reps: list[Representations]) -> list[dict[int, int]]:
    """Per pass, each kept position's row (built once per unit, read by every chunk)."""
    return [{pos: i for i, pos in enumerate(rep.positions)} for rep in reps]


def _same_values(
    reps: list[Representations],
    rows_of: list[dict[int, int]],
    places: list[tuple[tuple[int, int], tuple[int, int]]],
) -> bool:
    """Whether every pair of places holds the same finite values at every point and head.

    The noise floor of such a pair is exactly 0 in every metric (the L1, L2 and L∞ of a
    zero difference, and 1 − cos of a vector with itself), so it needs no float64 copy;
    this is the usual case in float32. ``torch.equal`` reads both sides once and stops
    at the first difference; a float64 sum is finite exactly when every element is (for
    formats up to float32; a float64 sum that overflows only sends the chunk the long
    way). A NaN or an infinity takes the full route, where they make the distances NaN.
    """
    if not places:
        return False
    sides = [[pair[side] for pair in places] for side in (0, 1)]
    rows = [
        {
            q: [rows_of[q][pos] for r, pos in where if r == q]
            for q in dict.fromkeys(q for q, _ in where)
        }
        for where in sides
    ]
    for field in ("residual", "heads", "logits"):
        a, b = (
            _rows_at(reps, where, by_pass, field)
            for where, by_pass in zip(sides, rows, strict=True)
        )
        if not torch.equal(a, b) or not bool(a.sum(dtype=torch.float64).isfinite()):
            return False
    return True


def _rows_at(
    reps: list[Representations],
    where: list[tuple[int, int]],
    by_pass: dict[int, list[int]],
    field: str,
) -> Tensor:
    """``[places, -1]``: one kept field at each ``(pass, position)`` of ``where``.

    ``by_pass`` lists the places' rows per pass, in order; one pass holding them all
    gives a view.
    """
    taken = {q: take_rows(getattr(reps[q], field)[0], index) for q, index in by_pass.items()}
    if len(taken) == 1:
        return next(iter(taken.values())).flatten(1)
    rows = {q: iter(t) for q, t in taken.items()}
    return torch.stack([next(rows[q]) for q, _ in where]).flatten(1)


def _measure(reps: list[Representations], unit: Unit, fmt: FloatFormat) -> dict[str, Tensor]:
    """Metrics for every pair of a unit, ``[pairs, ...]``, compared in chunks.

    Each chunk's distinct places are prepared once: in a sweep pair k's longer side is
    pair k + 1's shorter one, and the noise floor re-reads the shorter one. A noise floor
    between two places holding the same finite values is 0 without any arithmetic
    (:func:`_same_values`).
    """
    chunks: list[dict[str, Tensor]] = []
    rows_of = _rows_of(reps)
    for start in range(0, len(unit.pairs), _CHUNK):
        stop = start + _CHUNK
        a_at, b_at, noise_at = unit.a[start:stop], unit.b[start:stop], unit.noise[start:stop]
        known = [j for j, n in enumerate(noise_at) if n is not None]
        zero: list[int] = []
        if _same_values(reps, rows_of, [noise_at[j] for j in known]):  # type: ignore[misc]
            zero, known = known, []
        first = [noise_at[j][0] for j in known]  # type: ignore[index]
        second = [noise_at[j][1] for j in known]  # type: ignore[index]
        places = _Places(reps, rows_of, {*a_at, *b_at, *first, *second}, fmt, {*a_at, *b_at})
        metrics = compare_sides(places.rows(a_at), places.rows(b_at))
        n_points = metrics["distances"].shape[-2]
        noise = torch.full(
            (len(noise_at), n_points, len(METRICS)), float("nan"), dtype=torch.float64
        )
        head_noise = torch.full_like(metrics["head_distances"], float("nan"))
        if zero:  # every metric of two equal vectors
            noise[zero], head_noise[zero] = 0.0, 0.0
        if known:
            floor, head_floor = floor_distances(places.rows(first), places.rows(second))
            noise[known], head_noise[known] = floor, head_floor
        metrics["noise"], metrics["head_noise"] = noise, head_noise
        chunks.append(metrics)
        del places
    return {key: torch.cat([c[key] for c in chunks]) for key in chunks[0]}


def collapse(
    model: Any,
    family: Any,
    lengths: Iterable[int] | None = None,
    precisions: Sequence[FormatLike] = ("float32",),
    *,
    mode: str = "shared",
    heads: HeadSpec = True,
    continuation: int = 0,
    progress: bool = True,
    checkpoint: str | Path | None = None,
) -> CollapseResult:
    """Measure how the two sequences of a family collapse with length, per precision.

    Args:
        model: HookedTransformer or TransformerBridge.
        family: A sequence family from :mod:`oversquash_lens.tasks`.
        lengths: The lengths k to measure (ints; floats, bools and strings are refused).
            None only for a fixed :func:`~oversquash_lens.tasks.pair`, which has none.
        precisions: Native dtypes (``"float64"``, ``"float32"``, ``"float16"``,
            ``"bfloat16"``) run the model in that dtype; ``"emulate:<format>"`` rounds the
            residual stream and head outputs to any format (``"emulate:float8_e4m3"``,
            ``"emulate:e5m3"``) while the model runs in its own dtype.
        mode: ``"shared"`` reads every prefix from one pass (causal mask);
            ``"independent"`` makes one pass per sequence (the paper's protocol).
        heads: Per-head distances (``hook_z``): True for every layer, a layer or list.
        continuation: Also compare greedy continuations of this many tokens (costs
            ``2 × continuation`` extra passes per length).
        progress: Show a progress bar.
        checkpoint: A file to save progress to (data only, atomic); a rerun with the same
            model and arguments resumes. A file written for other weights, dtype, weight
            processing, backend, precision context or sweep arguments is refused.

    Returns:
        A :class:`~oversquash_lens.CollapseResult`.

    Raises:
        EmptySequenceError: If ``lengths`` is empty.
        TypeError: For lengths that are not ints, or no lengths for a family that needs
            them.
        PromptTooLongError: If a sequence is longer than the model's context.
        UnsupportedPrecisionError: For a native precision the device cannot run, or an
            emulated format wider than the model's dtype.
        UnsupportedArchitectureError: For ``mode="shared"`` on a bidirectional model.
        CheckpointMismatchError: For a checkpoint written for another model or sweep.
        CheckpointError: For a corrupt or truncated checkpoint.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-gpt2")
        >>> result = osl.collapse(model, osl.tasks.repeated_last("1"), [1, 2, 4],
        ...                       ["float32", "emulate:bfloat16"], progress=False)
        >>> result.distances.shape  # precision, length, point (v0..v2, y_n, logits), metric
        torch.Size([2, 3, 5, 4])
    """
    plan, done, _ = sweep(
        model, family, lengths, precisions, mode, heads, continuation, progress, checkpoint
    )
    return assemble(plan, done)


Done = dict[tuple[int, int], tuple[dict[str, Tensor], tuple[str, ...], tuple[int, ...]]]


def sweep(
    model: Any,
    family: Any,
    lengths: Iterable[int] | None,
    precisions: Sequence[FormatLike],
    mode: str,
    heads: HeadSpec,
    continuation: int,
    progress: bool,
    checkpoint: str | Path | None,
    only: Callable[[list[tuple[int, int]], list[int]], set[tuple[int, int]]] | None = None,
) -> tuple[dict[str, Any], Done, Checkpoint | None]:
    """Run :func:`collapse`'s units; return its plan, the units done and the checkpoint.

    ``only`` picks the units to run from every ``(precision, unit)`` item and each item's
    pass count (a shard of the sweep, see ``oversquash_lens._shards``); None runs all.
    The plan is JSON-able and, with the units done, all :func:`assemble` needs.
    """
    adapter = ModelAdapter(model)
    if continuation < 0:
        raise ValueError(f"continuation must be >= 0, got {continuation}")
    settings = [parse_precision(p, adapter.device, adapter.dtype) for p in precisions]
    if not settings:
        raise ValueError("precisions is empty: give at least one, e.g. ['float32']")
    labels = [s.label for s in settings]
    if len(set(labels)) != len(labels):
        raise ValueError(f"precisions repeat: {labels}")
    if mode == "shared" and not adapter.is_causal:
        raise UnsupportedArchitectureError(
            f"{adapter.info.name} attends bidirectionally, so a prefix's last token is not "
            "the same vector inside a longer pass: mode='shared' needs a causal model; use "
            "mode='independent' (one pass per sequence)"
        )
    pairs = _pairs(model, family, lengths)
    ordered = [p.k for p in pairs]
    sequences = [(tuple(p.a.tolist()), tuple(p.b.tolist())) for p in pairs]
    units = plan(sequences, mode)
    check_memory(adapter, units, heads)
    if not adapter.is_causal:  # common prefixes differ: no noise floor can be read
        units = [dataclasses.replace(u, noise=[None] * len(u.noise)) for u in units]
    signature = {
        "family": family.describe(),
        "lengths": ordered,
        "precisions": labels,
        "mode": mode,
        "heads": heads if isinstance(heads, bool | int) else list(heads),
        "continuation": continuation,
    }
    items = [(p, u) for p in range(len(settings)) for u in range(len(units))]
    wanted = set(items) if only is None else only(items, [len(units[u].passes) for _, u in items])
    saved = _open_checkpoint(checkpoint, adapter, signature)
    done: Done = saved[1] if saved else {}
    total = sum(len(units[u].passes) for p, u in items if (p, u) in wanted)
    bar = progress_bar(
        total=total, disable=not progress, desc=f"collapse {family.name}", unit="pass"
    )
    last_save = time.monotonic()
    probe_names = CollapseProbe(heads=heads).hook_names(adapter)
    for p, setting in enumerate(settings):
        if not any((p, u) in wanted for u in range(len(units))):
            continue
        with precision_context(model, setting):
            for u, unit in enumerate(units):
                if (p, u) not in wanted:
                    continue
                if (p, u) in done:
                    bar.update(len(unit.passes))
                    continue
                reps = _run_passes(model, unit, heads, adapter.device)
                metrics = _measure(reps, unit, setting.fmt)
                metrics["continuation_equal"] = _continuations(
                    model, [pairs[i] for i in unit.pairs], continuation, adapter.device
                )
                points = reps[0].points + (("logits",) if reps[0].logits.shape[-1] else ())
                done[p, u] = (metrics, points, reps[0].head_layers)
                bar.update(len(unit.passes))
                if saved is not None:
                    _remember(saved[0], (p, u), done[p, u])
                    if time.monotonic() - last_save > 30:
                        saved[0].save()
                        last_save = time.monotonic()
    bar.close()
    if saved is not None:
        saved[0].save()
    passes = sum(len(u.passes) for u in units)
    provenance = adapter.provenance(
        hook_names=probe_names,
        precision=", ".join(labels),
        extra={"family": family.describe(), "mode": mode, "passes_per_precision": passes},
    )
    recipe = {
        "lengths": ordered,
        "precisions": labels,
        "formats": [s.fmt.name for s in settings],
        "unit_pairs": [u.pairs for u in units],
        "passes": passes,
        "mode": mode,
        "continuation": continuation,
        "family": family.name,
        "family_params": family.describe(),
        "provenance": provenance.to_dict(),
    }
    return recipe, done, saved[0] if saved else None


def _continuations(model: Any, pairs: list[Any], length: int, device: torch.device) -> Tensor:
    if length == 0:
        return torch.full((len(pairs),), -1, dtype=torch.long)
    out = []
    for pair in pairs:
        a = greedy_continuation(model, pair.a[None].to(device), length)
        b = greedy_continuation(model, pair.b[None].to(device), length)
        out.append(int(torch.equal(a.cpu(), b.cpu())))
    return torch.tensor(out, dtype=torch.long)


def assemble(recipe: dict[str, Any], done: Done) -> CollapseResult:
    """The :class:`CollapseResult` of a sweep's plan and its units (no model needed).

    Every ``(precision, unit)`` of the plan must be in ``done``.
    """
    per_precision: list[dict[str, Tensor]] = []
    points: tuple[str, ...] = ()
    head_layers: tuple[int, ...] = ()
    for p in range(len(recipe["precisions"])):
        order: list[int] = []
        parts: list[dict[str, Tensor]] = []
        for u, pairs in enumerate(recipe["unit_pairs"]):
            metrics, points, head_layers = done[p, u]
            order += pairs
            parts.append(metrics)
        inverse = torch.argsort(torch.tensor(order))
        per_precision.append({k: torch.cat([m[k] for m in parts])[inverse] for k in parts[0]})

    def stack(key: str) -> Tensor:
        return torch.stack([m[key] for m in per_precision])

    return CollapseResult(
        lengths=tuple(recipe["lengths"]),
        precisions=tuple(recipe["precisions"]),
        formats=tuple(recipe["formats"]),
        points=points,
        head_layers=head_layers,
        distances=stack("distances"),
        noise=stack("noise"),
        head_distances=stack("head_distances"),
        head_noise=stack("head_noise"),
        bitwise_equal=stack("bitwise_equal"),
        ulps=stack("ulps"),
        eps_ratio=stack("eps_ratio"),
        argmax_a=stack("argmax_a"),
        argmax_b=stack("argmax_b"),
        continuation_equal=stack("continuation_equal"),
        continuation=recipe["continuation"],
        family=recipe["family"],
        family_params=recipe["family_params"],
        mode=recipe["mode"],
        passes=recipe["passes"],
        provenance=Provenance.from_dict(recipe["provenance"]),
    )


def _open_checkpoint(
    path: str | Path | None, adapter: ModelAdapter, signature: dict[str, Any]
) -> tuple[Checkpoint, Done] | None:
    """The sweep's checkpoint and the units it already holds (None without a path).

    Keyed by the model's fingerprint and the sweep's arguments: a file written for other
    weights, dtype, weight processing, backend or precision context is refused.
    """
    if path is None:
        return None
    key = {"sweep": signature, "model": adapter.fingerprint()}
    ckpt = Checkpoint.open(path, "collapse", key)
    return ckpt, finished_units(ckpt)


def finished_units(ckpt: Checkpoint) -> Done:
    """The ``(precision, unit)`` entries a collapse checkpoint holds."""
    path = ckpt.path
    done: Done = {}
    for name in ckpt.names():
        entry = ckpt.get(name)
        if name == RECIPE:  # a shard's plan (oversquash_lens._shards)
            continue
        p, _, u = name.partition("/")
        if entry is None or not (p.isdigit() and u.isdigit()):
            raise CheckpointError(f"checkpoint {path} holds an unknown entry {name!r}")
        meta, arrays = entry
        done[int(p), int(u)] = (arrays, tuple(meta["points"]), tuple(meta["head_layers"]))
    return done


def _remember(ckpt: Checkpoint, where: tuple[int, int], done: Any) -> None:
    metrics, points, head_layers = done
    meta = {"points": list(points), "head_layers": list(head_layers)}
    ckpt.put(f"{where[0]}/{where[1]}", meta, metrics)


def _pairs(model: Any, family: Any, lengths: Iterable[int] | None) -> list[Any]:
    """The family's pairs at ``lengths`` (checked as ints; a fixed pair needs none)."""
    if lengths is None:
        if not isinstance(family, PairFamily):
            raise TypeError(
                f"collapse needs lengths for the {getattr(family, 'name', family)!r} family, "
                "e.g. lengths=range(1, 101); only a fixed osl.tasks.pair(a, b) needs none"
            )
        return family.pairs(model)
    ordered = sorted(set(check_lengths(lengths, 0)))
    return family.pairs(model, ordered)
