"""A fixed pair of user sequences (strings or token ids) as a one-member family."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .._adapter import ModelAdapter
from .._errors import EmptySequenceError, PromptTooLongError
from .._types import TokenSeq
from ._base import Lengths, SequenceFamily, SequencePair, TokenizerView, check_lengths, short

Text = str | tuple[int, ...]


def _as_text(value: object, name: str) -> Text:
    if isinstance(value, str):
        return value
    if isinstance(value, torch.Tensor):
        if value.ndim != 1 or value.is_floating_point():
            raise ValueError(f"{name}: token ids must be a 1-D integer tensor [pos]")
        return tuple(int(i) for i in value.tolist())
    if isinstance(value, Sequence) and all(
        isinstance(i, int) and not isinstance(i, bool) for i in value
    ):
        return tuple(int(i) for i in value)
    raise TypeError(f"{name} must be a string or a list of token ids, got {value!r}")


class _IdsView:
    """What a pair of token-id sequences needs of a model: its context and vocabulary.

    Token ids are used as given, so a model without a tokenizer works too.
    """

    def __init__(self, model: Any) -> None:
        adapter = ModelAdapter(model)
        self.n_ctx, self.model_name, self.bos_label = adapter.n_ctx, adapter.info.name, ""
        self._adapter = adapter

    def check(self, ids: TokenSeq) -> None:
        """Ids outside the vocabulary are refused (see ``ModelAdapter.check_tokens``)."""
        if ids.numel() <= self.n_ctx:
            self._adapter.check_tokens(ids[None])


def _label(view: "TokenizerView | _IdsView", value: Text) -> str:
    if isinstance(value, str):
        return view.bos_label + short(value)
    return f"{len(value)} given token ids"


@dataclass(frozen=True)
class PairFamily(SequenceFamily):
    """Two fixed sequences; the length parameter only labels the pair.

    Strings are tokenized with the model's tokenizer (no special tokens) and get a BOS
    according to ``bos``; token ids are used exactly as given. ``pairs(model)`` (no
    lengths) returns one pair with ``k = 0``; ``pairs(model, [k])`` labels it ``k``;
    several lengths are refused, since repeating one pair would draw a flat curve.
    Build with :func:`pair`.
    """

    a: Text
    b: Text
    bos: bool | None = None
    name: ClassVar[str] = "pair"
    min_k: ClassVar[int] = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "a", _as_text(self.a, "a"))
        object.__setattr__(self, "b", _as_text(self.b, "b"))
        if self.bos is not None and not isinstance(self.bos, bool):
            raise TypeError(f"bos must be None, True or False, got {self.bos!r}")
        if self.bos is not None and not (isinstance(self.a, str) or isinstance(self.b, str)):
            raise ValueError(
                "bos only applies to strings; token ids are used as given (include the BOS "
                "id yourself)"
            )
        for name, value in (("a", self.a), ("b", self.b)):
            if len(value) == 0:
                raise EmptySequenceError(f"{name} is empty: give at least one token of text")

    def _ids(self, view: "TokenizerView | _IdsView", value: Text, name: str) -> TokenSeq:
        if isinstance(value, str):
            assert isinstance(view, TokenizerView)  # strings always get a tokenizer view
            ids = view.tensor(view.tokenize(value))
        else:
            ids = torch.tensor(value, dtype=torch.int64)
            if isinstance(view, _IdsView):
                view.check(ids)
        if ids.numel() > view.n_ctx:
            raise PromptTooLongError(
                f"sequence {name} has {ids.numel()} tokens but {view.model_name} has a context "
                f"window of n_ctx={view.n_ctx}; shorten it"
            )
        return ids

    def pairs(self, model: Any, lengths: Lengths | None = None) -> list[SequencePair]:
        """The pair, labelled ``k = 0`` (``lengths=None``) or with the single length given.

        Raises:
            ValueError: For more than one length.
            PromptTooLongError: When a sequence exceeds the model's ``n_ctx``.
            TokenizationError: When a BOS is wanted but the tokenizer has none.

        Example:
            >>> import oversquash_lens as osl
            >>> model = osl.load_model("tiny-gpt2")
            >>> [p.k for p in pair("10", "110").pairs(model)]
            [0]
        """
        ks = [0] if lengths is None else check_lengths(lengths, self.min_k)
        if len(ks) != 1:
            raise ValueError(
                f"a fixed pair has no length parameter; got {len(ks)} lengths. Call "
                "pairs(model) (k=0) or pair(model, k) to label it"
            )
        texts = isinstance(self.a, str) or isinstance(self.b, str)
        view = TokenizerView(model, self.bos) if texts else _IdsView(model)
        a, b = self._ids(view, self.a, "a"), self._ids(view, self.b, "b")
        text = f"{_label(view, self.a)} vs {_label(view, self.b)}"
        return [SequencePair(ks[0], a, b, text)]

    def describe(self) -> dict[str, Any]:
        """JSON-able parameters (token ids as lists).

        Example:
            >>> pair([1, 2], [1, 2, 2]).describe()
            {'family': 'pair', 'a': [1, 2], 'b': [1, 2, 2], 'bos': None}
        """

        def plain(v: Text) -> str | list[int]:
            return v if isinstance(v, str) else list(v)

        return {"family": self.name, "a": plain(self.a), "b": plain(self.b), "bos": self.bos}


def pair(
    a: str | Sequence[int] | TokenSeq, b: str | Sequence[int] | TokenSeq, *, bos: bool | None = None
) -> PairFamily:
    """Any two sequences as a family: strings (tokenized per model) or token ids.

    Args:
        a: First sequence: a string, or token ids (list or 1-D tensor) used verbatim.
        b: Second sequence.
        bos: For strings: None for the model's default, True/False to force it. Token
            ids never get a BOS added (passing ``bos`` with two id lists is an error).

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-gpt2")
        >>> p = pair("10", "110", bos=False).pair(model, 7)
        >>> p.k, p.a.tolist(), p.b.tolist()
        (7, [18, 17], [18, 18, 17])
    """
    return PairFamily(a=_as_text(a, "a"), b=_as_text(b, "b"), bos=bos)
