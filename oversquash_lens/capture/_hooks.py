"""Adding and removing hooks; recording activations; marking forward passes.

Every context manager here removes exactly the hooks it added (never the user's) and
restores the model's state (see ``preserve_state``) on exit, also when the block raises.

Our hooks are registered as *permanent* TransformerLens hooks so that a user's
``run_with_hooks`` / ``run_with_cache`` / ``reset_hooks()`` inside the block leaves them
alone; we remove them ourselves by handle.

Order at a hook point: ``order="first"`` hooks (precision rounding) run before all others,
so everyone downstream sees the rounded value; ``order="last"`` hooks (observers: ``record``,
``attach``) are moved to the end at the start of every forward pass, so they see the value
the model actually used, after the user's own patching hooks.
"""

import difflib
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any, Literal

import torch
from torch import Tensor

from .._errors import MissingHookError
from ._state import preserve_state

HookFn = Callable[..., Any]  # fn(activation, *, hook) -> replacement or None
Direction = Literal["fwd", "bwd"]
Order = Literal["append", "first", "last"]

# Models running a hidden probe pass (fired_hooks): our hooks stay silent during it.
_PROBING: "weakref.WeakSet[torch.nn.Module]" = weakref.WeakSet()


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


def _add(point: Any, fn: HookFn, direction: Direction, prepend: bool) -> Any:
    before = list(_handles(point, direction))
    point.add_hook(fn, dir=direction, is_permanent=True, prepend=prepend)
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


def _silent_when_probing(model: Any, fn: HookFn) -> HookFn:
    def hook(activation: Any, hook: Any) -> Any:
        if model in _PROBING:
            return None
        return fn(activation, hook=hook)

    return hook


def _embedding_module(model: Any) -> torch.nn.Module:
    embed = getattr(model, "embed", None)
    if not isinstance(embed, torch.nn.Module):
        raise MissingHookError(
            "cannot find the token embedding module (model.embed); for a TransformerBridge "
            "call enable_compatibility_mode() first"
        )
    return embed


@contextmanager
def hooks(
    model: Any,
    fwd_hooks: Sequence[tuple[str, HookFn]] = (),
    bwd_hooks: Sequence[tuple[str, HookFn]] = (),
    *,
    order: Order = "append",
) -> Iterator[Any]:
    """Add TransformerLens-style hooks for the duration of a block.

    Hook functions have TransformerLens's signature ``fn(activation, *, hook)`` and may
    return a replacement tensor. Only the hooks added here are removed at the end, also
    when the block raises; hooks the user added before or inside the block stay. The
    model's state is restored as by :func:`preserve_state`.

    Args:
        model: HookedTransformer or TransformerBridge.
        fwd_hooks: ``(hook_name, fn)`` pairs run on the forward pass.
        bwd_hooks: ``(hook_name, fn)`` pairs run on the backward pass.
        order: ``"append"`` after existing hooks; ``"first"`` before every other hook at
            that point; ``"last"`` after every other hook, re-checked at the start of
            each forward pass (for observers that must see the final value).

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
    with preserve_state(model), ExitStack() as stack:
        try:
            directions: tuple[tuple[Direction, Sequence[tuple[str, HookFn]]], ...] = (
                ("fwd", fwd_hooks),
                ("bwd", bwd_hooks),
            )
            for direction, pairs in directions:
                for name, fn in pairs:
                    point = hook_point(model, name, points)
                    handle = _add(
                        point, _silent_when_probing(model, fn), direction, order == "first"
                    )
                    added.append((point, handle, direction))
            if order == "last" and added:
                stack.enter_context(_keep_last(model, [(p, h) for p, h, d in added if d == "fwd"]))
            yield model
        finally:
            for point, handle, direction in reversed(added):
                _remove(point, handle, direction)


@contextmanager
def _keep_last(model: Any, handles: list[tuple[Any, Any]]) -> Iterator[None]:
    """Move our forward hooks to the end of their points whenever a pass starts."""

    def move(module: torch.nn.Module, args: Any) -> None:
        for point, handle in handles:
            if handle.hook.id in point._forward_hooks:
                point._forward_hooks.move_to_end(handle.hook.id)

    registration = _embedding_module(model).register_forward_pre_hook(move)
    try:
        yield
    finally:
        registration.remove()


def intervene(
    model: Any,
    fwd_hooks: Sequence[tuple[str, HookFn]] = (),
    bwd_hooks: Sequence[tuple[str, HookFn]] = (),
) -> Any:
    """Run with intervention hooks (``fn(activation, *, hook) -> replacement``) in a block.

    The same as :func:`hooks` with ``order="append"``; see there.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-gpt2")
        >>> tokens = model.to_tokens("1 2")
        >>> zero = lambda x, hook: x * 0
        >>> with osl.intervene(model, [("blocks.1.hook_resid_post", zero)]):
        ...     ablated = model(tokens)
        >>> bool((ablated != model(tokens)).any())
        True
    """
    return hooks(model, fwd_hooks, bwd_hooks)


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


def detached_copy(value: Tensor, device: str | torch.device | None) -> Tensor:
    """A detached copy that owns its storage (a slice must not pin the whole activation)."""
    value = value.detach()
    return value.clone() if device is None else value.to(device, copy=True)


@contextmanager
def record(
    model: Any,
    names_to_record: Sequence[str],
    *,
    device: str | torch.device | None = "cpu",
    select: Callable[[str, Tensor], Tensor] | None = None,
) -> Iterator[ActivationRecord]:
    """Record named activations of every forward pass made inside the block.

    Copies are detached, own their storage, keep the dtype they had, and see the final
    value at each point (after precision emulation and the user's own patching hooks).

    Args:
        model: HookedTransformer or TransformerBridge.
        names_to_record: Hook-point names.
        device: Where to keep the copies (None keeps each on its own device, for models
            split across GPUs).
        select: Optional ``fn(name, activation) -> tensor`` applied before copying
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
            value = activation if select is None else select(name, activation)
            store._append(name, detached_copy(value, device))

        return save

    with hooks(model, [(n, make(n)) for n in names_to_record], order="last"):
        yield store


@contextmanager
def run_boundaries(
    model: Any,
    on_tokens: Callable[[Tensor | None], None],
    on_end: Callable[[], None],
    on_logits: Callable[[Tensor], None] | None = None,
) -> Iterator[None]:
    """Report the token ids fed to the embedding, and the ends of forward passes.

    ``on_tokens(tokens)`` runs whenever ``model.embed`` is called (a forward pre-hook sees
    the ids on both backends and through every entry point: ``model(...)``,
    ``run_with_cache``, ``run_with_hooks`` and ``generate``, where the bridge and
    TransformerLens call ``forward`` or ``embed`` directly, so a hook on the root module
    alone would miss them). ``on_end()`` runs when a call of the model starts or finishes
    and when the unembedding has run, so a pass stopped early (``stop_at_layer``) or
    started late (``start_at_layer``) is not merged with its neighbours.
    ``on_logits(logits)``, if given, sees the unembedding's output just before that.
    """
    embed = _embedding_module(model)

    def tokens_hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if model in _PROBING:
            return
        tokens = args[0] if args else next(iter(kwargs.values()), None)
        on_tokens(tokens.detach().to("cpu") if isinstance(tokens, Tensor) else None)

    def end_hook(*_: Any) -> None:
        if model not in _PROBING:
            on_end()

    def logits_hook(module: torch.nn.Module, args: Any, output: Any) -> None:
        if model in _PROBING:
            return
        if on_logits is not None and isinstance(output, Tensor):
            on_logits(output)
        on_end()

    handles = [
        embed.register_forward_pre_hook(tokens_hook, with_kwargs=True),
        model.register_forward_pre_hook(end_hook),
        model.register_forward_hook(end_hook),
    ]
    unembed = getattr(model, "unembed", None)
    if isinstance(unembed, torch.nn.Module):
        handles.append(unembed.register_forward_hook(logits_hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def fired_hooks(model: Any, names_to_check: Sequence[str], tokens: Tensor) -> set[str]:
    """Which of ``names_to_check`` fire during one forward pass on ``tokens``.

    Runs the model once (use short ``tokens``). Hooks registered through this module stay
    silent during that pass; the user's own hooks on the model do fire. Names that do not
    exist count as not firing.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-llama")
        >>> probe = model.to_tokens("1")
        >>> sorted(fired_hooks(model, ["hook_embed", "hook_pos_embed"], probe))
        ['hook_embed']
    """
    available = hook_dict(model)
    fired: set[str] = set()

    def make(name: str) -> HookFn:
        def mark(activation: Tensor, hook: Any) -> None:
            fired.add(name)

        return mark

    present = [(n, make(n)) for n in names_to_check if n in available]
    added = [(available[n], _add(available[n], fn, "fwd", False)) for n, fn in present]
    _PROBING.add(model)
    try:
        with preserve_state(model):
            model(tokens)
    finally:
        _PROBING.discard(model)
        for point, handle in added:
            _remove(point, handle, "fwd")
    return fired
