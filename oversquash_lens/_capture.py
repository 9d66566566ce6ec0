"""The only module that touches hooks: record, intervene, emulate precision, mark runs.

Every context manager here removes exactly the hooks it added (never the user's), on
normal exit and when the body raises, and restores what it changed on the model.

Our hooks are registered as *permanent* TransformerLens hooks so that a user's
``run_with_hooks`` / ``run_with_cache`` / ``reset_hooks()`` inside the block leaves them
alone; we remove them ourselves by handle.
"""

import difflib
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from . import _hooknames as names
from ._errors import MissingHookError, UnsupportedPrecisionError
from ._tensors import HF_FLOAT32_BUFFERS, cast_floating_
from .precision import FormatLike, get_format, round_to_format

HookFn = Callable[..., Any]  # fn(activation, *, hook) -> replacement or None
Direction = Literal["fwd", "bwd"]

__all__ = [
    "ActivationRecord",
    "emulate_precision",
    "fired_hooks",
    "hook_dict",
    "hook_point",
    "hooks",
    "intervene",
    "native_dtype",
    "preserve_state",
    "record",
    "run_boundaries",
]


def hook_dict(model: Any) -> dict[str, Any]:
    """Name → HookPoint for either backend (the bridge's includes its alias names)."""
    return dict(model.hook_dict)


def hook_point(model: Any, name: str, points: dict[str, Any] | None = None) -> Any:
    """Look up one HookPoint by name.

    Raises:
        MissingHookError: With the closest existing names.
    """
    points = hook_dict(model) if points is None else points
    if name in points:
        return points[name]
    close = difflib.get_close_matches(name, list(points), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise MissingHookError(f"this model has no hook point named {name!r}.{hint}")


def _handles(point: Any, direction: Direction) -> list[Any]:
    return point.fwd_hooks if direction == "fwd" else point.bwd_hooks


def _add(point: Any, fn: HookFn, direction: Direction) -> Any:
    before = list(_handles(point, direction))
    point.add_hook(fn, dir=direction, is_permanent=True)
    added = [h for h in _handles(point, direction) if not any(h is b for b in before)]
    if len(added) != 1:  # pragma: no cover - would mean TransformerLens changed add_hook
        raise RuntimeError("could not identify the hook handle TransformerLens created")
    return added[0]


def _remove(point: Any, handle: Any, direction: Direction) -> None:
    handle.hook.remove()
    kept = [h for h in _handles(point, direction) if h is not handle]
    if direction == "fwd":
        point.fwd_hooks = kept
    else:
        point.bwd_hooks = kept


@contextmanager
def hooks(
    model: Any,
    fwd_hooks: Sequence[tuple[str, HookFn]] = (),
    bwd_hooks: Sequence[tuple[str, HookFn]] = (),
) -> Iterator[Any]:
    """Add TransformerLens-style hooks for the duration of a block.

    Hook functions have TransformerLens's signature ``fn(activation, *, hook)`` and may
    return a replacement tensor. Only the hooks added here are removed at the end, also
    when the block raises; hooks the user added before or inside the block stay.

    Args:
        model: HookedTransformer or TransformerBridge.
        fwd_hooks: ``(hook_name, fn)`` pairs run on the forward pass.
        bwd_hooks: ``(hook_name, fn)`` pairs run on the backward pass.

    Yields:
        The model.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-gpt2")
        >>> seen = []
        >>> with osl.capture.hooks(model, [("hook_embed", lambda x, hook: seen.append(x.shape))]):
        ...     _ = model(model.to_tokens("1 1 1"))
        >>> seen
        [torch.Size([1, 4, 64])]
    """
    points = hook_dict(model)
    added: list[tuple[Any, Any, Direction]] = []
    try:
        for direction, pairs in (("fwd", fwd_hooks), ("bwd", bwd_hooks)):
            for name, fn in pairs:
                point = hook_point(model, name, points)
                added.append((point, _add(point, fn, direction), direction))  # type: ignore[arg-type]
        yield model
    finally:
        for point, handle, direction in reversed(added):
            _remove(point, handle, direction)


intervene = hooks


class ActivationRecord:
    """Activations recorded by :func:`record`: one tensor per firing of each hook.

    ``record[name]`` is the latest firing (like an ActivationCache entry);
    ``record.all(name)`` lists every firing in order.
    """

    def __init__(self) -> None:
        self._data: dict[str, list[Tensor]] = defaultdict(list)

    def __getitem__(self, name: str) -> Tensor:
        if not self._data.get(name):
            raise KeyError(f"{name!r} did not fire while recording")
        return self._data[name][-1]

    def __contains__(self, name: object) -> bool:
        return bool(self._data.get(name))  # type: ignore[call-overload]

    def __len__(self) -> int:
        return sum(1 for v in self._data.values() if v)

    def keys(self) -> list[str]:
        """Names that fired."""
        return [k for k, v in self._data.items() if v]

    def all(self, name: str) -> list[Tensor]:
        """Every recorded firing of ``name``, oldest first."""
        return list(self._data.get(name, []))

    def _append(self, name: str, value: Tensor) -> None:
        self._data[name].append(value)


@contextmanager
def record(
    model: Any,
    names_to_record: Sequence[str],
    *,
    device: str | torch.device | None = "cpu",
    select: Callable[[str, Tensor], Tensor] | None = None,
) -> Iterator[ActivationRecord]:
    """Record named activations of every forward pass made inside the block.

    Tensors are detached and kept in the dtype they had, moved to ``device`` (None keeps
    each on its own device, useful for models split across GPUs).

    Args:
        model: HookedTransformer or TransformerBridge.
        names_to_record: Hook-point names.
        device: Where to keep the copies.
        select: Optional ``fn(name, activation) -> tensor`` applied before storing
            (e.g. keep only the last position).

    Yields:
        An :class:`ActivationRecord` filled as the model runs.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-llama")
        >>> with osl.record(model, ["blocks.0.hook_resid_pre"]) as acts:
        ...     _ = model(model.to_tokens("1 1 1"))
        >>> acts["blocks.0.hook_resid_pre"].shape
        torch.Size([1, 4, 64])
    """
    store = ActivationRecord()

    def make(name: str) -> HookFn:
        def save(activation: Tensor, hook: Any) -> None:
            value = activation.detach()
            if select is not None:
                value = select(name, value)
            store._append(name, value if device is None else value.to(device))

        return save

    with hooks(model, [(n, make(n)) for n in names_to_record]):
        yield store


@contextmanager
def run_boundaries(model: Any, on_start: Callable[[Tensor | None], None]) -> Iterator[None]:
    """Call ``on_start(tokens)`` at the start of every forward pass.

    A forward pass starts when the token embedding runs: a forward pre-hook on
    ``model.embed`` sees the token ids on both backends and through every entry point
    (``model(...)``, ``run_with_cache``, ``run_with_hooks``, ``generate``; the bridge calls
    ``forward`` directly there, so a hook on the root module would miss those runs).
    """
    embed = getattr(model, "embed", None)
    if not isinstance(embed, torch.nn.Module):
        raise MissingHookError(
            "cannot find the token embedding module (model.embed); load the bridge with "
            "enable_compatibility_mode()"
        )

    def pre_hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        tokens = args[0] if args else next(iter(kwargs.values()), None)
        on_start(tokens.detach().to("cpu") if isinstance(tokens, Tensor) else None)

    handle = embed.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


@dataclass
class _Snapshot:
    training: dict[torch.nn.Module, bool] = field(default_factory=dict)
    requires_grad: dict[torch.nn.Parameter, bool] = field(default_factory=dict)
    data: dict[Tensor, Tensor] = field(default_factory=dict)
    cfg_dtype: Any = None
    grad_enabled: bool = True


def _snapshot(model: Any) -> _Snapshot:
    snap = _Snapshot(grad_enabled=torch.is_grad_enabled())
    snap.training = {m: m.training for m in model.modules()}
    snap.requires_grad = {p: p.requires_grad for p in model.parameters()}
    snap.cfg_dtype = getattr(model.cfg, "dtype", None)
    return snap


def _restore(model: Any, snap: _Snapshot) -> None:
    for tensor, data in snap.data.items():
        tensor.data = data
    if snap.cfg_dtype is not None:
        model.cfg.dtype = snap.cfg_dtype
    for param, flag in snap.requires_grad.items():
        param.requires_grad_(flag)
    for module, flag in snap.training.items():
        module.training = flag
    torch.set_grad_enabled(snap.grad_enabled)


@contextmanager
def preserve_state(model: Any) -> Iterator[Any]:
    """Restore train/eval flags, ``requires_grad`` and the global grad mode on exit.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-gpt2")
        >>> with osl.preserve_state(model):
        ...     _ = model.train()
        >>> model.training
        False
    """
    snap = _snapshot(model)
    try:
        yield model
    finally:
        _restore(model, snap)


_NATIVE = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


@contextmanager
def native_dtype(model: Any, dtype: FormatLike) -> Iterator[Any]:
    """Run the model natively in another dtype inside the block, then restore it exactly.

    Every floating tensor the model computes with (parameters, the bridge's processed
    weights, HookedTransformer's buffers) gets new data in ``dtype``; the original data is
    kept, not round-tripped, so float32 weights come back bit-identical. Peak memory is
    the original model plus its copy in ``dtype``.

    Raises:
        UnsupportedPrecisionError: For formats torch cannot run natively (fp8, custom
            widths): emulate those with :func:`emulate_precision`.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-gpt2")
        >>> with osl.native_dtype(model, "bfloat16"):
        ...     model(model.to_tokens("1 1")).dtype
        torch.bfloat16
        >>> model.W_E.dtype
        torch.float32
    """
    fmt = get_format(dtype)
    if fmt.torch_dtype not in _NATIVE:
        raise UnsupportedPrecisionError(
            f"{fmt.name} cannot run a model natively; emulate it on float32 with "
            f"osl.emulate_precision(model, {fmt.name!r})"
        )
    target = fmt.torch_dtype
    assert target is not None
    snap = _snapshot(model)
    try:
        snap.data = cast_floating_(model, target, keep=HF_FLOAT32_BUFFERS)
        if snap.cfg_dtype is not None:
            model.cfg.dtype = target
        yield model
    finally:
        _restore(model, snap)


@contextmanager
def emulate_precision(
    model: Any,
    fmt: FormatLike,
    *,
    points: Literal["residual", "residual+attention"] | Sequence[str] = "residual",
    overflow: Literal["format", "saturate"] = "format",
) -> Iterator[Any]:
    """Round activations to ``fmt`` at hook points, emulating a format on any device.

    Args:
        model: HookedTransformer or TransformerBridge (running in float32 or float64).
        fmt: Any format :func:`~oversquash_lens.precision.get_format` accepts, e.g.
            ``"bfloat16"``, ``"float8_e4m3"``, ``"e5m7"``.
        points: ``"residual"`` rounds the residual stream (embedding, between attention and
            MLP, after every block); ``"residual+attention"`` also rounds per-head attention
            outputs (``hook_z``); or an explicit list of hook names.
        overflow: Overflow rule (see :func:`~oversquash_lens.precision.round_to_format`).

    Yields:
        The model.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-gpt2")
        >>> with osl.emulate_precision(model, "bfloat16"):
        ...     with osl.record(model, ["blocks.1.hook_resid_post"]) as acts:
        ...         _ = model(model.to_tokens("1 1"))
        >>> x = acts["blocks.1.hook_resid_post"]
        >>> bool((x == x.bfloat16().float()).all())
        True
    """
    spec = get_format(fmt)
    available = hook_dict(model)
    if isinstance(points, str):
        if points not in ("residual", "residual+attention"):
            raise ValueError(
                f"points must be 'residual', 'residual+attention' or a list of hook names, "
                f"got {points!r}"
            )
        n_layers = model.cfg.n_layers
        chosen = [n for n in names.residual_stream(n_layers) if n in available]
        if points == "residual+attention":
            chosen += [names.z(layer) for layer in range(n_layers)]
    else:
        chosen = list(points)

    def round_hook(activation: Tensor, hook: Any) -> Tensor:
        return round_to_format(activation, spec, overflow=overflow)

    with hooks(model, [(n, round_hook) for n in chosen]):
        yield model


@torch.no_grad()
def fired_hooks(model: Any, names_to_check: Sequence[str], tokens: Tensor) -> set[str]:
    """Which of ``names_to_check`` fire during one forward pass on ``tokens``.

    Names that do not exist count as not firing. Stops nothing early: the whole
    forward pass runs (use short ``tokens``).
    """
    available = hook_dict(model)
    fired: set[str] = set()

    def make(name: str) -> HookFn:
        def mark(activation: Tensor, hook: Any) -> None:
            fired.add(name)

        return mark

    present = [n for n in names_to_check if n in available]
    with preserve_state(model), hooks(model, [(n, make(n)) for n in present]):
        model(tokens)
    return fired
