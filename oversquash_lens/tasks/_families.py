"""Families that count items: repeated last item, fixed final item, separators.

Text layout (all three): ``prefix + (joiner + item) × m``; the joiner goes before
*every* item, the first included, so every item has the same in-context tokens (with
``joiner=" "`` and a prefix ending in "?" the text reads ``"…? 1 1 1"``). The prefix is
used verbatim: see :mod:`oversquash_lens.tasks._prompts` for why the prompt constants
carry no trailing space.
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from .._types import TokenSeq
from ._base import LayoutCache, TokenizerView, short
from ._layout import Layout, Unit
from ._units import CountFamily, UnitFamily, stream, unit_text

_SHOW_UP_TO = 12  # descriptions spell out sequences of at most this many items


def _check_text(value: object, name: str, *, empty_ok: bool) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {value!r}")
    if not empty_ok and value == "":
        raise ValueError(f"{name} must be a non-empty string")


def _check_common(family: UnitFamily) -> None:
    _check_text(family.prefix, "prefix", empty_ok=True)
    _check_text(family.joiner, "joiner", empty_ok=True)
    if family.bos is not None and not isinstance(family.bos, bool):
        raise TypeError(f"bos must be None (model default), True or False, got {family.bos!r}")


def _lead(view: TokenizerView, prefix: str) -> str:
    return view.bos_label + (f"{short(prefix)} + " if prefix else "")


@dataclass(frozen=True)
class RepeatedLast(CountFamily):
    """A_k = [BOS] + prefix + item × k, B_k = … × (k + 1): the repeated item ends the input.

    The construction of Thm 4.2 (Fig 5a/5c): B_k is A_k with its last item repeated,
    and A_k is a prefix of B_k. Build it with :func:`repeated_last` or :func:`ones`.
    """

    item: str = "1"
    prefix: str = ""
    bos: bool | None = None
    joiner: str = ""
    _cache: LayoutCache = field(default_factory=LayoutCache, init=False, repr=False, compare=False)
    name: ClassVar[str] = "repeated_last"

    def __post_init__(self) -> None:
        _check_text(self.item, "item", empty_ok=False)
        _check_common(self)

    @property
    def a_prefix_of_b(self) -> bool:
        """Always True: B_k is A_k plus one more item."""
        return True

    @property
    def nested(self) -> bool:
        """Always True: B_k = A_{k+1}, one sequence serves all lengths."""
        return True

    def _probes(self) -> list[list[Unit]]:
        return [[self._unit(self.item)] * 3]

    def _units(self, m: int) -> list[Unit]:
        return [self._unit(self.item)] * m

    def _n_tokens(self, layout: Layout, m: int) -> int:
        return len(layout.head) + m * len(layout.units[self._unit(self.item)])

    def _seqs(self, view: TokenizerView, layout: Layout, ms: list[int]) -> dict[int, TokenSeq]:
        t, offsets = stream(layout, self._units(ms[-1]), view.bos_ids + list(layout.head))
        return {m: t[: offsets[m]] for m in ms}

    def _describe_k(self, view: TokenizerView, k: int) -> str:
        lead, unit = _lead(view, self.prefix), repr(self.joiner + self.item)
        return f"{lead}{unit}×{k} vs {lead}{unit}×{k + 1}"

    def describe(self) -> dict[str, Any]:
        """JSON-able parameters.

        Example:
            >>> repeated_last("1", prefix="Q:").describe()["prefix"]
            'Q:'
        """
        return {**self._base_description(), "item": self.item}


@dataclass(frozen=True)
class FixedFinal(CountFamily):
    """A_k = prefix + item × k + final, B_k = prefix + item × (k + 1) + final (Fig 1a).

    The extra item sits before a fixed final token, so the last token is the same
    in both. ``k = 0`` is allowed (A_0 = prefix + final). Build with :func:`fixed_final`.
    """

    item: str = "1"
    final: str = "0"
    prefix: str = ""
    bos: bool | None = None
    joiner: str = ""
    _cache: LayoutCache = field(default_factory=LayoutCache, init=False, repr=False, compare=False)
    name: ClassVar[str] = "fixed_final"
    min_k: ClassVar[int] = 0

    def __post_init__(self) -> None:
        _check_text(self.item, "item", empty_ok=False)
        _check_text(self.final, "final", empty_ok=False)
        _check_common(self)

    def _probes(self) -> list[list[Unit]]:
        u, f = self._unit(self.item), self._unit(self.final)
        return [[f], [u, u, u, f]]

    def _units(self, m: int) -> list[Unit]:
        return [self._unit(self.item)] * m + [self._unit(self.final)]

    def _n_tokens(self, layout: Layout, m: int) -> int:
        u, f = layout.units[self._unit(self.item)], layout.units[self._unit(self.final)]
        return len(layout.head) + m * len(u) + len(f)

    def _seqs(self, view: TokenizerView, layout: Layout, ms: list[int]) -> dict[int, TokenSeq]:
        run = [self._unit(self.item)] * ms[-1]
        t, offsets = stream(layout, run, view.bos_ids + list(layout.head))
        final = torch.tensor(layout.units[self._unit(self.final)], dtype=torch.int64)
        return {m: torch.cat([t[: offsets[m]], final]) for m in ms}

    def _describe_k(self, view: TokenizerView, k: int) -> str:
        lead, unit = _lead(view, self.prefix), repr(self.joiner + self.item)
        end = repr(self.joiner + self.final)
        return f"{lead}{unit}×{k} + {end} vs {lead}{unit}×{k + 1} + {end}"

    def describe(self) -> dict[str, Any]:
        """JSON-able parameters.

        Example:
            >>> fixed_final("1", "0").describe()["final"]
            '0'
        """
        return {**self._base_description(), "item": self.item, "final": self.final}


@dataclass(frozen=True)
class Separated(CountFamily):
    """Repeated items with a separator every ``every`` items (Fig 5d).

    ``group="left"`` fills groups from the start ("111,111,1"; A_k is a prefix of B_k);
    ``group="right"`` groups like thousands ("1,111,111"; separators move as k grows,
    so A_k is not a prefix of B_k, but B_k is still A_{k+1}). Build with
    :func:`separated`.
    """

    item: str = "1"
    every: int = 3
    separator: str = ","
    group: str = "left"
    prefix: str = ""
    bos: bool | None = None
    joiner: str = ""
    _cache: LayoutCache = field(default_factory=LayoutCache, init=False, repr=False, compare=False)
    name: ClassVar[str] = "separated"

    def __post_init__(self) -> None:
        _check_text(self.item, "item", empty_ok=False)
        _check_text(self.separator, "separator", empty_ok=False)
        _check_common(self)
        for name, glue in (("separator", self.separator), ("joiner", self.joiner)):
            if self.item in glue:
                raise ValueError(
                    f"{name} {glue!r} contains the repeated item {self.item!r}: the sequence "
                    f"would hold more items than its length k says; choose another {name}"
                )
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"every must be an int >= 1 (items per group), got {self.every!r}")
        if self.group not in ("left", "right"):
            raise ValueError(
                f"group must be 'left' ('111,111,1') or 'right' ('1,111,111'), got {self.group!r}"
            )

    @property
    def a_prefix_of_b(self) -> bool:
        """True for left grouping (separators never move), False for right."""
        return self.group == "left"

    @property
    def nested(self) -> bool:
        """True for left grouping: B_k = A_{k+1} and A_k is a prefix of B_k."""
        return self.group == "left"

    @property
    def _u(self) -> Unit:
        return self._unit(self.item)

    @property
    def _s(self) -> Unit:
        return self._unit(self.item, glue=self.separator)

    def _probes(self) -> list[list[Unit]]:
        u, s = self._u, self._s
        return [[u, s, s]] if self.every == 1 else [[u, u, s, u]]

    def _units(self, m: int) -> list[Unit]:
        if self.group == "left":
            return [self._s if i and i % self.every == 0 else self._u for i in range(m)]
        return [self._s if i and (m - i) % self.every == 0 else self._u for i in range(m)]

    def _n_tokens(self, layout: Layout, m: int) -> int:
        u, s = len(layout.units[self._u]), len(layout.units[self._s])
        n_sep = (m - 1) // self.every if m else 0
        return len(layout.head) + m * u + n_sep * (s - u)

    def _seqs(self, view: TokenizerView, layout: Layout, ms: list[int]) -> dict[int, TokenSeq]:
        start = view.bos_ids + list(layout.head)
        if self.group == "left":
            t, offsets = stream(layout, self._units(ms[-1]), start)
            return {m: t[: offsets[m]] for m in ms}
        # right: a first group of 1..every items, then whole groups "S U^(every-1)"
        u_run, _ = stream(layout, [self._u] * self.every, [])
        n_groups = (ms[-1] - 1) // self.every
        group = [self._s] + [self._u] * (self.every - 1)
        blocks, block_end = stream(layout, group * n_groups, [])
        head = torch.tensor(start, dtype=torch.int64)
        u_len = len(layout.units[self._u])
        out = {}
        for m in ms:
            g = (m - 1) // self.every
            first = m - g * self.every
            out[m] = torch.cat([head, u_run[: first * u_len], blocks[: block_end[g * self.every]]])
        return out

    def verified_lengths(self, ks: list[int]) -> list[int]:
        """Smallest, median and largest k, plus group boundaries where requested.

        The boundaries: the first k whose B_k has a separator (k >= every), and the
        first k with k ≡ 0 and with k ≡ every − 1 (mod every).
        """
        chosen = set(super().verified_lengths(ks))
        ordered = sorted(set(ks))
        for keep in (
            lambda k: k >= self.every,
            lambda k: k % self.every == 0,
            lambda k: k % self.every == self.every - 1,
        ):
            hit = next((k for k in ordered if keep(k)), None)
            if hit is not None:
                chosen.add(hit)
        return sorted(chosen)

    def _describe_k(self, view: TokenizerView, k: int) -> str:
        lead = _lead(view, self.prefix)
        if k + 1 <= _SHOW_UP_TO:
            a, b = unit_text("", self._units(k)), unit_text("", self._units(k + 1))
            return f"{lead}{a!r} vs {lead}{b!r}"
        unit = repr(self.joiner + self.item)
        how = f"{self.separator!r} every {self.every} from the {self.group}"
        return f"{lead}{unit}×{k} vs ×{k + 1}, {how}"

    def describe(self) -> dict[str, Any]:
        """JSON-able parameters.

        Example:
            >>> separated(every=3, group="right").describe()["group"]
            'right'
        """
        return {
            **self._base_description(),
            "item": self.item,
            "every": self.every,
            "separator": self.separator,
            "group": self.group,
        }


def repeated_last(
    item: str = "1", *, prefix: str = "", bos: bool | None = None, joiner: str = ""
) -> RepeatedLast:
    """Prefix + item × k vs prefix + item × (k + 1): the repeated item ends the input.

    Args:
        item: Text of one item; must be exactly one token in context.
        prefix: Prompt text before the items, used verbatim (no space is added).
        bos: None for the model's default (``ModelAdapter(model).prepend_bos``),
            True/False to force the tokenizer's BOS token on or off.
        joiner: Text before every item, the first included (``" "`` spaces the items
            for tokenizers that merge "11" into one token).

    Returns:
        The family; ``pairs(model, lengths)`` builds the token ids.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-gpt2")
        >>> p = repeated_last("1", prefix="Count:").pair(model, 3)
        >>> model.to_str_tokens(p.b)
        ['<|endoftext|>', 'Count', ':', '1', '1', '1', '1']
        >>> p.description
        "[BOS] 'Count:' + '1'×3 vs [BOS] 'Count:' + '1'×4"
    """
    return RepeatedLast(item=item, prefix=prefix, bos=bos, joiner=joiner)


def ones(*, prefix: str = "", bos: bool | None = None, joiner: str = "") -> RepeatedLast:
    """``repeated_last("1", ...)``: ones ending the input (Fig 5a).

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-gpt2")
        >>> p = ones(prefix="How many ones?", bos=False).pair(model, 2)
        >>> p.a[-2:].tolist(), p.b[-3:].tolist()
        ([18, 18], [18, 18, 18])
    """
    return repeated_last("1", prefix=prefix, bos=bos, joiner=joiner)


def fixed_final(
    item: str = "1",
    final: str = "0",
    *,
    prefix: str = "",
    bos: bool | None = None,
    joiner: str = "",
) -> FixedFinal:
    """Prefix + item × k + final vs prefix + item × (k + 1) + final (Fig 1a).

    Args:
        item: The repeated item (one token in context).
        final: The fixed last item (one token in context).
        prefix: Prompt text before the items, used verbatim.
        bos: None for the model's default, True/False to force it.
        joiner: Text before every item and before the final one.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-gpt2")
        >>> p = fixed_final("1", "0", bos=False).pair(model, 2)
        >>> model.to_str_tokens(p.a), model.to_str_tokens(p.b)
        (['1', '1', '0'], ['1', '1', '1', '0'])
    """
    return FixedFinal(item=item, final=final, prefix=prefix, bos=bos, joiner=joiner)


def separated(
    item: str = "1",
    *,
    every: int = 3,
    separator: str = ",",
    group: str = "left",
    prefix: str = "",
    bos: bool | None = None,
    joiner: str = "",
) -> Separated:
    """Repeated items with a separator every ``every`` items (Fig 5d).

    Args:
        item: The repeated item (one token in context).
        every: Items per group.
        separator: Text between groups (before the joiner of the next item).
        group: ``"left"`` groups from the start ("111,111,1", A_k a prefix of B_k);
            ``"right"`` from the end like thousands ("1,111,111").
        prefix: Prompt text before the items, used verbatim.
        bos: None for the model's default, True/False to force it.
        joiner: Text before every item.

    Raises:
        ValueError: For ``every < 1``, an empty separator or another ``group``.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-gpt2")
        >>> separated(group="right", bos=False).pair(model, 6).description
        "'111,111' vs '1,111,111'"
    """
    return Separated(
        item=item,
        every=every,
        separator=separator,
        group=group,
        prefix=prefix,
        bos=bos,
        joiner=joiner,
    )
