"""Constructors of the paper's tasks, one per task (see :mod:`._task` for the layout)."""

from collections.abc import Callable

from .._names import Registry
from ._task import Task


def copy_last(*, hint: bool = False, joiner: str = "", style: str = "paper", seed: int = 0) -> Task:
    """Copy the last digit of ``1…10`` (k ones then a 0; answer 0; Fig 2).

    Example:
        >>> print(copy_last(hint=True).instance(3).text)
        What is the last digit in this sequence? Hint: it's not necessarily a 1, check carefully.
        1110
        The answer to your question is: <ANSWER>
    """
    return Task("copy_last", style=style, hint=hint, joiner=joiner, seed=seed)


def copy_first(*, joiner: str = "", style: str = "paper", seed: int = 0) -> Task:
    """Copy the first digit of ``01…1`` (a 0 then k ones; answer 0; Fig 2).

    Example:
        >>> copy_first(style="compact").instance(3).text
        'F:0111='
    """
    return Task("copy_first", style=style, joiner=joiner, seed=seed)


def count_ones(*, joiner: str = "", style: str = "paper", seed: int = 0) -> Task:
    """Count the ones in ``1…1`` (k ones; answer k; Fig 3/4).

    Example:
        >>> count_ones(style="compact").instance(4).text
        'C:1111='
    """
    return Task("count_ones", style=style, joiner=joiner, seed=seed)


def count_bernoulli(
    p: float = 0.7, *, joiner: str = "", style: str = "paper", seed: int = 0
) -> Task:
    """Count the ones in k random digits, each 1 with probability ``p`` (Fig 4).

    Example:
        >>> inst = count_bernoulli(style="compact", seed=1).instance(10)
        >>> inst.value == inst.text.count("1")
        True
    """
    return Task("count_bernoulli", style=style, joiner=joiner, seed=seed, p=float(p))


def sum_ones(*, joiner: str = "+", style: str = "paper", seed: int = 0) -> Task:
    """Perform the sum ``1+1+…+1`` (k ones; answer k; Fig 3).

    Example:
        >>> sum_ones(style="compact").instance(3).text
        'S:1+1+1='
    """
    return Task("sum_ones", style=style, joiner=joiner, seed=seed)


def count_word(word: str = "apple", *, joiner: str = " ", seed: int = 0) -> Task:
    """Count how often ``word`` appears in a sentence of k words (Fig 6; paper style only).

    The count is drawn uniformly from 1..k, its positions at random, and the other words
    uniformly from ``WORDS`` (without ``word``). Items are words: a word may be several
    tokens, and ``item_positions`` gives each word's last token.

    Example:
        >>> inst = count_word("pear", seed=2).instance(6)
        >>> inst.value == inst.items.count("pear"), len(inst.items)
        (True, 6)
    """
    return Task("count_word", joiner=joiner, seed=seed, word=word)


def interleaved(*, joiner: str = "", style: str = "paper", seed: int = 0) -> Task:
    """Copy the last digit of k alternating digits ending in 0 (``…1010``; Fig 2c).

    Example:
        >>> interleaved(style="compact").instance(5).text
        'I:01010='
    """
    return Task("interleaved", style=style, joiner=joiner, seed=seed)


TASKS: Registry[Callable[..., Task]] = Registry("task")
"""Every task constructor by name (call with no arguments for the paper's defaults)."""
for _constructor in (
    copy_last,
    copy_first,
    count_ones,
    count_bernoulli,
    sum_ones,
    count_word,
    interleaved,
):
    TASKS.register(_constructor.__name__, _constructor)
