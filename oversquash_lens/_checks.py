"""Argument checks shared by the public functions: clear errors, never silent coercion."""

import operator
from typing import Any


def require_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """``value`` as an int, refusing bools, floats and strings (no silent ``int()``).

    Raises:
        TypeError: For anything that is not an integer (NumPy integers are fine).
        ValueError: For an integer below ``minimum``.

    Example:
        >>> require_int("probes", 8, minimum=2)
        8
        >>> require_int("probes", 2.5)
        Traceback (most recent call last):
        ...
        TypeError: probes must be an int, got 2.5 (float)
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {number}")
    return number


def require_position(name: str, position: int, length: int) -> int:
    """A sequence position (negative counts from the end) inside ``length`` tokens.

    Returns:
        The absolute position.

    Raises:
        ValueError: Outside the sequence, with its valid range.

    Example:
        >>> require_position("position", -1, 5)
        4
    """
    absolute = position + length if position < 0 else position
    if not 0 <= absolute < length:
        raise ValueError(
            f"{name} {position} is outside a sequence of {length} tokens (use "
            f"{-length}..{length - 1}, negative counting from the end)"
        )
    return absolute
