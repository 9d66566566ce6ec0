"""Precision contexts: run natively in another dtype, or emulate a format with hooks."""

import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import Tensor

from .. import _hooknames as names
from .._compat import backend_of
from .._dtypes import native_torch_dtype
from .._errors import UnsupportedPrecisionError
from .._tensors import HF_FLOAT32_BUFFERS, cast_floating_
from ..precision import FormatLike, get_format, round_to_format
from ._guard import Token, discard, guarded
from ._hooks import hook_dict, hooks
from ._state import preserve_state

# Precision contexts active on each model, innermost last, for provenance.
_PRECISION: "weakref.WeakKeyDictionary[torch.nn.Module, list[Token]]" = weakref.WeakKeyDictionary()


def active_precision(model: Any) -> str | None:
    """The precision contexts active on ``model`` (native dtype / emulation), or None.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-gpt2")
        >>> with osl.emulate_precision(model, "bf16"):
        ...     active_precision(model)
        'bfloat16 emulated at residual'
    """
    stack = _PRECISION.get(model)
    return "; ".join(token.label for token in stack) if stack else None


@contextmanager
def _precision_label(model: Any, label: str) -> Iterator[None]:
    token, stack = Token(label), _PRECISION.setdefault(model, [])
    with guarded(lambda: discard(stack, token)):
        stack.append(token)
        yield


@contextmanager
def native_dtype(model: Any, dtype: FormatLike) -> Iterator[Any]:
    """Run the model natively in another dtype inside the block, then restore it exactly.

    Every floating tensor the model computes with (parameters, the bridge's processed
    weights, buffers; Hugging Face rotary frequencies stay float32) gets new data in
    ``dtype``; the original data is kept, not round-tripped, so float32 weights come back
    bit-identical. Peak memory is the original model plus its copy in ``dtype``.

    Raises:
        UnsupportedPrecisionError: For formats torch cannot run natively (fp8, custom
            widths) or the device lacks: emulate those with :func:`emulate_precision`.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-gpt2")
        >>> with osl.native_dtype(model, "bfloat16"):
        ...     model(model.to_tokens("1 2")).dtype
        torch.bfloat16
        >>> model.W_E.dtype
        torch.float32
    """
    backend_of(model)
    target = native_torch_dtype(dtype, model.W_E.device)
    with preserve_state(model), _precision_label(model, f"{get_format(target).name} native"):
        cast_floating_(model, target, keep=HF_FLOAT32_BUFFERS)
        if getattr(model.cfg, "dtype", None) is not None:
            model.cfg.dtype = target
        yield model


def check_emulation(fmt: FormatLike, model_dtype: torch.dtype) -> None:
    """Refuse emulating a format the model's own dtype cannot hold exactly.

    Rounding to a wider format than the model computes in changes nothing: the numbers
    would be the model's own, labelled as the wider format.

    Raises:
        UnsupportedPrecisionError: With the dtype to load the model in instead.

    Example:
        >>> import torch
        >>> check_emulation("bfloat16", torch.float32)  # fine: bf16 fits in float32
        >>> check_emulation("float64", torch.float32)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        oversquash_lens._errors.UnsupportedPrecisionError: the model runs in float32, ...
    """
    spec, running = get_format(fmt), get_format(model_dtype)
    if running.contains(spec):
        return
    if spec.name == "float64":
        instead = "run it natively instead (precisions=['float64'], osl.native_dtype)"
    elif get_format(torch.float32).contains(spec):
        instead = "load the model in float32 (dtype='float32')"
    else:
        instead = "load the model in float64 (dtype='float64')"
    raise UnsupportedPrecisionError(
        f"the model runs in {running.name}, which cannot hold every {spec.name} value: "
        f"emulating {spec.name} would return {running.name} numbers labelled {spec.name}; "
        f"{instead}"
    )


@contextmanager
def emulate_precision(
    model: Any,
    fmt: FormatLike,
    *,
    points: Literal["residual", "residual+attention"] | Sequence[str] = "residual",
    overflow: Literal["format", "saturate"] = "format",
) -> Iterator[Any]:
    """Round activations to ``fmt`` at hook points, emulating a format on any device.

    Rounding runs before every other hook at those points, so recorders and analyzers
    see the rounded values.

    Args:
        model: HookedTransformer or TransformerBridge (running in float32 or float64, or
            in a 16-bit dtype at least as wide as ``fmt``).
        fmt: Any format :func:`~oversquash_lens.precision.get_format` accepts, e.g.
            ``"bfloat16"``, ``"float8_e4m3"``, ``"e5m7"``.
        points: ``"residual"`` rounds the residual stream (embedding, between attention and
            MLP, after every block); ``"residual+attention"`` also rounds per-head attention
            outputs (``hook_z``); or an explicit list of hook names.
        overflow: Overflow rule (see :func:`~oversquash_lens.precision.round_to_format`).

    Yields:
        The model.

    Raises:
        UnsupportedPrecisionError: If ``fmt`` is wider than the dtype the model runs in
            (``"float64"`` on a float32 model, bf16 on a float16 one): rounding to it would
            change nothing, or could not be exact.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-gpt2")
        >>> with osl.emulate_precision(model, "bfloat16"):
        ...     with osl.record(model, ["blocks.1.hook_resid_post"]) as acts:
        ...         _ = model(model.to_tokens("1 2"))
        >>> x = acts["blocks.1.hook_resid_post"]
        >>> bool((x == x.bfloat16().float()).all())
        True
    """
    backend_of(model)
    spec = get_format(fmt)
    check_emulation(spec, model.W_E.dtype)
    if isinstance(points, str):
        if points not in ("residual", "residual+attention"):
            raise ValueError(
                f"points must be 'residual', 'residual+attention' or a list of hook names, "
                f"got {points!r}"
            )
        available = hook_dict(model)
        n_layers = model.cfg.n_layers
        chosen = [n for n in names.residual_stream(n_layers) if n in available]
        if points == "residual+attention":
            chosen += [names.z(layer) for layer in range(n_layers)]
        where = points
    else:
        chosen, where = list(points), f"{len(points)} hook points"

    def round_hook(activation: Tensor, hook: Any) -> Tensor:
        return round_to_format(activation, spec, overflow=overflow)

    with (
        _precision_label(model, f"{spec.name} emulated at {where}"),
        hooks(model, [(n, round_hook) for n in chosen], order="first"),
    ):
        yield model
