"""The up-front memory check of every run made inside :func:`~oversquash_lens.attach`.

When the embedding sees a prompt, before the first block runs, the forward pass's memory
and each attached analyzer's (``oversquash_lens.analyzers._memory``) are summed and
compared with what is free: host memory for a CPU model and for what analyzers keep on the
CPU, each CUDA device's free memory for the layers placed on it. A request that would not
fit raises :class:`~oversquash_lens.InsufficientMemoryError` naming the estimate, its
largest parts and what to change. :func:`memory_limit` sets the limit by hand (tests,
shared machines) or turns the check off.
"""

import contextlib
import contextvars
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch

from ._adapter import ModelAdapter
from ._errors import InsufficientMemoryError
from .analyzers import Analyzer
from .analyzers._memory import ModelShape, Part, forward_parts, gib, needed

_AUTO = "auto"
_LIMIT: contextvars.ContextVar[int | str | None] = contextvars.ContextVar(
    "oversquash_lens_memory_limit", default=_AUTO
)


@contextlib.contextmanager
def memory_limit(nbytes: int | None) -> Iterator[None]:
    """Check runs inside the block against ``nbytes`` of memory, or not at all (None).

    By default every run inside :func:`~oversquash_lens.attach` is checked against the
    memory free when it starts. Inside this block the limit is ``nbytes`` for the host and
    for each device; ``None`` turns the check off (the estimate is an upper bound; turn it
    off when you know a run fits).

    Raises:
        ValueError: For a limit that is not a positive number of bytes.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-llama")
        >>> with osl.memory_limit(2**20):
        ...     osl.sensitivity(model, "1 " * 200, method="hutchinson")
        Traceback (most recent call last):
        ...
        oversquash_lens._errors.InsufficientMemoryError: this run needs about ...
    """
    if nbytes is not None and (
        isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes <= 0
    ):
        raise ValueError(f"memory_limit takes a positive number of bytes or None, got {nbytes!r}")
    token = _LIMIT.set(nbytes)
    try:
        yield
    finally:
        _LIMIT.reset(token)


def shape_of(adapter: ModelAdapter, *, eager: bool) -> ModelShape:
    """The sizes of ``adapter``'s model that the estimate reads."""
    cfg = adapter.cfg
    d_mlp = getattr(cfg, "d_mlp", None) or 4 * adapter.d_model
    params = list(adapter.model.parameters())
    return ModelShape(
        n_layers=adapter.n_layers,
        n_heads=adapter.n_heads,
        d_model=adapter.d_model,
        d_mlp=int(d_mlp),
        d_vocab=adapter.d_vocab,
        element_size=max(adapter.dtype.itemsize, 2),
        weight_bytes=sum(p.numel() * p.element_size() for p in params),
        eager=eager or adapter.backend == "hooked",
    )


def estimate(
    adapter: ModelAdapter,
    analyzers: Iterable[Analyzer],
    hook_names: dict[str, list[str]],
    batch: int,
    n: int,
    *,
    grad: bool,
    logits: bool = True,
    eager: bool = True,
    extra: Sequence[Part] = (),
    checkpoint: bool = False,
) -> list[Part]:
    """Every part of a run's memory: the forward pass's, then each analyzer's.

    ``hook_names`` holds each analyzer's hook points, in the order of ``analyzers``;
    ``checkpoint``: the blocks are recomputed in the backward pass
    (``capture.checkpointed_blocks``).
    """
    shape = shape_of(adapter, eager=eager)
    parts = forward_parts(shape, batch, n, grad=grad, logits=logits, checkpoint=checkpoint)
    for analyzer, names in zip(analyzers, hook_names.values(), strict=True):
        parts += analyzer.memory_parts(shape, names, batch, n)
    return parts + list(extra)


def _layer_devices(model: Any) -> list[torch.device]:
    """The device of each block (where its first parameter lives)."""
    blocks = getattr(model, "blocks", None)
    if blocks is None:  # a bridge keeps its blocks elsewhere: one device per parameter set
        return sorted({p.device for p in model.parameters()}, key=str) or [torch.device("cpu")]
    out = []
    for block in blocks:
        first = next(iter(block.parameters()), None)
        out.append(first.device if first is not None else torch.device("cpu"))
    return out or [torch.device("cpu")]


def free_bytes(device: torch.device) -> int | None:
    """Memory free for new tensors on ``device`` (host: MemAvailable); None if unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + cached)
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _shortfall(
    adapter: ModelAdapter,
    parts: list[Part],
    batch: int,
    n: int,
    *,
    recompute_hint: bool,
    advice: str = "",
) -> str | None:
    """Why a run of these estimated ``parts`` would not fit (None: it fits, or no check).

    Per device: the parts held through the run plus the larger of the forward and the
    backward phase's parts (see ``analyzers._memory.needed``), against the free memory
    or the :func:`memory_limit`. ``recompute_hint``: the message suggests checkpointing;
    ``advice``: the caller's own remedy, named first.
    """
    limit = _LIMIT.get()
    if limit is None:
        return None
    devices = _layer_devices(adapter.model)
    share = {d: devices.count(d) / len(devices) for d in devices}
    items: dict[torch.device, list[tuple[str, int | float]]] = {}
    host = torch.device("cpu")
    for part in parts:
        if part.host:
            items.setdefault(host, []).append((part.phase, part.nbytes))
            continue
        for device, fraction in share.items():
            nbytes = part.nbytes * fraction if part.per_layer else part.nbytes
            items.setdefault(device, []).append((part.phase, nbytes))
    for device, sizes in items.items():
        nbytes = needed(sizes)
        free = limit if isinstance(limit, int) else free_bytes(device)
        if free is None or nbytes <= free:
            continue
        on = [p for p in parts if (p.host or host in share) == (device == host)]
        largest = sorted(on, key=lambda p: -p.nbytes)[:3]
        listed = ", ".join(f"{p.what}: {gib(p.nbytes)}" for p in largest)
        where = "host memory" if device.type == "cpu" else f"{device}"
        recompute = (
            "checkpoint=True (each block recomputed in the backward pass), "
            if recompute_hint
            else ""
        )
        return (
            f"this run needs about {gib(nbytes)} of {where} but {gib(free)} is free "
            f"(batch {batch} × {n} tokens; largest parts: {listed}). Nothing has run. Use "
            f"{advice}{recompute}a shorter prompt or a smaller batch, fewer probes or a smaller "
            "chunk_size, a bfloat16 model, or more devices (n_devices); the estimate is an "
            "upper bound: inside osl.memory_limit(None) the run is not checked"
        )
    return None


def check(
    adapter: ModelAdapter,
    analyzers: Iterable[Analyzer],
    hook_names: dict[str, list[str]],
    batch: int,
    n: int,
    *,
    grad: bool,
    logits: bool = True,
    eager: bool = True,
    extra: Sequence[Part] = (),
    checkpoint: bool = False,
    advice: str = "",
) -> None:
    """Refuse, before any work, a run whose estimate exceeds the free memory.

    ``extra`` adds parts the caller holds beside the run (a sweep's earlier passes);
    ``advice`` is the caller's own remedy, named first in the message (ends with ", ").

    Raises:
        InsufficientMemoryError: Naming the estimate, its largest parts and the remedies.
    """
    if _LIMIT.get() is None:
        return
    parts = estimate(
        adapter,
        analyzers,
        hook_names,
        batch,
        n,
        grad=grad,
        logits=logits,
        eager=eager,
        extra=extra,
        checkpoint=checkpoint,
    )
    message = _shortfall(
        adapter, parts, batch, n, recompute_hint=grad and not checkpoint, advice=advice
    )
    if message is not None:
        raise InsufficientMemoryError(message)


def checkpoint_needed(
    adapter: ModelAdapter,
    analyzers: Sequence[Analyzer],
    batch: int,
    n: int,
    requested: bool | None,
) -> bool:
    """Whether a gradient run should recompute its blocks in the backward pass.

    ``requested`` True or False decides; None (automatic): only when the run would not
    fit in memory with every block's graph kept (nothing is checked under
    ``memory_limit(None)``, so nothing is checkpointed either).

    Raises:
        ValueError: For a ``requested`` that is not a bool or None.
    """
    if requested is not None and not isinstance(requested, bool):
        raise ValueError(f"checkpoint must be True, False or None (automatic), got {requested!r}")
    if requested is not None:
        return requested
    names = {f"{i}": analyzer.hook_names(adapter) for i, analyzer in enumerate(analyzers)}
    if _LIMIT.get() is None:
        return False
    parts = estimate(adapter, analyzers, names, batch, n, grad=True)
    return _shortfall(adapter, parts, batch, n, recompute_hint=True) is not None
