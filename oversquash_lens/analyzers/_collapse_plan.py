"""Which forward passes a collapse sweep needs, and where each pair is read from them.

Pure bookkeeping over token tuples (no model): in the shared mode every sequence that is
a prefix of a longer one is read from that one's pass, because the causal mask makes a
position's representation independent of what follows it.
"""

from dataclasses import dataclass

from ..tasks._layout import common_prefix_len


@dataclass
class Unit:
    """One group of passes: a prefix chain (shared) or one pair (independent)."""

    passes: list[tuple[int, ...]]  # token sequences to run
    pairs: list[int]  # indices of the pairs this unit measures
    # where each pair's sides and noise floor are read: (pass, position)
    a: list[tuple[int, int]]
    b: list[tuple[int, int]]
    noise: list[tuple[tuple[int, int], tuple[int, int]] | None]


def plan(sequences: list[tuple[tuple[int, ...], tuple[int, ...]]], mode: str) -> list[Unit]:
    """Group the pairs into units of forward passes.

    Args:
        sequences: ``(A_k, B_k)`` token tuples per pair.
        mode: ``"shared"``: every sequence that is a prefix of a longer one is read from
            that one's pass, and the noise floor from a second pass over the longest
            sequence minus its last token. ``"independent"``: two passes per pair, and the
            noise floor at their last common position.

    Returns:
        The units, covering every pair once.
    """
    if mode not in ("shared", "independent"):
        raise ValueError(f"mode must be 'shared' or 'independent', got {mode!r}")
    nested = [i for i, (a, b) in enumerate(sequences) if mode == "shared" and _prefix_pair(a, b)]
    alone = set(range(len(sequences))) - set(nested)
    units = [_independent(i, a, b) for i, (a, b) in enumerate(sequences) if i in alone]
    roots: list[tuple[int, ...]] = []
    for seq in sorted({s for i in nested for s in sequences[i]}, key=len, reverse=True):
        if not any(root[: len(seq)] == seq for root in roots):
            roots.append(seq)
    members: dict[int, list[int]] = {r: [] for r in range(len(roots))}
    for i in nested:
        longer = max(sequences[i], key=len)
        members[next(r for r, root in enumerate(roots) if root[: len(longer)] == longer)].append(i)
    for r, root in enumerate(roots):
        if not members[r]:
            continue
        # The noise floor: the same positions again, from a pass one token shorter.
        unit = Unit([root, root[:-1]] if len(root) > 1 else [root], [], [], [], [])
        for i in members[r]:
            a, b = sequences[i]
            unit.pairs.append(i)
            unit.a.append((0, len(a) - 1))
            unit.b.append((0, len(b) - 1))
            common = common_prefix_len(a, b)
            usable = 0 < common < len(root) and len(unit.passes) > 1
            unit.noise.append(((0, common - 1), (1, common - 1)) if usable else None)
        units.append(unit)
    return units


def _prefix_pair(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    short, long = sorted((a, b), key=len)
    return long[: len(short)] == short


def _independent(i: int, a: tuple[int, ...], b: tuple[int, ...]) -> Unit:
    """Two passes; the noise floor at the pair's last common position."""
    common = common_prefix_len(a, b)
    noise = ((0, common - 1), (1, common - 1)) if common else None
    return Unit([a, b], [i], [(0, len(a) - 1)], [(1, len(b) - 1)], [noise])
