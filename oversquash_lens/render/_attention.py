"""``attention_heads``: a model's attention patterns for one prompt, with paths beneath.

The one view that runs the model: the patterns come through ``capture.record`` (inside
``eager_attention``), the path weights from :func:`~oversquash_lens.attention_paths`.
"""

import html
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .. import _hooknames as names
from .. import _memory as memory
from .._adapter import ModelAdapter
from .._errors import IncompatibleRunError
from .._paths import attention_paths
from ..analyzers._path_result import PathResult
from ..capture import record
from ._components import _str_tokens, colored_tokens_multi
from ._page import Component, Html, Part, Rendered, rounded

DEFAULT_MAX_TOKENS = 48


def _default_layers(n_layers: int) -> list[int]:
    count = min(4, n_layers)
    return sorted({round(i * (n_layers - 1) / max(count - 1, 1)) for i in range(count)})


def attention_heads(
    model_or_result: Any,
    prompt: Any = None,
    *,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    paths: bool = True,
    path_method: str = "rollout",
    max_tokens: int = DEFAULT_MAX_TOKENS,
    prepend_bos: bool | None = None,
    title: str | None = None,
) -> Rendered:
    """Attention patterns of chosen layers and heads, with path weights to the last token.

    Given a model and a prompt: one circuitsvis ``AttentionHeads`` per chosen layer (the
    patterns of the last ``max_tokens`` positions, queries and keys) and, beneath, the
    path weights from :func:`~oversquash_lens.attention_paths` as coloured tokens, one
    row per layer. Given a :class:`~oversquash_lens.PathResult`: the path weights only.

    Args:
        model_or_result: HookedTransformer / TransformerBridge, or a PathResult.
        prompt: Text or token ids ``[pos]`` / ``[1, pos]`` (with a model).
        layers: Layers to show (default: up to 4, evenly spaced, first and last included).
        heads: Heads to show (default: all).
        paths: Show the path weights beneath.
        path_method: ``"rollout"`` (rows sum to 1), ``"bound"`` or ``"context"``.
        max_tokens: Show at most this many positions (the last ones).
        prepend_bos: Override the model's BOS default for text prompts.
        title: Heading.

    Returns:
        A :class:`Rendered` view.

    Raises:
        ValueError: For a batch of prompts, or layers/heads the model does not have.

    Example:
        >>> import oversquash_lens as osl
        >>> from oversquash_lens import render
        >>> view = render.attention_heads(osl.load_model("tiny-gpt2"), "1 1 1", layers=[1])
        >>> [part.name for part in view.parts if hasattr(part, "name")]
        ['AttentionHeads', 'ColoredTokensMulti']
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    if isinstance(model_or_result, PathResult):
        if prompt is not None:
            raise ValueError("a PathResult already holds its tokens: do not pass a prompt")
        return _paths_only(model_or_result, max_tokens, title)
    if prompt is None:
        raise ValueError("give a prompt (text or token ids) to render a model's attention")
    adapter = ModelAdapter(model_or_result)
    tokens = adapter.to_tokens(prompt, prepend_bos=prepend_bos)
    if tokens.shape[0] != 1:
        raise ValueError(f"attention_heads shows one prompt; got a batch of {tokens.shape[0]}")
    chosen = list(layers) if layers is not None else _default_layers(adapter.n_layers)
    wanted_heads = list(heads) if heads is not None else list(range(adapter.n_heads))
    for layer in chosen:
        if not 0 <= layer < adapter.n_layers:
            raise ValueError(f"layer {layer} is out of range: the model has {adapter.n_layers}")
    for head in wanted_heads:
        if not 0 <= head < adapter.n_heads:
            raise ValueError(f"head {head} is out of range: the model has {adapter.n_heads}")
    n = int(tokens.shape[1])
    shown = min(n, max_tokens)
    hooks = [names.pattern(layer) for layer in chosen]

    def crop(_: str, pattern: Tensor) -> Tensor:
        return pattern[0, wanted_heads, -shown:, -shown:]

    # the patterns are cropped as they fire: the pass's own memory is all the view needs
    memory.check(adapter, [], {}, 1, n, grad=False, logits=False, eager=True)
    with adapter.eager_attention(), torch.no_grad():
        adapter.require_hooks(hooks)
        with record(model_or_result, hooks, select=crop) as acts:
            model_or_result(tokens, return_type=None)
    missing = [h for h in hooks if h not in acts]
    if missing:
        raise IncompatibleRunError(
            f"attention patterns {missing} did not fire on {adapter.info.name}; load the model "
            "with attn_implementation='eager'"
        )
    strings = adapter.to_str_tokens(tokens[0])[-shown:]
    parts: list[Part] = []
    for layer, hook in zip(chosen, hooks, strict=True):
        pattern = acts[hook]
        parts.append(Html(f"<h4>Layer {layer}</h4>"))
        parts.append(
            Component(
                "AttentionHeads",
                {
                    "attention": rounded(pattern),
                    "tokens": strings,  # drawn on a canvas as text: not escaped
                    "attentionHeadNames": [f"L{layer}H{h}" for h in wanted_heads],
                    "minValue": 0.0,
                    "maxValue": 1.0,
                },
            )
        )
    if paths:
        result = attention_paths(model_or_result, tokens, method=path_method)
        parts += _paths_only(result, max_tokens, None).parts
    crop_note = f"; showing the last {shown} of {n} tokens" if shown < n else ""
    caption = f"{adapter.info.name}: attention patterns (query × key){crop_note}."
    return Rendered(title or "Attention heads", parts, caption)


def _paths_only(result: PathResult, max_tokens: int, title: str | None) -> Rendered:
    n = result.n_positions
    shown = min(n, max_tokens)
    tokens = _str_tokens(result.str_tokens, n)[-shown:]
    values = result.weights[0, :, -shown:].T
    labels = [f"layer {layer}" for layer in range(result.n_layers)]
    crop_note = f" (last {shown} of {n} tokens)" if shown < n else ""
    view = colored_tokens_multi(
        tokens, values, labels, title=title or "Attention paths to the last token"
    )
    note = Html(
        f"<p>{html.escape(result.method)} path weight from each token to the last one after "
        f"each layer{html.escape(crop_note)}; pick a layer to see the weights fade.</p>"
    )
    return Rendered(view.title, [note, *view.parts], view.caption)
