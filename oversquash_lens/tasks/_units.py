"""Shared machinery of the families built from units (``prefix + (glue + item)*``).

``pairs()`` does, in order: validate the lengths, resolve BOS, probe (or reuse) the
tokenizer layout, refuse lengths beyond ``n_ctx`` before building anything, build the
tensors from the layout, and compare a few of them with real tokenizations of the
whole string (see :meth:`UnitFamily.verified_lengths`).
"""

import abc
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from .._types import TokenSeq
from ._base import (
    LayoutCache,
    LayoutEntry,
    Lengths,
    SequenceFamily,
    SequencePair,
    TokenizerView,
    check_lengths,
    max_fitting,
    refuse_too_long,
)
from ._layout import Layout, Unit, check_assembly, probe_layout


def unit_text(prefix: str, units: Iterable[Unit]) -> str:
    """The text of ``prefix`` followed by ``units``."""
    return prefix + "".join(glue + item for glue, item in units)


def stream(
    layout: Layout, units: Sequence[Unit], start: Sequence[int]
) -> tuple[TokenSeq, list[int]]:
    """``start`` + the ids of ``units`` as one tensor, with the end offset after each unit.

    ``offsets[m]`` is the number of tokens in ``start`` plus the first ``m`` units, so
    ``tensor[:offsets[m]]`` is the sequence of the first ``m`` units (a view).

    Example:
        >>> layout = Layout(head=(), units={("", "1"): (7,)})
        >>> t, offsets = stream(layout, [("", "1")] * 3, [0])
        >>> t.tolist(), offsets
        ([0, 7, 7, 7], [1, 2, 3, 4])
    """
    ids = list(start)
    offsets = [len(ids)]
    for unit in units:
        ids.extend(layout.units[unit])
        offsets.append(len(ids))
    return torch.tensor(ids, dtype=torch.int64), offsets


class UnitFamily(SequenceFamily):
    """A family whose sequences are a prefix followed by units (see module docstring).

    Subclasses are frozen dataclasses with fields ``prefix``, ``bos``, ``joiner`` and a
    ``_cache`` (:class:`LayoutCache`), and implement the hooks below.
    """

    prefix: str
    bos: bool | None
    joiner: str
    _cache: LayoutCache

    # -------------------------------------------------------------- subclass hooks
    @abc.abstractmethod
    def _probes(self) -> list[list[Unit]]:
        """Unit sequences covering every transition the family produces."""

    @abc.abstractmethod
    def _min_len_b(self, layout: Layout, k: int) -> int:
        """Tokens of B_k without BOS: exact, or a lower bound where items vary."""

    @abc.abstractmethod
    def _make(
        self, view: TokenizerView, layout: Layout, ks: list[int]
    ) -> list[tuple[TokenSeq, TokenSeq]]:
        """``(A_k, B_k)`` tensors (with BOS) for each k, fast."""

    @abc.abstractmethod
    def _texts(self, k: int) -> tuple[str, str]:
        """The strings of A_k and B_k (no BOS): the reference for verification."""

    @abc.abstractmethod
    def _describe_k(self, view: TokenizerView, k: int) -> str:
        """Short human text of the pair at length k."""

    def verified_lengths(self, ks: list[int]) -> list[int]:
        """Lengths whose A_k and B_k are checked against a whole-string tokenization.

        The smallest, the largest and the median requested length. Every piece and
        every transition between pieces has already been checked on the probe, so
        these catch tokenizers whose output depends on longer-range context.
        """
        ordered = sorted(set(ks))
        return sorted({ordered[0], ordered[len(ordered) // 2], ordered[-1]})

    # -------------------------------------------------------------- shared logic
    def _unit(self, item: str, glue: str = "") -> Unit:
        return (glue + self.joiner, item)

    def layout(self, model: Any) -> Layout:
        """The probed token layout of this family for ``model``'s tokenizer (cached).

        Raises:
            TokenizationError: If an item splits or merges in context.
        """
        return self._entry(TokenizerView(model, self.bos)).layout

    def _entry(self, view: TokenizerView) -> LayoutEntry:
        return self._cache.get(
            view.tokenizer,
            lambda: probe_layout(view.tokenize, view.names, self.prefix, self._probes()),
        )

    def pairs(self, model: Any, lengths: Lengths | None = None) -> list[SequencePair]:
        """One pair per length, in the order given.

        Args:
            model: A HookedTransformer or TransformerBridge with a tokenizer.
            lengths: Length parameters k (ints ``>= min_k``), e.g. ``range(1, 101)``.

        Returns:
            ``SequencePair(k, A_k, B_k, description)`` for each k; token ids on the CPU.

        Raises:
            ValueError: If ``lengths`` is None.
            EmptySequenceError: For empty ``lengths``.
            PromptTooLongError: When B_k (the longer one) exceeds the model's ``n_ctx``.
            TokenizationError: When an item is not exactly one token in context.
        """
        if lengths is None:
            raise ValueError(f"{self.name} needs lengths, e.g. pairs(model, range(1, 101))")
        ks = check_lengths(lengths, self.min_k)
        view = TokenizerView(model, self.bos)
        entry = self._entry(view)
        layout = entry.layout
        n_bos = len(view.bos_ids)

        def n_b(k: int) -> int:
            return n_bos + self._min_len_b(layout, k)

        too_long = [k for k in ks if n_b(k) > view.n_ctx]
        if too_long:
            k = min(too_long)
            fits = max_fitting(n_b, view.n_ctx, self.min_k)
            hint = "no length fits: shorten the prefix" if fits is None else ""
            raise refuse_too_long(view, k, n_b(k), hint or f"choose lengths up to {fits}")
        built = self._make(view, layout, ks)
        for k, (_, b) in zip(ks, built, strict=True):
            if b.numel() > view.n_ctx:  # only where _min_len_b is a lower bound
                raise refuse_too_long(view, k, b.numel(), "choose shorter lengths")
        index = {k: i for i, k in enumerate(ks)}
        for k in self.verified_lengths(ks):
            if k in entry.verified:
                continue
            a, b = built[index[k]]
            for label, text, ids in zip(("A", "B"), self._texts(k), (a, b), strict=True):
                check_assembly(
                    view.tokenize, view.names, text, ids[n_bos:].tolist(), f"{label}_{k}"
                )
            entry.verified.add(k)
        return [
            SequencePair(k, a, b, self._describe_k(view, k))
            for k, (a, b) in zip(ks, built, strict=True)
        ]

    def _base_description(self) -> dict[str, Any]:
        return {"family": self.name, "prefix": self.prefix, "bos": self.bos, "joiner": self.joiner}


class CountFamily(UnitFamily):
    """A family where A_k has k counted items and B_k is the same with k + 1.

    Subclasses define the unit list of a sequence with ``m`` items (:meth:`_units`),
    its token count and a fast builder (:meth:`_seqs`).
    """

    @abc.abstractmethod
    def _units(self, m: int) -> list[Unit]:
        """Units of the sequence with ``m`` counted items (A_k: m = k, B_k: m = k + 1)."""

    @abc.abstractmethod
    def _n_tokens(self, layout: Layout, m: int) -> int:
        """Exact tokens (no BOS) of the sequence with ``m`` items."""

    @abc.abstractmethod
    def _seqs(self, view: TokenizerView, layout: Layout, ms: list[int]) -> dict[int, TokenSeq]:
        """Tensors (with BOS) of the sequences with each ``m`` in ``ms`` (sorted)."""

    def _min_len_b(self, layout: Layout, k: int) -> int:
        return self._n_tokens(layout, k + 1)

    def _texts(self, k: int) -> tuple[str, str]:
        return unit_text(self.prefix, self._units(k)), unit_text(self.prefix, self._units(k + 1))

    def _make(
        self, view: TokenizerView, layout: Layout, ks: list[int]
    ) -> list[tuple[TokenSeq, TokenSeq]]:
        seqs = self._seqs(view, layout, sorted(set(ks) | {k + 1 for k in ks}))
        return [(seqs[k], seqs[k + 1]) for k in ks]

    def reference_ids(self, model: Any, m: int) -> list[int]:
        """Slow reference: BOS + ids of the sequence with ``m`` items, unit by unit."""
        view = TokenizerView(model, self.bos)
        return view.bos_ids + self._entry(view).layout.ids(self._units(m))
