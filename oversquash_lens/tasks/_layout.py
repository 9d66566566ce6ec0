"""How a family's text splits into tokens, found by probing a tokenizer (no model).

A family's text is ``prefix + unit + unit + ...`` where each unit is ``glue + item``
(glue: an optional separator, then the joiner). Token ids are assembled from the
in-context ids of the prefix and of each distinct unit, so a 2,000-item sequence costs
list arithmetic, not a tokenizer call. That is only valid when the tokenizer treats the
pieces independently, which :func:`probe_layout` checks by *prefix differencing*:
tokenizing ``text`` and ``text + unit`` must give ids where the first is a prefix of the
second (otherwise the unit merges with what precedes it), the item's part of the new
ids must be exactly one token, and a unit must get the same ids after every
predecessor it can follow. :func:`check_assembly` then compares assembled ids with a
real tokenization of the whole string.

Limitations: layouts are cached per tokenizer object, so a tokenizer changed in place
(added tokens) needs a new family. SentencePiece tokenizers that add a dummy space at
the start of the text (Llama 2 style: ``"1"`` → ``["▁", "1"]``) make the first item two
tokens when the prefix is empty; give a non-empty prefix there.
"""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .._errors import TokenizationError

Unit = tuple[str, str]
"""``(glue, item)``: the text before an item (separator + joiner, may be empty), then it."""

Tokenize = Callable[[str], list[int]]
"""Text to token ids, without special tokens."""

TokenNames = Callable[[Sequence[int]], list[str]]
"""Token ids to readable token strings, for error messages."""

_SPACING_HINT = (
    "separate the items (e.g. joiner=' ', or a separator) or choose another item "
    "(a single digit or a common word)"
)


@dataclass(frozen=True)
class Layout:
    """In-context token ids of a family's pieces, for one tokenizer.

    Attributes:
        head: Ids of the prefix (no BOS).
        units: Ids of each unit wherever it occurs (glue tokens, then one item token).
    """

    head: tuple[int, ...]
    units: dict[Unit, tuple[int, ...]]

    def ids(self, units: Iterable[Unit]) -> list[int]:
        """Ids of ``prefix + units`` (no BOS), assembled from the pieces."""
        out = list(self.head)
        for unit in units:
            out.extend(self.units[unit])
        return out


def _tail(text: str, n: int = 24) -> str:
    return text if len(text) <= n else "…" + text[-n:]


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading entries ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def probe_layout(
    tokenize: Tokenize,
    names: TokenNames,
    prefix: str,
    probes: Iterable[Sequence[Unit]],
) -> Layout:
    """Find the in-context ids of ``prefix`` and of every unit in ``probes``.

    Args:
        tokenize: Text to ids without special tokens (memoized by the caller if wanted).
        names: Ids to token strings, used in error messages.
        prefix: Text before the first unit.
        probes: Unit sequences that follow the prefix; together they must contain every
            transition (prefix → unit, unit → unit) the family can produce.

    Returns:
        The layout: prefix ids and one id tuple per unit.

    Raises:
        TokenizationError: If a unit merges with the text before it, an item is not
            exactly one token, or a unit's ids depend on what precedes it.

    Example:
        >>> vocab = {"a": 1, "1": 2, " ": 3}
        >>> layout = probe_layout(lambda s: [vocab[c] for c in s], str, "a", [[(" ", "1")] * 3])
        >>> layout.head, layout.units
        ((1,), {(' ', '1'): (3, 2)})
    """
    head = tuple(tokenize(prefix)) if prefix else ()
    units: dict[Unit, tuple[int, ...]] = {}
    seen_after: dict[Unit, str] = {}
    for probe in probes:
        text, ids, before = prefix, list(head), "the prefix"
        for glue, item in probe:
            full_text = text + glue + item
            full = tokenize(full_text)
            if full[: len(ids)] != ids:
                keep = common_prefix_len(ids, full)
                where = (
                    "the end of the prefix; end the prefix without trailing whitespace "
                    "(or with '\\n')"
                    if before == "the prefix"
                    else f"the item before it ({before}); {_SPACING_HINT}"
                )
                raise TokenizationError(
                    f"item {item!r} (after glue {glue!r}) merges with {where}. Tokenizing "
                    f"{_tail(full_text)!r} gives {names(full[keep:])} where the text before "
                    f"the item alone gives {names(ids[keep:])}"
                )
            glue_ids = tokenize(text + glue) if glue else ids
            start = max(common_prefix_len(glue_ids, full), len(ids))
            item_ids = full[start:]
            if len(item_ids) != 1:
                raise TokenizationError(
                    f"item {item!r} is {len(item_ids)} tokens in context, not one: after "
                    f"{_tail(text + glue)!r} it tokenizes as {names(item_ids)}; {_SPACING_HINT}"
                )
            new = tuple(full[len(ids) :])
            unit = (glue, item)
            if unit in units and units[unit] != new:
                raise TokenizationError(
                    f"item {item!r} (after glue {glue!r}) tokenizes as {names(units[unit])} "
                    f"after {seen_after[unit]} but as {names(new)} after {before}; the "
                    f"sequence cannot be built from pieces; {_SPACING_HINT}"
                )
            units.setdefault(unit, new)
            seen_after.setdefault(unit, before)
            text, ids, before = full_text, full, f"item {item!r}"
    return Layout(head=head, units=units)


def check_assembly(
    tokenize: Tokenize, names: TokenNames, text: str, assembled: Sequence[int], label: str
) -> None:
    """Compare assembled ids with a real tokenization of the whole string.

    Args:
        tokenize: Text to ids without special tokens.
        names: Ids to token strings, used in error messages.
        text: The full text (no BOS).
        assembled: Ids built from the pieces (no BOS).
        label: Which sequence this is, for the message (e.g. ``"A_5"``).

    Raises:
        TokenizationError: At the first position where they differ.

    Example:
        >>> check_assembly(lambda s: [ord(c) for c in s], str, "ab", [97, 98], "A_1")
    """
    actual = tokenize(text)
    if list(actual) == list(assembled):
        return
    at = common_prefix_len(actual, assembled)
    raise TokenizationError(
        f"{label} built from pieces differs from tokenizing the whole string at token {at}: "
        f"built {names(assembled[at : at + 4])}, tokenizer {names(actual[at : at + 4])} "
        f"({len(assembled)} vs {len(actual)} tokens). The tokenizer depends on long-range "
        f"context here; {_SPACING_HINT}"
    )


def de_bruijn_pairs(n: int) -> list[int]:
    """A sequence over ``range(n)`` containing every ordered pair once as neighbours.

    Length ``n * n + 1`` (a linearized de Bruijn sequence B(n, 2)): probing it checks
    every transition between ``n`` units with one tokenizer call per unit.

    Example:
        >>> de_bruijn_pairs(2)
        [0, 0, 1, 1, 0]
    """
    if n < 1:
        raise ValueError(f"need at least one symbol, got n={n}")
    a = [0] * (2 * n + 1)
    seq: list[int] = []

    def db(t: int, p: int) -> None:
        if t > 2:
            if 2 % p == 0:
                seq.extend(a[1 : p + 1])
            return
        a[t] = a[t - p]
        db(t + 1, p)
        for j in range(a[t - p] + 1, n):
            a[t] = j
            db(t + 1, t)

    db(1, 1)
    return seq + seq[:1]
