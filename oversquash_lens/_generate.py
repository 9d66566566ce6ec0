"""Greedy decoding that is correct on both backends.

Two routes:

* :func:`greedy_continuation` recomputes the whole prefix at every step, one batch of
  equal-length prompts at a time: slow, but the plain forward pass, so it is the reference.
* :func:`greedy_generate` decodes many prompts of different lengths in left-padded
  batches with an attention mask and a KV cache. On a HookedTransformer it runs
  TransformerLens's own cache (positions come from the mask: TL's learned and rotary
  position code both offset by ``cumsum(mask) - 1``). On a TransformerBridge it runs the
  wrapped Hugging Face model directly, through a hook-free view that shares the bridge's
  weight tensors: the bridge's attention reads the KV cache from a keyword transformers
  5.x no longer passes (``past_key_values``, renamed ``cache``), so its cached steps
  silently attend to the new token only (SmolLM2 continues "Paris" with dashes). A
  bridge without such a model (``boot_native``), or with any hook active on its hook
  points (the user's own, interventions, precision emulation), decodes uncached through
  its own forward pass instead, so that every hook runs.
"""

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ._compat import backend_of
from ._progress import progress_bar
from ._types import TokenSeq
from .capture import hook_dict, preserve_state


@torch.no_grad()
def greedy_continuation(
    model: Any, tokens: Int[Tensor, "batch pos"], max_new_tokens: int
) -> Int[Tensor, "batch new"]:
    """Append ``max_new_tokens`` argmax tokens, without a KV cache.

    Args:
        model: HookedTransformer or TransformerBridge.
        tokens: Prompt ids ``[batch, pos]``.
        max_new_tokens: How many tokens to generate (≥ 0).

    Returns:
        The generated ids only, ``[batch, max_new_tokens]``.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-gpt2")
        >>> greedy_continuation(model, model.to_tokens("1 1"), 3).shape
        torch.Size([1, 3])
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    generated = tokens
    with preserve_state(model):
        model.eval()
        for _ in range(max_new_tokens):
            logits = model(generated)
            next_token = logits[:, -1].argmax(dim=-1, keepdim=True).to(generated.device)
            generated = torch.cat([generated, next_token], dim=1)
    return generated[:, tokens.shape[1] :]


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (shortest first), to limit padding.

    Example:
        >>> length_batches([5, 1, 3, 2], 2)
        [[1, 3], [2, 0]]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def left_pad(
    prompts: Sequence[TokenSeq], pad_id: int
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """Stack 1-D id tensors, padded on the left, with their 0/1 attention mask.

    Example:
        >>> ids, mask = left_pad([torch.tensor([7, 8]), torch.tensor([9])], pad_id=0)
        >>> ids.tolist(), mask.tolist()
        ([[7, 8], [0, 9]], [[1, 1], [0, 1]])
    """
    width = max(int(p.shape[0]) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        if prompt.shape[0]:
            ids[row, width - prompt.shape[0] :] = prompt.cpu()
            mask[row, width - prompt.shape[0] :] = 1
    return ids, mask


def trim_at_stop(ids: TokenSeq, stop_token_ids: Sequence[int]) -> TokenSeq:
    """Cut ``ids`` after the first stop token (the stop token itself is kept).

    Example:
        >>> trim_at_stop(torch.tensor([4, 2, 9, 2]), [2]).tolist()
        [4, 2]
    """
    if not stop_token_ids or not ids.numel():
        return ids
    hits = torch.isin(ids, torch.tensor(list(stop_token_ids), dtype=ids.dtype))
    if not bool(hits.any()):
        return ids
    return ids[: int(hits.int().argmax()) + 1]


def greedy_generate(
    model: Any,
    prompts: Sequence[TokenSeq],
    max_new_tokens: int,
    *,
    batch_size: int = 16,
    stop_token_ids: Sequence[int] | None = None,
    progress: bool = False,
) -> list[TokenSeq]:
    """Greedy (argmax) continuations of many prompts, batched, with a KV cache.

    Prompts are sorted by length into batches, padded on the left and masked; each batch
    stops early once every row has produced a stop token. The tokens equal
    :func:`greedy_continuation` run prompt by prompt, up to float rounding: padding and
    batching change the order of floating-point sums, so a nearly tied argmax can flip.

    On a TransformerBridge with no hook on any hook point the tokens come from the
    wrapped Hugging Face model (see :func:`hf_view`; weight edits made only to the
    bridge's processed copies are not seen there). Whenever a hook is active (your own,
    :func:`~oversquash_lens.intervene`, :func:`~oversquash_lens.emulate_precision`) the
    bridge decodes through its own hooked forward pass, without a cache, so every hook
    runs.

    Args:
        model: HookedTransformer or TransformerBridge.
        prompts: 1-D token id tensors, one per prompt (lengths may differ).
        max_new_tokens: Most tokens to generate per prompt (≥ 0).
        batch_size: Prompts per forward pass.
        stop_token_ids: Generation of a prompt ends after any of these ids. None: the
            tokenizer's EOS token, if it has one; ``()``: never stop early.
        progress: Show a progress bar over batches.

    Returns:
        The generated ids per prompt (prompt order), each cut after its first stop token.

    Raises:
        ValueError: For an empty prompt, a negative ``max_new_tokens`` or a prompt that
            would outgrow the model's context.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-gpt2")
        >>> prompts = [model.to_tokens("1 1")[0], model.to_tokens("1 1 1 1")[0]]
        >>> [out.shape[0] for out in greedy_generate(model, prompts, 3, stop_token_ids=())]
        [3, 3]
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    prompts = [torch.as_tensor(p).reshape(-1).long() for p in prompts]
    lengths = [int(p.shape[0]) for p in prompts]
    if any(n == 0 for n in lengths):
        raise ValueError("an empty prompt cannot be continued: give every prompt a token")
    n_ctx = getattr(model.cfg, "n_ctx", None)
    if n_ctx and prompts and max(lengths) + max_new_tokens > n_ctx:
        raise ValueError(
            f"the longest prompt ({max(lengths)} tokens) + max_new_tokens ({max_new_tokens}) "
            f"exceeds the model's context of {n_ctx}: shorten the prompt or generate fewer"
        )
    tokenizer = getattr(model, "tokenizer", None)
    stops = default_stop_ids(tokenizer) if stop_token_ids is None else tuple(stop_token_ids)
    stops = tuple(int(s) for s in stops)
    pad_id = _pad_id(tokenizer)
    device = model.cfg.device if backend_of(model) == "hooked" else _device(model)
    out: list[TokenSeq] = [torch.empty(0, dtype=torch.long)] * len(prompts)
    batches = length_batches(lengths, batch_size)
    with preserve_state(model), torch.no_grad():
        model.eval()
        decode = _decoder(model)
        for batch in progress_bar(batches, disable=not progress, desc="generate", unit="batch"):
            ids, mask = left_pad([prompts[i] for i in batch], pad_id)
            new = decode(ids.to(device), mask.to(device), max_new_tokens, stops).cpu()
            for row, index in enumerate(batch):
                out[index] = trim_at_stop(new[row], stops)
    return out


def default_stop_ids(tokenizer: Any) -> tuple[int, ...]:
    """The tokenizer's EOS id (``()`` when it has none): the default stop tokens.

    Example:
        >>> import oversquash_lens as osl
        >>> default_stop_ids(osl.load_model("tiny-gpt2").tokenizer)
        (0,)
    """
    eos = getattr(tokenizer, "eos_token_id", None)
    return () if eos is None else (int(eos),)


Decoder = Any  # (ids, mask, max_new_tokens, stops) -> [batch, new] ids


def hooks_active(model: Any) -> bool:
    """Whether any hook sits on a hook point of ``model`` right now.

    The user's own hooks, :func:`~oversquash_lens.intervene` and precision emulation all
    register there.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-gpt2", backend="bridge")
        >>> with osl.intervene(model, [("hook_embed", lambda x, hook: x)]):
        ...     hooks_active(model)
        True
        >>> hooks_active(model)
        False
    """
    return any(
        point._forward_hooks or point._backward_hooks or point.fwd_hooks or point.bwd_hooks
        for point in set(hook_dict(model).values())
    )


def _decoder(model: Any) -> Decoder:
    """The cached decoding route for this model (see the module docstring)."""
    if backend_of(model) == "hooked":
        return lambda ids, mask, n, stops: _decode_hooked(model, ids, mask, n, stops)
    # Hooks must run (the user's, interventions, rounding): no hook-free HF view then.
    view = None if hooks_active(model) else hf_view(model)
    if view is None:
        return lambda ids, mask, n, stops: _decode_uncached(model, ids, mask, n)
    return lambda ids, mask, n, stops: _decode_hf(view, ids, mask, n, stops)


def _pad_id(tokenizer: Any) -> int:
    for attr in ("pad_token_id", "eos_token_id", "bos_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    return 0


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def _all_stopped(done: Tensor, token: Tensor, stops: tuple[int, ...]) -> Tensor:
    if not stops:
        return done
    return done | torch.isin(token, torch.tensor(stops, device=token.device))


def _decode_hooked(
    model: Any, ids: Tensor, mask: Tensor, max_new_tokens: int, stops: tuple[int, ...]
) -> Tensor:
    """TransformerLens's KV cache; the mask gives positions and hides the padding."""
    from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

    cache = TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, ids.shape[0])
    generated: list[Tensor] = []
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    step_input, step_mask = ids, mask
    for _ in range(max_new_tokens):
        logits = model(step_input, attention_mask=step_mask, past_kv_cache=cache)
        token = logits[:, -1].argmax(dim=-1).to(ids.device)
        generated.append(token)
        done = _all_stopped(done, token, stops)
        if bool(done.all()):
            break
        step_input, step_mask = token[:, None], torch.ones_like(token)[:, None]
    return _stack(generated, ids)


def _stack(generated: list[Tensor], ids: Tensor) -> Tensor:
    if not generated:
        return ids.new_empty((ids.shape[0], 0))
    return torch.stack(generated, dim=1)


def _decode_hf(
    hf: Any, ids: Tensor, mask: Tensor, max_new_tokens: int, stops: tuple[int, ...]
) -> Tensor:
    """Hugging Face's DynamicCache, with positions from the mask (as HF's generate does).

    The mask goes in as a 4-D additive mask with a finite fill (:func:`additive_mask`):
    Hugging Face's own fill in float64 is float64's minimum, which its eager Llama softmax
    (run in float32) turns into -inf, so a padding query attends to nothing, gives NaN,
    and the NaN reaches every row through the zero-weighted padding values.
    """
    cache_kw = "cache" if "cache" in inspect.signature(hf.forward).parameters else "past_key_values"
    dtype = next(hf.parameters()).dtype
    cache = None
    positions = (mask.cumsum(dim=-1) - 1).clamp(min=0)
    generated: list[Tensor] = []
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    step_input = ids
    for _ in range(max_new_tokens):
        out = hf(
            input_ids=step_input,
            attention_mask=additive_mask(mask, step_input.shape[1], dtype),
            position_ids=positions,
            use_cache=True,
            **({cache_kw: cache} if cache is not None else {}),
        )
        cache = getattr(out, "cache", None)
        if cache is None:
            cache = out.past_key_values
        token = out.logits[:, -1].argmax(dim=-1)
        generated.append(token)
        done = _all_stopped(done, token, stops)
        if bool(done.all()):
            break
        step_input = token[:, None]
        positions = positions[:, -1:] + 1
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    return _stack(generated, ids)


def additive_mask(
    mask: Int[Tensor, "batch key_pos"], n_queries: int, dtype: torch.dtype
) -> Float[Tensor, "batch 1 query_pos key_pos"]:
    """Causal + padding mask to add to attention scores, for the last ``n_queries`` keys.

    Blocked entries get the most negative value finite in both ``dtype`` and float32, so a
    query with nothing to attend to (padding) stays finite instead of NaN.

    Example:
        >>> additive_mask(torch.tensor([[0, 1, 1]]), 2, torch.float64)[0, 0].eq(0).tolist()
        [[False, True, False], [False, True, True]]
    """
    n_keys = mask.shape[1]
    causal = torch.ones(n_queries, n_keys, dtype=torch.bool, device=mask.device)
    allowed = causal.tril(diagonal=n_keys - n_queries)[None] & mask[:, None, :].bool()
    low = max(torch.finfo(dtype).min, torch.finfo(torch.float32).min)
    scores = torch.zeros(allowed.shape, dtype=dtype, device=mask.device)
    return scores.masked_fill(~allowed, low)[:, None]


def _decode_uncached(model: Any, ids: Tensor, mask: Tensor, max_new_tokens: int) -> Tensor:
    """No cache: each row alone, its padding dropped (the reference forward pass)."""
    rows = [
        greedy_continuation(model, ids[r, mask[r].bool()][None], max_new_tokens)[0]
        for r in range(ids.shape[0])
    ]
    return torch.stack(rows)


def hf_view(bridge: Any) -> Any:
    """A plain Hugging Face model sharing a TransformerBridge's weight tensors, or None.

    The bridge replaces the submodules of the model it wraps by its own components (each
    keeping the original as ``_original_component``). This builds an empty model of the
    same class on the meta device and points every parameter and buffer at the original
    module's tensor: no copy, the bridge's current dtype, no hooks, and Hugging Face's own
    (correct) KV cache handling. Returns None when the structure does not match.

    Example:
        >>> import oversquash_lens as osl
        >>> bridge = osl.load_model("tiny-llama", backend="bridge")
        >>> type(hf_view(bridge)).__name__
        'LlamaForCausalLM'
    """
    wrapped = getattr(bridge, "original_model", None)
    config = getattr(wrapped, "config", None)
    if wrapped is None or config is None or getattr(config, "is_encoder_decoder", False):
        return None
    try:
        with torch.device("meta"):
            view = type(wrapped)(config)
    except Exception:  # a class that cannot be rebuilt from its config alone
        return None
    for name, module in view.named_modules():
        source = _original(wrapped, name)
        if type(source) is not type(module):
            return None
        for kind in ("_parameters", "_buffers"):
            theirs = getattr(source, kind)
            ours = getattr(module, kind)
            for key in ours:
                if key in theirs:
                    ours[key] = theirs[key]
                elif ours[key] is not None:  # absent there and not an unused (None) slot
                    return None
    return view.eval()


def _unwrap(module: Any) -> Any:
    while isinstance(module, torch.nn.Module) and "_original_component" in module._modules:
        module = module._modules["_original_component"]
    return module


def _original(root: Any, dotted: str) -> Any:
    current = _unwrap(root)
    for part in dotted.split(".") if dotted else []:
        child = current._modules.get(part) if isinstance(current, torch.nn.Module) else None
        if child is None:
            return None
        current = _unwrap(child)
    return current
