"""Chat templates, tokenization with character offsets, and locating items in tokens.

A task message is rendered (optionally inside the tokenizer's chat template), tokenized
once with character offsets, and each sequence item's character span is mapped to the
tokens covering it. :func:`locate_items` is the check: an item must not merge with the
text after it (the last covering token ends exactly where the item ends), must not
merge with the item before it (the first covering token starts after the previous item
ends; it may cover the joiner or separator before the item, as GPT-2's ``"Ġ1"`` does),
and, for digit tasks, must be exactly one token. Tokenizers without offsets (slow
Python tokenizers) are refused with a message saying so.
"""

import bisect
from collections.abc import Sequence
from typing import Any

import torch

from .._adapter import ModelAdapter
from .._errors import TokenizationError
from ._kinds import Span


def has_chat_template(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` carries a chat template.

    Example:
        >>> has_chat_template(object())
        False
    """
    return bool(getattr(tokenizer, "chat_template", None))


def render_chat(tokenizer: Any, message: str) -> tuple[str, int]:
    r"""The chat-templated text of one user message, and where the message starts in it.

    Uses ``apply_chat_template([{"role": "user", "content": message}],
    add_generation_prompt=True, tokenize=False)``: the text ends where the assistant's
    reply begins (for SmolLM2 ``"…<|im_start|>assistant\n"``, after a default system
    message the template adds).

    Raises:
        TokenizationError: If the template has no place where the message appears verbatim.
    """
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": message}], add_generation_prompt=True, tokenize=False
    )
    if not isinstance(text, str):
        raise TokenizationError(
            f"the chat template returned {type(text).__name__}, not text; pass chat=False"
        )
    start = text.find(message)
    if start < 0:
        raise TokenizationError(
            "the chat template changed the message text (it is not found verbatim in the "
            "rendered chat), so item positions cannot be located; pass chat=False"
        )
    return text, start


def encode_with_offsets(tokenizer: Any, text: str) -> tuple[list[int], list[Span]]:
    """Token ids of ``text`` (no special tokens added) and each token's character span.

    Special tokens written in the text (``"<|im_start|>"``) are recognized as such, as
    in ``apply_chat_template(tokenize=True)``.

    Raises:
        TokenizationError: If the tokenizer cannot report character offsets.
    """
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
    except (NotImplementedError, KeyError, TypeError) as exc:
        raise TokenizationError(
            f"the tokenizer ({type(tokenizer).__name__}) reports no character offsets, "
            "which tasks need to find each item's token; load a fast (Rust) tokenizer "
            "(AutoTokenizer.from_pretrained(..., use_fast=True))"
        ) from exc
    ids = [int(i) for i in enc["input_ids"]]
    spans = [(int(a), int(b)) for a, b in offsets]
    if len(spans) != len(ids):
        raise TokenizationError("the tokenizer returned a different number of offsets and ids")
    return ids, spans


def locate_items(
    offsets: Sequence[Span],
    items: Sequence[Span],
    *,
    single_token: bool,
    names: Sequence[str] | None = None,
    text: str = "",
) -> list[int]:
    """Index of the (last) token of each item, checking that items tokenize on their own.

    Args:
        offsets: Character span of every token, in order.
        items: Character span of every item, in order, non-overlapping.
        single_token: Require each item to be exactly one token (digits); otherwise an
            item may span several tokens and its last one is returned (words).
        names: Token strings, for error messages.
        text: The tokenized text, for error messages.

    Returns:
        One token index per item.

    Raises:
        TokenizationError: Naming the first item that merges with a neighbour or (with
            ``single_token``) is not one token.

    Example:
        >>> # "Q:1 1" as tokens "Q", ":", "1", " 1": the second item's token covers its space
        >>> locate_items([(0, 1), (1, 2), (2, 3), (3, 5)], [(2, 3), (4, 5)], single_token=True)
        [2, 3]
    """
    ends = [end for _, end in offsets]
    out: list[int] = []
    previous_end = items[0][0] if items else 0
    for index, (start, end) in enumerate(items):
        first = bisect.bisect_right(ends, start)  # first token ending after the item starts
        covering = []
        j = first
        while j < len(offsets) and offsets[j][0] < end:
            if offsets[j][1] > offsets[j][0]:  # zero-width tokens cover nothing
                covering.append(j)
            j += 1
        problem = None
        if not covering:
            problem = "no token covers it"
        elif offsets[covering[-1]][1] != end:
            problem = "it merges with the text after it"
        elif offsets[covering[0]][0] < previous_end:
            before = "the item before it" if index else "the text before it"
            problem = f"it merges with {before}"
        elif single_token and len(covering) != 1:
            problem = f"it is {len(covering)} tokens, not one"
        if problem is not None:
            shown = [names[j] for j in covering] if names is not None else covering
            item_text = repr(text[start:end]) if text else f"characters {start}:{end}"
            raise TokenizationError(
                f"item {index} ({item_text}) does not tokenize on its own: {problem} "
                f"(covering tokens: {shown})"
            )
        out.append(covering[-1])
        previous_end = end
    return out


def use_chat(tokenizer: Any, chat: bool | None, compact: bool) -> bool:
    """Resolve ``chat``: None applies the template when the tokenizer has one.

    Raises:
        ValueError: For ``chat=True`` with a compact task or a tokenizer without template.
    """
    if chat is not None and not isinstance(chat, bool):
        raise TypeError(f"chat must be None, True or False, got {chat!r}")
    if compact:
        if chat:
            raise ValueError("compact-style tasks never use a chat template: pass chat=None")
        return False
    if chat is None:
        return has_chat_template(tokenizer)
    if chat and not has_chat_template(tokenizer):
        raise ValueError("this tokenizer has no chat template: pass chat=False (or None)")
    return chat


def encode_message(
    model: Any,
    message: str,
    spans: Sequence[Span],
    *,
    chat: bool | None,
    prepend_bos: bool | None,
    compact: bool,
    single_token: bool,
) -> tuple[torch.Tensor, list[int]]:
    """Token ids of a task message for ``model`` and the token index of each item.

    Args:
        model: A HookedTransformer or TransformerBridge with a tokenizer.
        message: The user message (``TaskInstance.text``).
        spans: Character span of each item in ``message``.
        chat: None: the tokenizer's chat template when it has one (never for compact
            tasks); True / False to force it.
        prepend_bos: None: the model's default (``ModelAdapter.prepend_bos``) for plain
            text, no extra BOS inside a chat template (the template writes its own
            special tokens); True / False to force it.
        compact: Whether the task is compact style.
        single_token: Require every item to be exactly one token.

    Returns:
        Token ids ``[pos]`` (int64, CPU) and one position per item.

    Raises:
        PromptTooLongError: Beyond the model's context window.
        TokenizationError: If an item does not tokenize on its own, or a BOS is asked
            for and the tokenizer has none.
    """
    adapter = ModelAdapter(model)
    tokenizer = adapter.tokenizer
    chat_on = use_chat(tokenizer, chat, compact)
    text, start = render_chat(tokenizer, message) if chat_on else (message, 0)
    ids, offsets = encode_with_offsets(tokenizer, text)
    bos = (False if chat_on else adapter.prepend_bos) if prepend_bos is None else prepend_bos
    head: list[int] = []
    if bos:
        bos_id = getattr(tokenizer, "bos_token_id", None)
        if bos_id is None:
            raise TokenizationError(
                f"{adapter.info.name}'s tokenizer has no BOS token: pass prepend_bos=False"
            )
        head = [int(bos_id)]
    tokens = torch.tensor(head + ids, dtype=torch.int64)
    adapter.check_tokens(tokens.unsqueeze(0))
    names = [str(n) for n in tokenizer.convert_ids_to_tokens(ids)]
    positions = locate_items(
        offsets,
        [(a + start, b + start) for a, b in spans],
        single_token=single_token,
        names=names,
        text=text,
    )
    return tokens, [len(head) + p for p in positions]


def fallback_hint(
    model: Any,
    joiner: str,
    message: str,
    spans: Sequence[Span],
    *,
    chat: bool | None,
    compact: bool,
    single_token: bool,
) -> str:
    """Advice for a refused task: whether the same task with ``joiner`` tokenizes cleanly.

    ``message`` and ``spans`` are the instance rebuilt with the fallback joiner.
    """
    try:
        encode_message(
            model,
            message,
            spans,
            chat=chat,
            prepend_bos=False,
            compact=compact,
            single_token=single_token,
        )
    except TokenizationError as exc:
        return f"joiner={joiner!r} does not work either ({exc}): try a separator"
    return f"Use task.replace(joiner={joiner!r}): items tokenize on their own with it"
