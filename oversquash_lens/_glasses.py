"""``osl.compare_glasses``: the paper's mitigations ("glasses"; Fig 2, 5d, 11) side by side.

A :class:`Variant` changes a task (separators, a hint, the prompt order), the precision
or the BOS choice. For each variant and length, :func:`compare_glasses` measures the
collapse of the pair k vs k + 1 (through :func:`~oversquash_lens.collapse`), the
sensitivity of the final representation to the answer-relevant token (through
:func:`~oversquash_lens.sensitivity`) and, optionally, the greedy accuracy (through
:func:`~oversquash_lens.behaviour`). :func:`separator_search` finds the sparsest
separators that keep every pair apart. No distance or Jacobian is re-implemented here.
"""

import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from ._adapter import ModelAdapter
from ._behaviour import behaviour
from ._checks import require_int
from ._collapse import collapse
from ._glasses_result import GlassesResult, SeparatorSearch
from ._glasses_variants import SPELLINGS as SPELLINGS
from ._glasses_variants import Variant as Variant
from ._glasses_variants import glasses as glasses
from ._glasses_variants import parse_variant as parse_variant
from ._glasses_variants import separators
from ._progress import progress_bar
from ._run_precision import parse_precision, precision_context
from ._sensitivity import sensitivity as _sensitivity
from .tasks import Task, TaskLike
from .tasks._base import check_lengths
from .tasks._pairs import TaskPairs, distinct_instances, task_name, task_params, token_kwargs

SENSITIVITY_METHODS = ("hutchinson", "exact", "none")


def _sensitivity_row(
    model: Any,
    task: TaskLike,
    k: int,
    variant: Variant,
    chat: bool | None,
    samples: int,
    method: str,
    probes: int,
) -> tuple[int, float, float, float, float]:
    """(relevant position of sample 0, its norm, its share, share of all items, stderr)."""
    relevant, norms, shares, items, errors = -1, [], [], [], []
    for index, inst in enumerate(distinct_instances(task, k, samples)):
        tokens = task.tokens(model, inst, **token_kwargs(task.tokens, chat, variant.prepend_bos))
        kwargs = token_kwargs(task.item_positions, chat, variant.prepend_bos)
        positions = [int(p) for p in task.item_positions(model, inst, **kwargs)]
        result = _sensitivity(
            model, tokens.reshape(1, -1), method=method, probes=probes, layers="final"
        )
        point = result.point_index("final")
        row = result.norms[0, point]
        total = float(row.sum())
        items.append(float(row[positions].sum()) / total if total > 0 else math.nan)
        if inst.relevant_item is not None:
            position = positions[inst.relevant_item]
            relevant = position if index == 0 else relevant
            norms.append(float(row[position]))
            shares.append(norms[-1] / total if total > 0 else math.nan)
            stderr = result.stderr
            errors.append(math.nan if stderr is None else float(stderr[0, point, position]))

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else math.nan

    # The standard error of a mean of independent estimates.
    spread = math.sqrt(mean([e * e for e in errors]) / len(errors)) if errors else math.nan
    return relevant, mean(norms), mean(shares), mean(items), spread


def _accuracy(
    model: Any,
    task: Task,
    lengths: list[int],
    variant: Variant,
    chat: bool | None,
    samples: int,
) -> list[float]:
    # Greedy answers to the same prompt repeat: a deterministic task needs one sample.
    distinct = len(distinct_instances(task, lengths[-1], samples))
    kwargs: dict[str, Any] = {"samples": samples if distinct > 1 else 1, "progress": False}
    kwargs.update(token_kwargs(behaviour, chat, variant.prepend_bos))
    table = behaviour(model, task, lengths, **kwargs).accuracy()
    by_k = dict(zip(table["k"].tolist(), table["accuracy"].tolist(), strict=True))
    return [float(by_k.get(k, math.nan)) for k in lengths]


def _collapse_rows(
    model: Any, task: TaskLike, lengths: list[int], variant: Variant, chat: bool | None, label: str
) -> dict[str, torch.Tensor] | None:
    """y_n distances of k vs k + 1 through osl.collapse; None for tasks without pairs."""
    family = TaskPairs(task, variant.prepend_bos, chat)
    try:
        family.pair(model, lengths[0])
    except ValueError:
        k = lengths[-1]
        if len({task.instance(k, s).text for s in range(8)}) > 1:
            return None  # a random task: k and k + 1 draw unrelated sequences
        raise
    result = collapse(model, family, lengths, [label], heads=False, progress=False)
    y = result.point_index(None)
    argmax_equal = (result.argmax_a[0] == result.argmax_b[0]).long()
    argmax_equal[result.argmax_a[0] < 0] = -1
    return {
        "linf": result.metric()[0, :, y],
        "noise_linf": result.metric(of="noise")[0, :, y],
        "eps_ratio": result.eps_ratio[0, :, y],
        "ulps": result.ulps[0, :, y],
        "bitwise_equal": result.bitwise_equal[0, :, y],
        "argmax_equal": argmax_equal,
    }


def compare_glasses(
    model: Any,
    task: TaskLike,
    lengths: Iterable[int],
    variants: Sequence["str | Variant"] = ("baseline",),
    *,
    precision: str = "bfloat16",
    samples: int = 4,
    sensitivity: str = "hutchinson",
    probes: int = 16,
    behaviour: bool = True,
    chat: bool | None = None,
    progress: bool = True,
) -> GlassesResult:
    """Collapse, sensitivity and accuracy of a task under each mitigation, side by side.

    Each variant runs entirely in its precision (``variant.precision`` or
    ``precision``): native dtypes through :func:`~oversquash_lens.native_dtype`,
    ``"emulate:<format>"`` through :func:`~oversquash_lens.emulate_precision` (rounding is
    straight-through for the gradients). The model is restored afterwards, also on error.

    Args:
        model: HookedTransformer or TransformerBridge.
        task: A task from :mod:`oversquash_lens.tasks` (a frozen dataclass with
            ``instance``, ``tokens``, ``item_positions`` and ``pair``).
        lengths: The lengths k (items in the sequence).
        variants: :class:`Variant` objects or shorthands (see :func:`parse_variant`).
        precision: Default precision of every variant.
        samples: Samples per length for accuracy; the sensitivity is averaged over the
            distinct instances among them (one for deterministic tasks).
        sensitivity: ``"hutchinson"`` (estimate), ``"exact"`` or ``"none"`` (skip).
        probes: Hutchinson probes.
        behaviour: Also generate answers and score them (slow); False leaves accuracy NaN.
        chat: Chat template for tokens (None: the task's default, see ``Task.tokens``).
        progress: Show a progress bar.

    Returns:
        A :class:`GlassesResult`.

    Raises:
        ValueError: For an unknown variant spelling, duplicate labels, or a change the
            task has no field for.

    Example:
        >>> import oversquash_lens as osl
        >>> from oversquash_lens.tasks import copy_last
        >>> model = osl.load_model("tiny-llama")
        >>> result = compare_glasses(model, copy_last(style="compact"), [2, 4],
        ...                          ["baseline", "sep:2"], probes=4, behaviour=False,
        ...                          progress=False)
        >>> result.linf.shape
        torch.Size([2, 2])
    """
    adapter = ModelAdapter(model)
    ks = sorted(set(check_lengths(lengths, 1)))
    parsed = [parse_variant(v) for v in variants]
    labels = [v.label for v in parsed]
    if not parsed:
        raise ValueError("variants is empty: give at least one, e.g. ['baseline', 'sep:3']")
    if len(set(labels)) != len(labels):
        raise ValueError(f"variant labels repeat: {labels}")
    if sensitivity not in SENSITIVITY_METHODS:
        raise ValueError(f"sensitivity must be one of {SENSITIVITY_METHODS}, got {sensitivity!r}")
    if behaviour and not isinstance(task, Task):
        raise TypeError(
            f"behaviour=True scores the model's answers, which needs an osl.tasks.Task; "
            f"{type(task).__name__} is not one: pass behaviour=False for the other measures"
        )
    samples = require_int("samples", samples, minimum=1)
    tasks = [v.apply(task) for v in parsed]  # every change is checked before any pass
    settings = [
        parse_precision(v.precision or precision, adapter.device, adapter.dtype) for v in parsed
    ]
    shape = (len(parsed), len(ks))
    nan = torch.full(shape, math.nan, dtype=torch.float64)
    out: dict[str, torch.Tensor] = {
        name: nan.clone()
        for name in (
            "linf",
            "noise_linf",
            "eps_ratio",
            "ulps",
            "relevant_sensitivity",
            "relevant_stderr",
            "relevant_share",
            "items_share",
            "accuracy",
        )
    }
    out["bitwise_equal"] = torch.zeros(shape, dtype=torch.bool)
    out["argmax_equal"] = torch.full(shape, -1, dtype=torch.long)
    out["relevant_position"] = torch.full(shape, -1, dtype=torch.long)
    steps = len(parsed) * (1 + (sensitivity != "none") * len(ks) + behaviour)
    bar = progress_bar(total=steps, disable=not progress, desc=f"glasses {task_name(task)}")
    for v, (variant, vtask, setting) in enumerate(zip(parsed, tasks, settings, strict=True)):
        bar.set_postfix_str(variant.label)
        rows = _collapse_rows(model, vtask, ks, variant, chat, setting.label)
        if rows is not None:
            for name, values in rows.items():
                out[name][v] = values
        bar.update(1)
        with precision_context(model, setting):
            if sensitivity != "none":
                for i, k in enumerate(ks):
                    row = _sensitivity_row(
                        model, vtask, k, variant, chat, samples, sensitivity, probes
                    )
                    out["relevant_position"][v, i] = row[0]
                    out["relevant_sensitivity"][v, i] = row[1]
                    out["relevant_share"][v, i] = row[2]
                    out["items_share"][v, i] = row[3]
                    out["relevant_stderr"][v, i] = row[4]
                    bar.update(1)
            if behaviour:
                out["accuracy"][v] = torch.tensor(
                    _accuracy(model, vtask, ks, variant, chat, samples), dtype=torch.float64
                )
                bar.update(1)
    bar.close()
    return GlassesResult(
        task=task_name(task),
        task_params=task_params(task),
        variants=tuple(labels),
        variant_specs=tuple(v.describe() for v in parsed),
        precisions=tuple(s.label for s in settings),
        lengths=tuple(ks),
        samples=samples,
        sensitivity=sensitivity,
        probes=probes,
        provenance=adapter.provenance(
            precision=", ".join(sorted({s.label for s in settings})),
            extra={
                "task": task_params(task),
                "variants": [v.describe() for v in parsed],
                "chat": chat,
            },
        ),
        **out,
    )


def separator_search(
    model: Any,
    task: TaskLike,
    max_length: int,
    *,
    precision: str = "bfloat16",
    spacings: Sequence[int] = (1, 2, 3, 4, 6, 8, 12, 16),
    group: str = "left",
    separator: str = ",",
    criterion: str = "epsilon",
    lengths: Iterable[int] | None = None,
    prepend_bos: bool | None = None,
    chat: bool | None = None,
    progress: bool = True,
) -> SeparatorSearch:
    """The sparsest separators that keep every pair k vs k + 1 apart, up to ``max_length``.

    For each spacing m the task gets a separator every m items (:func:`separators`) and
    the y_n of k and k + 1 items are compared for every k in ``lengths`` (default
    1..max_length) by :func:`~oversquash_lens.collapse`. A spacing keeps the pairs apart
    when the criterion holds at every length: ``"epsilon"`` (default, the paper's dashed
    line): float64 L∞ ≥ the precision's machine epsilon; ``"bits"``: not bit-identical
    after rounding to the precision.

    Args:
        model: HookedTransformer or TransformerBridge.
        task: A task whose fields include ``separator``, ``every`` and ``group``.
        max_length: The largest k.
        precision: Native dtype or ``"emulate:<format>"``.
        spacings: Items per group to try.
        group: ``"left"`` or ``"right"`` grouping.
        separator: The separator text.
        criterion: ``"epsilon"`` (or ``"eps"``) or ``"bits"``.
        lengths: Lengths to check instead of every k up to ``max_length``.
        prepend_bos: Force the BOS choice (None: the task's default).
        chat: Chat template for tokens (None: the task's default).
        progress: Show a progress bar.

    Returns:
        A :class:`SeparatorSearch`; ``best`` is the largest spacing that keeps every pair
        apart, None when none does.

    Example:
        >>> import oversquash_lens as osl
        >>> from oversquash_lens.tasks import copy_last
        >>> model = osl.load_model("tiny-llama")
        >>> found = separator_search(model, copy_last(style="compact"), 4, spacings=(1, 2),
        ...                          progress=False)
        >>> found.apart.shape
        torch.Size([2, 4])
    """
    criterion = "epsilon" if criterion == "eps" else criterion
    if criterion not in ("epsilon", "bits"):
        raise ValueError(f"criterion must be 'epsilon' (or 'eps') or 'bits', got {criterion!r}")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"max_length must be an int >= 1, got {max_length!r}")
    ks = sorted(set(check_lengths(range(1, max_length + 1) if lengths is None else lengths, 1)))
    if ks[-1] > max_length:
        raise ValueError(f"lengths go beyond max_length={max_length}: {ks[-1]}")
    ms = sorted(set(require_int("spacings", m, minimum=1) for m in spacings))
    if not ms:
        raise ValueError("spacings is empty: give at least one, e.g. (1, 2, 3)")
    adapter = ModelAdapter(model)
    setting = parse_precision(precision, adapter.device, adapter.dtype)
    eps = setting.fmt.epsilon
    variants = [
        dataclasses.replace(separators(m, group, separator), prepend_bos=prepend_bos) for m in ms
    ]
    variant_tasks = [v.apply(task) for v in variants]
    rows: list[dict[str, torch.Tensor]] = []
    for variant, vtask in progress_bar(
        list(zip(variants, variant_tasks, strict=True)), disable=not progress, desc="spacings"
    ):
        found = _collapse_rows(model, vtask, ks, variant, chat, setting.label)
        if found is None:
            raise ValueError(
                f"task {task_name(task)!r} has no deterministic pair k vs k+1 to compare"
            )
        rows.append(found)
    linf = torch.stack([r["linf"] for r in rows])
    equal = torch.stack([r["bitwise_equal"] for r in rows])
    apart = linf >= eps if criterion == "epsilon" else ~equal
    keeping = [m for m, ok in zip(ms, apart.all(-1).tolist(), strict=True) if ok]
    return SeparatorSearch(
        task=task_name(task),
        task_params=task_params(task),
        precision=setting.label,
        criterion=criterion,
        group=group,
        separator=separator,
        spacings=tuple(ms),
        lengths=tuple(ks),
        linf=linf,
        eps_ratio=torch.stack([r["eps_ratio"] for r in rows]),
        bitwise_equal=equal,
        apart=apart,
        best=max(keeping) if keeping else None,
        provenance=adapter.provenance(
            precision=setting.label,
            extra={"task": task_params(task), "prepend_bos": prepend_bos, "chat": chat},
        ),
    )
