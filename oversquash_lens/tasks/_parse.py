r"""Read the integer answer out of a model's generated text (pure functions on strings).

Paper style (App. C.1 prompts ask for "The answer to your question is: <ANSWER>" or
"The final answer to your maths question is: xxxx"):

1. If the text contains a format marker ("answer to your question is:" or "maths
   question is:", case-insensitive), the answer is the first number after the *last*
   marker that is followed by one (a chain of thought may restate the format before
   answering). Between the marker and the number anything goes: ``<ANSWER>`` tags,
   markdown bold, a line break. Number words from "zero" to "twenty" count here
   (``"…is: five"``), nowhere else. A marker followed by no number at all gives
   ``None``: the model used the format but gave no answer, and guessing from earlier
   reasoning ("1, 2, 3, …") would credit it with numbers it did not answer.
2. Without a marker, the first integer in the text is the answer (so "3 or 4" reads
   as 3; several numbers without the marker are ambiguous and the first is taken).
3. Numbers: an optional minus sign ("-3" → -3), digits with thousands commas
   ("1,024" → 1024; a comma not followed by exactly three digits ends the number,
   so "1,2" reads as 1), and an optional decimal part: "4.0" → 4, while a
   non-integer such as "3.5" is not an integer answer and gives ``None``.

Compact style (toy models, ``"C:111="`` → ``"3\n"``): the leading decimal digits of the
output, up to the first newline or other non-digit; no digits first → ``None``.
"""

import re

_MARKER = re.compile(r"(?:answer to your question is|maths question is)\s*:", re.IGNORECASE)
_WORDS: tuple[str, ...] = tuple(
    (
        "zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen twenty"
    ).split()
)
_NUMBER = r"(?<![\d.,])(?P<sign>[-−]?)(?P<int>\d{1,3}(?:,\d{3})+(?![\d])|\d+)(?:\.(?P<frac>\d+))?"
_NUMBER_RE = re.compile(_NUMBER)
_NUMBER_OR_WORD_RE = re.compile(_NUMBER + r"|\b(?P<word>" + "|".join(_WORDS) + r")\b", re.I)
_COMPACT = re.compile(r"\d+")
STYLES = ("paper", "compact")


def _value(match: re.Match[str]) -> int | None:
    """The integer a number match stands for; None for a non-integer like 3.5."""
    word = match.groupdict().get("word")
    if word:
        return _WORDS.index(word.lower())
    frac = match.group("frac")
    if frac and frac.strip("0"):
        return None
    value = int(match.group("int").replace(",", ""))
    return -value if match.group("sign") else value


def parse_paper(text: str) -> int | None:
    """The answer in a paper-style output (see the module docstring for the rules).

    Args:
        text: The generated text (the model's reply, without the prompt).

    Returns:
        The integer answer, or None when there is none.

    Example:
        >>> parse_paper("Sure! The answer to your question is: **1,024**")
        1024
        >>> parse_paper("I count 3, maybe 4."), parse_paper("no idea")
        (3, None)
    """
    markers = list(_MARKER.finditer(text))
    if markers:
        for marker in reversed(markers):
            end = len(text)
            later = [m.start() for m in markers if m.start() > marker.start()]
            if later:
                end = later[0]
            found = _NUMBER_OR_WORD_RE.search(text, marker.end(), end)
            if found is not None:
                return _value(found)
        return None
    found = _NUMBER_RE.search(text)
    return None if found is None else _value(found)


def parse_compact(text: str) -> int | None:
    r"""The answer in a compact-style output: leading digits up to a non-digit.

    Example:
        >>> parse_compact("12\n"), parse_compact("7=3"), parse_compact("\n5")
        (12, 7, None)
    """
    found = _COMPACT.match(text)
    return None if found is None else int(found.group())


def parse_answer(text: str, style: str = "paper") -> int | None:
    r"""Parse the integer answer of a task from generated text.

    Args:
        text: The generated continuation (not including the prompt).
        style: ``"paper"`` (natural-language answer with the App. C.1 format marker)
            or ``"compact"`` (toy models: digits then a newline).

    Returns:
        The answer, or None when nothing parses.

    Raises:
        TypeError: If ``text`` is not a string.
        ValueError: For an unknown ``style``.

    Example:
        >>> parse_answer("The answer to your question is: <ANSWER>0</ANSWER>")
        0
        >>> parse_answer("42\n", style="compact")
        42
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be the generated string, got {type(text).__name__}")
    if style == "paper":
        return parse_paper(text)
    if style == "compact":
        return parse_compact(text)
    raise ValueError(f"style must be one of {STYLES}, got {style!r}")
