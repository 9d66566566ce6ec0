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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import Tensor

from .._compat import backend_of
from .._errors import MissingHookError
from ._guard import Token, discard, guarded
from ._state import preserve_state

HookFn = Callable[..., Any]
"""A TransformerLens hook: ``fn(activation, *, hook)`` returns a replacement or None."""
Direction = Literal["fwd", "bwd"]
Order = Literal["append", "first", "last"]

# Models running a hidden probe pass (fired_hooks, silent_pass): our hooks stay silent
# during it. One token per probe in progress, so nested probes end cleanly.
_PROBING: "weakref.WeakKeyDictionary[torch.nn.Module, list[Token]]" = weakref.WeakKeyDictionary()
# Models recomputing a checkpointed block in a backward pass (capture.checkpointed_blocks):
# observers stay silent (they saw that block's forward already); edits still run, so the
# recomputed values are the ones the first pass used.
_RECOMPUTING: "weakref.WeakKeyDictionary[torch.nn.Module, list[Token]]" = (
    weakref.WeakKeyDictionary()
)


def probing(model: Any) -> bool:
    """Whether ``model`` is running a hidden probe pass right now."""
    return bool(_PROBING.get(model))


def recomputing(model: Any) -> bool:
    """Whether ``model`` is recomputing a checkpointed block right now."""
    return bool(_RECOMPUTING.get(model))


def hook_dict(model: Any) -> dict[str, Any]:
    """Name → HookPoint for either backend (the bridge's includes its alias names).

    Raises:
        UnsupportedModelError: For anything that is not a TransformerLens model.
    """
    backend_of(model)
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


def _torch_hooks(point: Any, direction: Direction) -> dict[int, Any]:
    return point._forward_hooks if direction == "fwd" else point._backward_hooks


PointSnapshot = tuple[Any, Direction, set[int], set[int]]  # point, dir, lens ids, torch ids


def _snapshot_point(point: Any, direction: Direction) -> PointSnapshot:
    """What is registered at a point before we add one hook there."""
    lens = {id(h) for h in _handles(point, direction)}
    return point, direction, lens, set(_torch_hooks(point, direction))


def _remove_since(snapshot: PointSnapshot) -> None:
    """Remove every hook added at a point since ``snapshot`` (idempotent).

    Only used for a registration that an interrupt cut short: between the snapshot and
    the handle being kept, nothing but our ``add_hook`` call ran.
    """
    point, direction, lens, torch_ids = snapshot
    for handle in list(_handles(point, direction)):
        if id(handle) not in lens:
            _remove(point, handle, direction)
    table = _torch_hooks(point, direction)
    for key in [k for k in table if k not in torch_ids]:
        table.pop(key, None)


def _remove(point: Any, handle: Any, direction: Direction) -> None:
    """Remove one of our handles from a point (idempotent)."""
    handle.hook.remove()
    kept = [h for h in _handles(point, direction) if h is not handle]
    if len(kept) != len(_handles(point, direction)):
        if direction == "fwd":
            point.fwd_hooks = kept
        else:
            point.bwd_hooks = kept


_HOOK_TABLES = (
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
)


class ModuleHooks:
    """Plain torch module hooks of ours, removable all at once even after an interrupt."""

    def __init__(self) -> None:
        self.handles: list[Any] = []
        self._pending: list[tuple[torch.nn.Module, dict[str, set[Any]]]] = []

    def add(self, module: torch.nn.Module, register: Callable[[], Any]) -> None:
        """Call ``register()`` (e.g. ``lambda: m.register_forward_hook(fn)``) and keep it."""
        tables = {name: set(getattr(module, name, {})) for name in _HOOK_TABLES}
        self._pending.append((module, tables))
        self.handles.append(register())
        self._pending.clear()

    def remove_all(self) -> None:
        """Remove every hook added here (idempotent)."""
        for module, before in self._pending:
            for name, keys in before.items():
                table = getattr(module, name, {})
                for key in [k for k in table if k not in keys]:
                    table.pop(key, None)
        for handle in self.handles:
            handle.remove()


class HookSet:
    """Hooks this package added, removable all at once, even after an interrupted add."""

    def __init__(self) -> None:
        self.added: list[tuple[Any, Any, Direction]] = []
        self._pending: list[PointSnapshot] = []
        self._modules = ModuleHooks()

    def add(self, point: Any, fn: HookFn, direction: Direction, prepend: bool) -> Any:
        """Register ``fn`` at ``point``; recorded before anything can interrupt it."""
        self._pending.append(_snapshot_point(point, direction))
        handle = _add(point, fn, direction, prepend)
        self.added.append((point, handle, direction))
        self._pending.clear()
        return handle

    def keep_last(self, model: Any) -> None:
        """Move our forward hooks to the end of their points whenever a pass starts.

        Observers then see the value the model actually used, after the user's own
        patching hooks (added before or inside the block).
        """
        forward = [(p, h) for p, h, d in self.added if d == "fwd"]

        def move(module: torch.nn.Module, args: Any) -> None:
            for point, handle in forward:
                if handle.hook.id in point._forward_hooks:
                    point._forward_hooks.move_to_end(handle.hook.id)

        embed = _embedding_module(model)
        self._modules.add(embed, lambda: embed.register_forward_pre_hook(move))

    def remove_all(self) -> None:
        """Remove every hook added here (idempotent: safe to run twice)."""
        self._modules.remove_all()
        for snapshot in self._pending:
            _remove_since(snapshot)
        for point, handle, direction in reversed(self.added):
            _remove(point, handle, direction)


def _silent_when_probing(model: Any, fn: HookFn, observer: bool) -> HookFn:
    def hook(activation: Any, hook: Any) -> Any:
        if probing(model) or (observer and recomputing(model)):
            return None
        return fn(activation, hook=hook)

    return hook


def _embedding_module(model: Any) -> torch.nn.Module:
    embed = getattr(model, "embed", None)
    if not isinstance(embed, torch.nn.Module):
        raise MissingHookError("cannot find the token embedding module (model.embed)")
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
    directions: tuple[tuple[Direction, Sequence[tuple[str, HookFn]]], ...] = (
        ("fwd", fwd_hooks),
        ("bwd", bwd_hooks),
    )
    # Resolve every name first: a bad one registers nothing.
    planned: list[tuple[Any, HookFn, Direction]] = [
        (hook_point(model, name, points), fn, direction)
        for direction, pairs in directions
        for name, fn in pairs
    ]
    registered = HookSet()
    with preserve_state(model), guarded(registered.remove_all):
        for point, fn, direction in planned:
            silent = _silent_when_probing(model, fn, observer=order == "last")
            registered.add(point, silent, direction, order == "first")
        if order == "last" and any(d == "fwd" for _, _, d in registered.added):
            registered.keep_last(model)
        yield model


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


@contextmanager
def recompute_pass(model: Any) -> Iterator[None]:
    """Inside the block, this package's observing hooks (``order="last"``) stay silent.

    For the recomputation of a checkpointed block during a backward pass: edits and
    precision rounding run again, so the values are those of the first pass, but nothing
    is recorded twice.
    """
    token, stack = Token("recompute"), _RECOMPUTING.setdefault(model, [])
    with guarded(lambda: discard(stack, token)):
        stack.append(token)
        yield


@contextmanager
def probe_pass(model: Any) -> Iterator[None]:
    """Inside the block, hooks added by this package stay silent (a hidden probe pass)."""
    token, stack = Token("probe"), _PROBING.setdefault(model, [])
    with guarded(lambda: discard(stack, token)):
        stack.append(token)
        yield


def probe_ids(model: Any, n: int) -> Tensor:
    """``[1, n]`` ordinary token ids for a probe pass: no pad, BOS or other special token.

    A pad id would be masked out by TransformerLens on a tokenizer that pads on the left.
    """
    tokenizer = getattr(model, "tokenizer", None)
    special = set(getattr(tokenizer, "all_special_ids", None) or [])
    vocab = int(model.cfg.d_vocab)
    ids = [i for i in range(vocab // 2, vocab) if i not in special][:n]
    if len(ids) < n:
        ids = [i % vocab for i in range(n)]
    return torch.tensor([ids], dtype=torch.long, device=model.W_E.device)


def silent_pass(model: Any, tokens: Tensor) -> Any:
    """One forward pass that this package's own hooks do not see; the model is restored.

    The user's own hooks on the model do fire. Returns what the model returned.
    """
    with probe_pass(model), preserve_state(model), torch.no_grad():
        return model(tokens)


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

    present = [(available[n], make(n)) for n in names_to_check if n in available]
    registered = HookSet()
    with guarded(registered.remove_all):
        for point, fn in present:
            registered.add(point, fn, "fwd", False)
        silent_pass(model, tokens)
    return fired
