"""Facts about a model's architecture found by tiny probe passes, cached per model.

Configs do not always say what an analysis must know: whether attention is causal, and
whether the values a hook returns at ``hook_pattern`` are the weights attention actually
uses. Each probe runs the model on a few ordinary tokens with this package's own hooks
silent (the user's hooks still run), and its answer is kept per model object.
"""

import warnings
import weakref
from typing import Any

import torch
from torch import Tensor

from . import _hooknames as names
from .capture import hook_dict, silent_pass
from .capture._guard import guarded
from .capture._hooks import HookSet, probe_ids
from .capture._runs import probe_logits

_CAUSAL: "weakref.WeakKeyDictionary[Any, bool]" = weakref.WeakKeyDictionary()
_IGNORED_PATTERNS: "weakref.WeakKeyDictionary[Any, tuple[int, ...]]" = weakref.WeakKeyDictionary()


def probe_causal(model: Any) -> bool:
    """Whether changing the last of three tokens leaves the earlier positions' logits alone.

    Causal: the same numbers up to rounding (two rows of one pass); bidirectional: the
    changed last token moves every position by far more than rounding.

    Example:
        >>> import oversquash_lens as osl
        >>> probe_causal(osl.load_model("tiny-nope"))
        True
    """
    known = _CAUSAL.get(model)
    if known is not None:
        return known
    ids = probe_ids(model, 4)
    # one pass of two rows, (t0 t1 t2) and (t0 t1 t3), which also tells whether the model
    # transforms its logits: a model's first analysis then pays for one probe pass
    rows = torch.cat([ids[:, :3], torch.cat([ids[:, :2], ids[:, 3:]], dim=1)])
    out = probe_logits(model, rows)
    causal = True  # nothing to compare: trust the config's default
    if isinstance(out, Tensor) and out.ndim == 3 and out.shape[0] == 2:
        early_a, early_b = out[:1, :-1].double(), out[1:, :-1].double()
        scale = float(early_a.abs().max()) or 1.0
        causal = float((early_a - early_b).abs().max()) <= 1e-3 * scale
    _CAUSAL[model] = causal
    return causal


def ignored_pattern_layers(model: Any) -> tuple[int, ...]:
    """Layers whose attention does not use the pattern a ``hook_pattern`` hook returns.

    Found by one probe pass in which every layer's pattern is replaced by zeros: where
    attention honours the hook, its per-head outputs (``hook_z``) are then exactly zero.
    Freezing attention (detaching the pattern) only works on the other layers.

    Example:
        >>> import oversquash_lens as osl
        >>> ignored_pattern_layers(osl.load_model("tiny-llama"))
        ()
    """
    known = _IGNORED_PATTERNS.get(model)
    if known is not None:
        return known
    points, n_layers = hook_dict(model), int(model.cfg.n_layers)
    outputs: dict[int, Tensor] = {}

    def zero(activation: Tensor, hook: Any) -> Tensor:
        return torch.zeros_like(activation)

    def keep(layer: int) -> Any:
        def save(activation: Tensor, hook: Any) -> None:
            outputs[layer] = activation.detach()

        return save

    registered = HookSet()
    with guarded(registered.remove_all), warnings.catch_warnings():
        # TransformerLens 4 warns when a bridge discards a pattern edit: that is what the
        # probe is asking, so the warning is the expected answer, not a problem.
        warnings.filterwarnings("ignore", message=r".*returned a modified tensor")
        for layer in range(n_layers):
            registered.add(points[names.pattern(layer)], zero, "fwd", False)
            registered.add(points[names.z(layer)], keep(layer), "fwd", False)
        silent_pass(model, probe_ids(model, 3))
    ignored = tuple(
        layer
        for layer in range(n_layers)
        if layer not in outputs or bool(outputs[layer].abs().max() > 0)
    )
    _IGNORED_PATTERNS[model] = ignored
    return ignored
