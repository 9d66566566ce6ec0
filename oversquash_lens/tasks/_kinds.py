"""What each task's sequence is: items, ground truth, question, worked reasoning (pure).

Each task kind is a :class:`Kind` in the ``KINDS`` registry. Draw functions take the task
(for its options: ``p``, ``word``, ``hint``), the length ``k`` and a seeded NumPy
generator, and return ``(items, ground truth, index of the answer-relevant item)``.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _prompts as P

Span = tuple[int, int]
"""Characters ``[start, end)`` of an item in a text."""

Draw = tuple[list[str], int, int]
"""Items, ground truth, index of the relevant item."""

HINT = f"{P.HINT_LEAD} {P.LAST_DIGIT_HINT}."
"""The hint sentence added after the copy_last question (Fig 2b)."""

WORDS = ("apple", "banana", "cherry", "grape", "lemon", "mango", "orange", "peach", "pear")
"""The vocabulary of :func:`count_word` sentences."""


def _ones(k: int) -> list[str]:
    return ["1"] * k


def _draw_bernoulli(task: Any, k: int, rng: np.random.Generator) -> Draw:
    bits = rng.random(k) < float(task.p)
    items = ["1" if b else "0" for b in bits]
    return items, int(bits.sum()), k - 1


def _draw_word(task: Any, k: int, rng: np.random.Generator) -> Draw:
    word = str(task.word)
    others = [w for w in WORDS if w != word]
    count = int(rng.integers(1, k + 1))
    chosen = set(rng.choice(k, size=count, replace=False).tolist())
    fill = rng.integers(0, len(others), size=k)
    items = [word if i in chosen else others[int(fill[i])] for i in range(k)]
    return items, count, k - 1


def _counting(items: list[str], target: str, lead: str) -> str:
    """Worked reasoning: ``lead`` then the running count at each ``target`` item."""
    running = [str(n + 1) for n in range(sum(1 for i in items if i == target))]
    return f"{lead}: {', '.join(running) if running else 'none'}."


@dataclass(frozen=True)
class Kind:
    """How one task builds its sequence, question and worked reasoning."""

    question: Callable[[Any], str]
    draw: Callable[[Any, int, np.random.Generator], Draw]
    reasoning: Callable[[Any, list[str], int], str]
    op: str | None = None  # compact-style operator letter; None: no compact form
    answer_format: str = P.ANSWER_FORMAT
    placeholder: str = "<ANSWER>"
    min_k: int = 1
    deterministic: bool = True
    words: bool = False  # items are words (may be several tokens each)
    fallback_joiner: str = " "


KINDS: dict[str, Kind] = {
    "copy_last": Kind(
        question=lambda t: P.LAST_DIGIT + (f" {HINT}" if t.hint else ""),
        draw=lambda t, k, rng: ([*_ones(k), "0"], 0, k),
        reasoning=lambda t, items, v: f"The sequence ends with {items[-1]}.",
        op="L",
        min_k=0,
    ),
    "copy_first": Kind(
        question=lambda t: P.COPY_FIRST,
        draw=lambda t, k, rng: (["0", *_ones(k)], 0, 0),
        reasoning=lambda t, items, v: f"The sequence starts with {items[0]}.",
        op="F",
        min_k=0,
    ),
    "count_ones": Kind(
        question=lambda t: P.COUNT_ONES_INSTRUCTION,
        draw=lambda t, k, rng: (_ones(k), k, k - 1),
        reasoning=lambda t, items, v: _counting(items, "1", "Counting the 1s one at a time"),
        op="C",
    ),
    "count_bernoulli": Kind(
        question=lambda t: P.COUNT_ONES_INSTRUCTION,
        draw=_draw_bernoulli,
        reasoning=lambda t, items, v: _counting(items, "1", "Counting the 1s one at a time"),
        op="C",
        deterministic=False,
    ),
    "sum_ones": Kind(
        question=lambda t: P.PERFORM_SUM,
        draw=lambda t, k, rng: (_ones(k), k, k - 1),
        reasoning=lambda t, items, v: _counting(items, "1", "Adding the 1s one at a time"),
        op="S",
        answer_format=P.SUM_ANSWER_FORMAT,
        placeholder="xxxx",
        fallback_joiner=" + ",
    ),
    "count_word": Kind(
        question=lambda t: P.COUNT_WORD.format(word=t.word),
        draw=_draw_word,
        reasoning=lambda t, items, v: _counting(
            items, str(t.word), f"Counting each {t.word!r} in turn"
        ),
        deterministic=False,
        words=True,
    ),
    "interleaved": Kind(
        question=lambda t: P.LAST_DIGIT,
        draw=lambda t, k, rng: (["01"[(k - 1 - i) % 2] for i in range(k)], 0, k - 1),
        reasoning=lambda t, items, v: f"The sequence ends with {items[-1]}.",
        op="I",
    ),
}
TASK_NAMES = tuple(KINDS)
"""The names of the task kinds (``copy_last``, ``count_ones``, ...), in registry order."""


def render_sequence(
    items: list[str], joiner: str, separator: str | None, every: int | None, group: str
) -> tuple[str, list[Span]]:
    """Join items (a separator every ``every`` items) and return each item's span.

    Example:
        >>> render_sequence(list("1111"), "", ",", 3, "right")
        ('1,111', [(0, 1), (2, 3), (3, 4), (4, 5)])
    """
    parts: list[str] = []
    spans: list[Span] = []
    pos, n = 0, len(items)
    for i, item in enumerate(items):
        if i:
            cut = separator is not None and every is not None
            cut = cut and (i if group == "left" else n - i) % int(every or 1) == 0
            glue = (str(separator) if cut else "") + joiner
            parts.append(glue)
            pos += len(glue)
        spans.append((pos, pos + len(item)))
        parts.append(item)
        pos += len(item)
    return "".join(parts), spans


STYLES = ("paper", "compact")
ORDERS = ("question_first", "format_first")
COTS = (None, "zero_shot", "few_shot")


def _check_option(value: object, allowed: tuple[Any, ...], name: str) -> None:
    if value not in allowed or isinstance(value, bool):
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def validate_options(task: Any) -> None:
    """Check a task's options (a :class:`Task`'s fields) and raise with what to do.

    Raises:
        ValueError: For unknown names and values, options that do not apply to the task
            (``hint`` outside copy_last, ``p`` / ``word`` on other tasks, compact style
            with chain of thought), or a joiner the task cannot use.
        TypeError: For values of the wrong type.
    """
    if task.name not in KINDS:
        raise ValueError(f"unknown task {task.name!r}; choose one of {TASK_NAMES}")
    _check_option(task.style, STYLES, "style")
    _check_option(task.order, ORDERS, "order")
    _check_option(task.cot, COTS, "cot")
    _check_option(task.group, ("left", "right"), "group")
    if not isinstance(task.hint, bool):
        raise TypeError(f"hint must be True or False, got {task.hint!r}")
    if task.hint and task.name != "copy_last":
        raise ValueError(f"hint only applies to copy_last (Fig 2b), not {task.name}")
    if (task.separator is None) != (task.every is None):
        raise ValueError("give separator and every together, e.g. separator=',', every=3")
    if task.separator is not None and not (isinstance(task.separator, str) and task.separator):
        raise ValueError(f"separator must be a non-empty string, got {task.separator!r}")
    if task.every is not None and (
        isinstance(task.every, bool) or not isinstance(task.every, int) or task.every < 1
    ):
        raise ValueError(f"every must be an int >= 1 (items per group), got {task.every!r}")
    if not isinstance(task.joiner, str):
        raise TypeError(f"joiner must be a string, got {task.joiner!r}")
    if isinstance(task.seed, bool) or not isinstance(task.seed, int) or task.seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {task.seed!r}")

    kind = KINDS[task.name]
    if task.style == "compact":
        if kind.op is None:
            raise ValueError(f"{task.name} has no compact form; use style='paper'")
        if task.cot is not None or task.order != "question_first":
            raise ValueError("compact style has no chain of thought or order: leave them unset")
    if (task.p is not None) != (task.name == "count_bernoulli"):
        raise ValueError("p is count_bernoulli's probability of a 1 (and only its)")
    if task.p is not None and not (isinstance(task.p, float | int) and 0 <= task.p <= 1):
        raise ValueError(f"p must be a probability in [0, 1], got {task.p!r}")
    if (task.word is not None) != (task.name == "count_word"):
        raise ValueError("word is count_word's counted word (and only its)")
    if task.word is not None and not (isinstance(task.word, str) and task.word.isalpha()):
        raise ValueError(f"word must be a single alphabetic word, got {task.word!r}")
    _check_glue(task, kind)
    if task.name == "sum_ones" and "+" not in task.joiner:
        raise ValueError("sum_ones needs '+' between the ones: joiner='+' or ' + '")
    if kind.words and not task.joiner:
        raise ValueError(f"{task.name} items are words: give a joiner such as ' '")


def _check_glue(task: Any, kind: Kind) -> None:
    """Refuse a separator or joiner that reads as an item: the ground truth would be wrong.

    Digit tasks count, sum or copy digits, so any digit between the items changes what
    the model is shown but not the answer computed from the items; count_word would see
    extra counted words.
    """
    items = (str(task.word), *WORDS) if kind.words else tuple("0123456789")
    for name in ("separator", "joiner"):
        glue = getattr(task, name)
        clash = [item for item in items if glue and item in glue]
        if clash:
            raise ValueError(
                f"{name} {glue!r} contains {clash[0]!r}, which reads as an item of "
                f"{task.name}: the prompt would show items the ground truth does not count. "
                f"Choose a {name} without {'those words' if kind.words else 'digits'}, "
                "e.g. ','"
            )


def describe_options(task: Any) -> str:
    """One line naming a task and every option that differs from the default."""
    parts = [f"{task.style} style"]
    if task.separator is not None:
        parts.append(f"separator {task.separator!r} every {task.every} from the {task.group}")
    if task.joiner:
        parts.append(f"joiner {task.joiner!r}")
    if task.hint:
        parts.append("hint")
    if task.order != "question_first":
        parts.append("answer format first")
    if task.cot is not None:
        parts.append(f"{task.cot.replace('_', '-')} chain of thought")
    if task.p is not None:
        parts.append(f"p={task.p}")
    if task.word is not None:
        parts.append(f"word {task.word!r}")
    parts.append(f"seed {task.seed}")
    return f"{task.name} ({'; '.join(parts)})"
