"""Split a sweep across machines, then merge the pieces into the unsharded result.

The cluster's scheduler is the engine; this module only splits and merges. A sweep's
items (collapse: one precision × one unit of forward passes; behaviour: one length) are
dealt to ``N`` shards by cost, largest first to the least loaded shard, so every process
that is given the same arguments deals them the same way. Shard ``I`` runs its items into
its own file, ``<sweep>.shard-I-of-N.ckpt``: a data-only checkpoint (resumed when rerun)
that also holds the sweep's plan. :func:`merge` reads the ``N`` files, refuses any that
belong to another model or sweep, a missing or repeated shard, or an unfinished one, and
assembles the result with the same code as the unsharded run: the numbers are the same.

Example:
    >>> import tempfile
    >>> import oversquash_lens as osl
    >>> model = osl.load_model("tiny-gpt2")
    >>> folder = tempfile.mkdtemp()
    >>> files = [collapse_shard(model, osl.tasks.repeated_last("1"), [1, 2, 3],
    ...                         ["float32", "emulate:bfloat16"], Shard(i, 2), folder,
    ...                         progress=False) for i in (1, 2)]
    >>> merged = merge(files)
    >>> unsharded = osl.collapse(model, osl.tasks.repeated_last("1"), [1, 2, 3],
    ...                          ["float32", "emulate:bfloat16"], progress=False)
    >>> bool((merged.distances == unsharded.distances).all())
    True
"""

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from . import _behaviour, _collapse
from ._behaviour_result import BehaviourResult
from ._errors import CheckpointError, CheckpointMismatchError
from .analyzers._collapse_result import CollapseResult
from .precision import FormatLike
from .results._checkpoint import Checkpoint, describe_difference
from .tasks import Task

Item = TypeVar("Item")
_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (1-based, as a job array counts).

    Example:
        >>> Shard.parse("2/3"), Shard.parse("2/3").file_name("collapse")
        (Shard(index=2, count=3), 'collapse.shard-2-of-3.ckpt')
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        if not (isinstance(self.index, int) and isinstance(self.count, int)):
            raise TypeError(f"a shard is two ints, got {self.index!r}/{self.count!r}")
        if not 1 <= self.index <= self.count:
            raise ValueError(
                f"shard {self.index}/{self.count}: the index counts from 1 to the number of "
                f"shards (e.g. 1/{max(self.count, 1)} ... {max(self.count, 1)}/"
                f"{max(self.count, 1)})"
            )

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``"I/N"`` as a shard (SLURM: ``$((SLURM_ARRAY_TASK_ID + 1))/N`` from 0-based ids)."""
        match = _SPEC.match(text)
        if match is None:
            raise ValueError(
                f"a shard is written I/N, e.g. 2/3 (the second of three); got {text!r}"
            )
        return cls(int(match.group(1)), int(match.group(2)))

    def file_name(self, sweep: str) -> str:
        """The shard's file in its output folder."""
        return f"{sweep}.shard-{self.index}-of-{self.count}.ckpt"


def deal(costs: Sequence[int], count: int) -> list[int]:
    """Which shard (0-based) runs each item: largest cost first, to the least loaded shard.

    Ties go to the earlier item and the lower shard, so the deal is the same everywhere.

    Example:
        >>> deal([5, 1, 1, 3], 2)
        [0, 1, 1, 1]
    """
    load = [0] * count
    owner = [0] * len(costs)
    for item in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        target = min(range(count), key=lambda s: (load[s], s))
        owner[item] = target
        load[target] += costs[item]
    return owner


def _picker(shard: Shard) -> Callable[[list[Item], list[int]], set[Item]]:
    def pick(items: list[Item], costs: list[int]) -> set[Item]:
        owner = deal(costs, shard.count)
        return {item for item, o in zip(items, owner, strict=True) if o == shard.index - 1}

    return pick


def _finish(ckpt: Checkpoint | None, recipe: dict[str, Any], shard: Shard, items: Any) -> Path:
    assert ckpt is not None  # a shard always runs into its file
    entry = {"recipe": recipe, "shard": [shard.index, shard.count], "items": items}
    ckpt.put(_collapse.RECIPE, entry)
    ckpt.save()
    return ckpt.path


def _shard_run(
    shard: Shard, folder: str | Path, kind: str
) -> tuple[Path, list[Any], Callable[[list[Any], list[int]], set[Any]]]:
    """A shard's file, and the picker that chooses its units and notes which it chose."""
    path = Path(folder) / shard.file_name(kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    chosen: list[Any] = []

    def pick(items: list[Any], costs: list[int]) -> set[Any]:
        mine = _picker(shard)(items, costs)
        chosen.extend(sorted(mine))
        return mine

    return path, chosen, pick


def collapse_shard(
    model: Any,
    family: Any,
    lengths: Iterable[int] | None,
    precisions: Sequence[FormatLike],
    shard: Shard,
    folder: str | Path,
    *,
    mode: str = "shared",
    heads: Any = True,
    continuation: int = 0,
    progress: bool = True,
) -> Path:
    """Run one shard of :func:`~oversquash_lens.collapse` into ``folder``; return its file.

    The arguments are :func:`~oversquash_lens.collapse`'s; every shard must get the same.
    A rerun resumes from the file.
    """
    path, chosen, pick = _shard_run(shard, folder, "collapse")
    recipe, _, ckpt = _collapse.sweep(
        model, family, lengths, precisions, mode, heads, continuation, progress, path, pick
    )
    return _finish(ckpt, recipe, shard, [list(i) for i in chosen])


def behaviour_shard(
    model: Any,
    task: Task,
    lengths: Iterable[int],
    shard: Shard,
    folder: str | Path,
    *,
    samples: int = 8,
    max_new_tokens: int | None = None,
    batch_size: int = 16,
    chat: bool | None = None,
    prepend_bos: bool | None = None,
    progress: bool = True,
) -> Path:
    """Run one shard of :func:`~oversquash_lens.behaviour` into ``folder``; return its file."""
    path, chosen, pick = _shard_run(shard, folder, "behaviour")
    recipe, _, ckpt = _behaviour.sweep(
        model,
        task,
        lengths,
        samples=samples,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        chat=chat,
        prepend_bos=prepend_bos,
        progress=progress,
        checkpoint=path,
        only=pick,
    )
    return _finish(ckpt, recipe, shard, chosen)


@dataclass
class _Piece:
    path: Path
    ckpt: Checkpoint
    recipe: dict[str, Any]
    shard: Shard
    items: list[Any]


def _piece(path: str | Path) -> _Piece:
    ckpt = Checkpoint.read(path)
    entry = ckpt.get(_collapse.RECIPE)
    if entry is None or not isinstance(entry[0], dict) or "shard" not in entry[0]:
        raise CheckpointError(
            f"{path} is a checkpoint but not a shard file (it has no shard plan): give the "
            "files that `--shard I/N` wrote"
        )
    meta = entry[0]
    index, count = meta["shard"]
    return _Piece(ckpt.path, ckpt, meta["recipe"], Shard(index, count), meta["items"])


def _same_plan(first: dict[str, Any], other: dict[str, Any]) -> bool:
    def plain(recipe: dict[str, Any]) -> dict[str, Any]:
        provenance = {k: v for k, v in recipe["provenance"].items() if k != "created"}
        return recipe | {"provenance": provenance}

    return plain(first) == plain(other)


def merge(paths: Iterable[str | Path]) -> CollapseResult | BehaviourResult:
    """The result of a sharded sweep, from every shard's file: the unsharded run's numbers.

    Raises:
        CheckpointMismatchError: If the files belong to different sweeps or models.
        CheckpointError: If a shard is missing, repeated or unfinished, or a file is not
            a shard file (or is corrupt).
    """
    pieces = [_piece(p) for p in paths]
    if not pieces:
        raise ValueError("merge needs the shard files, e.g. out/collapse.shard-*-of-3.ckpt")
    first = pieces[0]
    for piece in pieces[1:]:
        if piece.ckpt.sweep != first.ckpt.sweep or piece.ckpt.key != first.ckpt.key:
            raise CheckpointMismatchError(
                f"{piece.path} belongs to another sweep or model than {first.path} (they "
                f"differ in {describe_difference(first.ckpt.key, piece.ckpt.key)}): merge "
                "only the shards of one run"
            )
        if piece.shard.count != first.shard.count or not _same_plan(first.recipe, piece.recipe):
            raise CheckpointMismatchError(
                f"{piece.path} was split differently from {first.path} "
                f"({piece.shard.count} vs {first.shard.count} shards, or another plan)"
            )
    count = first.shard.count
    seen: dict[int, Path] = {}
    for piece in pieces:
        if piece.shard.index in seen:
            raise CheckpointError(
                f"shard {piece.shard.index}/{count} is given twice: {seen[piece.shard.index]} "
                f"and {piece.path}"
            )
        seen[piece.shard.index] = piece.path
    missing = sorted(set(range(1, count + 1)) - set(seen))
    if missing:
        raise CheckpointError(
            f"shards {', '.join(f'{i}/{count}' for i in missing)} are missing: run them "
            "(same arguments, --shard I/N) and give every shard's file"
        )
    if first.ckpt.sweep == "collapse":
        return _collapse.assemble(first.recipe, _union(pieces, _collapse.finished_units, tuple))
    if first.ckpt.sweep == "behaviour":
        return _behaviour.assemble(
            first.recipe, _union(pieces, _behaviour.finished_lengths, lambda i: i)
        )
    raise CheckpointError(f"{first.path} holds a {first.ckpt.sweep!r} sweep, which has no merge")


def _union(
    pieces: list[_Piece], read: Callable[[Checkpoint], dict[Any, Any]], key: Callable[[Any], Any]
) -> dict[Any, Any]:
    done: dict[Any, Any] = {}
    for piece in pieces:
        held = read(piece.ckpt)
        unfinished = [item for item in piece.items if key(item) not in held]
        if unfinished:
            raise CheckpointError(
                f"shard {piece.shard.index}/{piece.shard.count} ({piece.path}) is unfinished: "
                f"{len(unfinished)} of its {len(piece.items)} items are not in it. Run that "
                "shard again (it resumes), then merge"
            )
        done.update({key(item): held[key(item)] for item in piece.items})
    return done
