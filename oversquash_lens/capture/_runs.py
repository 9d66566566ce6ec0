"""Marking forward passes: the tokens fed in, how each call was made, where it ends.

:func:`run_boundaries` is how :func:`~oversquash_lens.attach` turns the user's calls into
runs. The logits it reports are what the model *returns*: some models transform the
unembedding's output before returning it (Gemma-2's final soft-cap, Granite's logit
scaling), so a hook on ``unembed`` alone would measure the wrong numbers.
"""

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from .._compat import backend_of
from ._guard import guarded
from ._hooks import ModuleHooks, _embedding_module, probe_ids, probing, silent_pass

_Args = tuple[Any, ...]
# Per model: does it return something other than the unembedding's output?
_TRANSFORMS: "weakref.WeakKeyDictionary[torch.nn.Module, bool]" = weakref.WeakKeyDictionary()


def _unembed(model: Any) -> torch.nn.Module | None:
    unembed = getattr(model, "unembed", None)
    return unembed if isinstance(unembed, torch.nn.Module) else None


def logits_transformed(model: Any) -> bool:
    """Whether the logits ``model`` returns differ from its unembedding's output.

    Decided once per model by a two-token probe pass (this package's hooks stay silent
    in it; the user's own hooks on the model do run), or by any :func:`probe_logits`
    pass made before.

    Example:
        >>> import oversquash_lens as osl
        >>> logits_transformed(osl.load_model("tiny-gpt2"))
        False
    """
    known = _TRANSFORMS.get(model)
    if known is not None:
        return known
    if _unembed(model) is None:  # nothing to compare with: no pass needed
        _TRANSFORMS[model] = True
        return True
    probe_logits(model, probe_ids(model, 2))
    return _TRANSFORMS[model]


def probe_logits(model: Any, tokens: Tensor) -> Any:
    """One silent pass over ``tokens`` that also settles :func:`logits_transformed`.

    Other probes run their pass through this one, so that a model's first analysis pays
    for one probe pass, not one per question (each costs a whole forward's fixed work:
    TransformerLens copies the MLP weights on every call). Returns what the model returned.
    """
    unembed = _unembed(model)
    if unembed is None:
        _TRANSFORMS[model] = True
        return silent_pass(model, tokens)
    seen: list[Tensor] = []
    registered = ModuleHooks()

    def keep(module: torch.nn.Module, args: Any, output: Any) -> None:
        if isinstance(output, Tensor):
            seen.append(output)

    with guarded(registered.remove_all):
        registered.add(unembed, lambda: unembed.register_forward_hook(keep))
        returned = silent_pass(model, tokens)
    same = bool(seen) and isinstance(returned, Tensor) and returned.shape == seen[-1].shape
    _TRANSFORMS[model] = not (same and torch.equal(returned.to(seen[-1].device), seen[-1]))
    return returned


def _returned_logits(output: Any, like: Tensor) -> Tensor | None:
    """The logits in what a model call returned (a tensor, a tuple, an HF output)."""
    candidates = [output]
    if isinstance(output, tuple) and output:
        candidates.append(output[0])
    candidates.append(getattr(output, "logits", None))
    for value in candidates:
        if isinstance(value, Tensor) and value.shape == like.shape:
            return value
    return None


@contextmanager
def run_boundaries(
    model: Any,
    on_tokens: Callable[[Tensor | None], None],
    on_end: Callable[[], None],
    on_logits: Callable[[Tensor | None], None] | None = None,
    on_call: Callable[[tuple[Any, ...], dict[str, Any]], None] | None = None,
) -> Iterator[None]:
    """Report the token ids fed to the embedding, the calls, and the ends of passes.

    ``on_tokens(tokens)`` runs whenever ``model.embed`` is called (a forward pre-hook sees
    the ids on both backends and through every entry point: ``model(...)``,
    ``run_with_cache``, ``run_with_hooks`` and ``generate``, where the bridge and
    TransformerLens call ``forward`` or ``embed`` directly, so a hook on the root module
    alone would miss them). ``on_call(args, kwargs)`` sees the arguments of each call of
    the model. ``on_end()`` runs when a call of the model starts or finishes, and when the
    unembedding has run outside a call, so a pass stopped early (``stop_at_layer``) or
    started late (``start_at_layer``) is not merged with its neighbours.

    ``on_logits(logits)``, if given, receives the logits of each pass just before its
    end: what the call returned, or, for a pass made by calling ``forward`` directly, the
    unembedding's output when the model does not transform it (see
    :func:`logits_transformed`); ``None`` when the returned logits cannot be known (a
    transformed model called through ``forward``, or a call returning only a loss).
    """
    backend_of(model)
    embed, unembed = _embedding_module(model), _unembed(model)
    transformed = on_logits is not None and logits_transformed(model)
    depth: list[int] = [0]
    stash: list[Tensor | None] = [None]

    def tokens_hook(module: torch.nn.Module, args: _Args, kwargs: dict[str, Any]) -> None:
        if probing(model):
            return
        tokens = args[0] if args else next(iter(kwargs.values()), None)
        on_tokens(tokens.detach().to("cpu") if isinstance(tokens, Tensor) else None)

    def call_started(module: torch.nn.Module, args: _Args, kwargs: dict[str, Any]) -> None:
        if probing(model):
            return
        depth[0] += 1
        on_end()
        if on_call is not None and depth[0] == 1:
            on_call(args, kwargs)

    def deliver(logits: Tensor | None) -> None:
        if on_logits is not None:
            on_logits(logits)

    def unembedded(module: torch.nn.Module, args: Any, output: Any) -> None:
        if probing(model) or not isinstance(output, Tensor):
            return
        if depth[0] > 0:  # the call's return value is the model's logits
            stash[0] = output
            return
        deliver(None if transformed else output)
        on_end()

    def call_ended(module: torch.nn.Module, args: Any, output: Any) -> None:
        if probing(model):
            return
        depth[0] = max(depth[0] - 1, 0)
        if depth[0] > 0:  # a call nested in the user's call: the pass goes on
            return
        kept, stash[0] = stash[0], None
        if kept is not None:
            returned = _returned_logits(output, kept)
            deliver(returned if returned is not None else (None if transformed else kept))
        on_end()

    registered = ModuleHooks()
    with guarded(registered.remove_all):
        registered.add(
            embed, lambda: embed.register_forward_pre_hook(tokens_hook, with_kwargs=True)
        )
        registered.add(
            model, lambda: model.register_forward_pre_hook(call_started, with_kwargs=True)
        )
        registered.add(model, lambda: model.register_forward_hook(call_ended, always_call=True))
        if unembed is not None:
            registered.add(unembed, lambda: unembed.register_forward_hook(unembedded))
        yield
