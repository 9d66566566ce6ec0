"""Sequence pairs and the family interface; length, BOS and context-window checks."""

import abc
import operator
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, SupportsIndex

import torch

from .._adapter import ModelAdapter
from .._errors import EmptySequenceError, PromptTooLongError, TokenizationError
from .._types import TokenSeq
from ._layout import Layout

Lengths = Iterable[SupportsIndex]
"""Length parameters: ints (or NumPy integers), e.g. ``range(1, 101)``."""


@dataclass(frozen=True, eq=False)
class SequencePair:
    """Two token sequences whose last-token representations are compared.

    Attributes:
        k: The length parameter (items in ``a`` for most families).
        a: Token ids ``[pos]`` (int64, CPU) of A_k, including BOS if the family uses one.
        b: Token ids ``[pos]`` of B_k. Pairs from one ``pairs()`` call may share storage
            (``b`` of one pair can be a view of the same tensor as ``a`` of another):
            do not modify them in place.
        description: Short human-readable text of the two sequences.

    Example:
        >>> import torch
        >>> p = SequencePair(1, torch.tensor([5, 7]), torch.tensor([5, 7, 7]), "x vs xx")
        >>> p.b.shape
        torch.Size([3])
    """

    k: int
    a: TokenSeq
    b: TokenSeq
    description: str

    def __post_init__(self) -> None:
        for name, t in (("a", self.a), ("b", self.b)):
            if t.dtype != torch.int64 or t.ndim != 1:
                raise ValueError(
                    f"SequencePair.{name} must be int64 token ids [pos], got {t.dtype} "
                    f"with shape {tuple(t.shape)}"
                )
            if t.numel() == 0:
                raise EmptySequenceError(f"SequencePair.{name} is empty: give at least one token")


class TokenizerView:
    """A model's tokenizer, BOS choice and context window, as the families need them.

    Args:
        model: A HookedTransformer or TransformerBridge with a tokenizer.
        bos: None for the model's default (``ModelAdapter.prepend_bos``), True/False to
            force it.

    Raises:
        TokenizationError: When a BOS is wanted but the tokenizer has none.
    """

    def __init__(self, model: Any, bos: bool | None) -> None:
        adapter = ModelAdapter(model)
        self.tokenizer = adapter.tokenizer
        self.n_ctx = adapter.n_ctx
        self.model_name = adapter.info.name
        use_bos = adapter.prepend_bos if bos is None else bos
        self.bos_ids: list[int] = []
        if use_bos:
            bos_id = getattr(self.tokenizer, "bos_token_id", None)
            if bos_id is None:
                how = "the model prepends one by default" if bos is None else "bos=True"
                raise TokenizationError(
                    f"{self.model_name}'s tokenizer has no BOS token but {how}; pass "
                    "bos=False (or give token ids that start with the token you want)"
                )
            self.bos_ids = [int(bos_id)]
        self._memo: dict[str, list[int]] = {}

    @property
    def bos_label(self) -> str:
        """``"[BOS] "`` when a BOS is prepended, else ``""`` (for descriptions)."""
        return "[BOS] " if self.bos_ids else ""

    def tokenize(self, text: str) -> list[int]:
        """Ids of ``text`` without special tokens, memoized for this view."""
        if text not in self._memo:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            self._memo[text] = [int(i) for i in ids]
        return self._memo[text]

    def names(self, ids: Sequence[int]) -> list[str]:
        """Token strings of ``ids``."""
        return [str(s) for s in self.tokenizer.convert_ids_to_tokens([int(i) for i in ids])]

    def tensor(self, ids: Sequence[int]) -> TokenSeq:
        """BOS (if any) + ``ids`` as an int64 CPU tensor."""
        return torch.tensor(self.bos_ids + list(ids), dtype=torch.int64)


def check_lengths(lengths: Any, min_k: int) -> list[int]:
    """Validate length parameters: a non-empty iterable of ints ``>= min_k``.

    Raises:
        EmptySequenceError: If ``lengths`` is empty.
        TypeError: For a non-integer (floats and bools are refused).
        ValueError: For an integer below ``min_k``.

    Example:
        >>> check_lengths(range(1, 4), 1)
        [1, 2, 3]
    """
    if isinstance(lengths, (str, bytes)) or not isinstance(lengths, Iterable):
        raise TypeError(
            f"lengths must be an iterable of ints (e.g. range(1, 101)), got {lengths!r}"
        )
    ks: list[int] = []
    for k in lengths:
        if isinstance(k, bool):
            raise TypeError(f"lengths must be ints, got {k!r}")
        try:
            ks.append(operator.index(k))
        except TypeError:
            raise TypeError(f"lengths must be ints, got {k!r} ({type(k).__name__})") from None
    if not ks:
        raise EmptySequenceError("lengths is empty: give at least one length, e.g. range(1, 101)")
    low = min(ks)
    if low < min_k:
        raise ValueError(f"length {low} is too small: this family needs lengths >= {min_k}")
    return ks


def max_fitting(n_tokens: Callable[[int], int], n_ctx: int, min_k: int) -> int | None:
    """Largest ``k >= min_k`` with ``n_tokens(k) <= n_ctx`` (``n_tokens`` non-decreasing).

    Example:
        >>> max_fitting(lambda k: 3 + 2 * k, 10, 1)
        3
    """
    if n_tokens(min_k) > n_ctx:
        return None
    lo, hi = min_k, min_k + 1
    for _ in range(64):  # n_tokens grows by >= 1 per item, so this stops long before
        if n_tokens(hi) > n_ctx:
            break
        lo, hi = hi, 2 * hi
    else:
        raise ValueError("n_tokens never exceeds n_ctx: there is no largest length")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if n_tokens(mid) <= n_ctx else (lo, mid)
    return lo


class SequenceFamily(abc.ABC):
    """A parametrized pair of sequences (A_k, B_k), built from a model's tokenizer.

    Subclasses implement :meth:`pairs` and :meth:`describe`; :meth:`pair` is one length.
    """

    name: ClassVar[str]
    min_k: ClassVar[int] = 1

    @property
    def a_prefix_of_b(self) -> bool:
        """True when, by construction, A_k is a prefix of B_k for every k.

        Then one forward pass over B_k gives the last-token states of both (causal
        mask). False means not guaranteed (it may still hold for some tokenizers).
        """
        return False

    @property
    def nested(self) -> bool:
        """True when A_k is a prefix of B_k and B_k equals A_{k+1} for every k.

        Then every pair's last tokens lie in the longest B_k: one forward pass serves
        all lengths, at positions ``len(a) - 1`` and ``len(b) - 1``.
        """
        return False

    def pair(self, model: Any, k: SupportsIndex) -> SequencePair:
        """The pair for one length ``k`` (see :meth:`pairs` for errors)."""
        return self.pairs(model, [k])[0]

    @abc.abstractmethod
    def pairs(self, model: Any, lengths: Lengths | None = None) -> list[SequencePair]:
        """One pair per length, in the order given.

        Raises:
            EmptySequenceError: For empty ``lengths``.
            PromptTooLongError: When a sequence exceeds the model's ``n_ctx``.
            TokenizationError: When an item is not exactly one token in context.
        """

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON-able parameters of the family (for provenance)."""


class LayoutEntry:
    """Per-tokenizer state: the probed layout and the lengths already verified."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.verified: set[int] = set()


class LayoutCache:
    """Layouts per tokenizer object (weakly keyed, so tokenizers can be freed)."""

    def __init__(self) -> None:
        self._entries: weakref.WeakKeyDictionary[Any, LayoutEntry] = weakref.WeakKeyDictionary()

    def get(self, tokenizer: Any, probe: Callable[[], Layout]) -> LayoutEntry:
        """The cached entry for ``tokenizer``, probing on first use."""
        entry = self._entries.get(tokenizer)
        if entry is None:
            entry = LayoutEntry(probe())
            self._entries[tokenizer] = entry
        return entry


def refuse_too_long(view: TokenizerView, k: int, n: int, hint: str) -> PromptTooLongError:
    """The error for B_k of ``n`` tokens at length ``k``, beyond the context window."""
    return PromptTooLongError(
        f"length k={k}: B_k has {n} tokens but {view.model_name} has a context window of "
        f"n_ctx={view.n_ctx}; {hint}"
    )


def short(text: str, n: int = 24) -> str:
    """``repr`` of ``text``, cut to about ``n`` characters."""
    return repr(text if len(text) <= n else text[: n - 1] + "…")
