"""Strict JSON: NaN and ±inf become ``null``, so every JSON parser reads the output.

Python's :mod:`json` writes ``NaN`` and ``Infinity`` by default, which the JSON standard
(and e.g. ``JSON.parse`` or ``jq``) rejects. Measurements produce them legitimately (the
error of an answer that did not parse, a mean over nothing), so output goes through
:func:`strict_json` first.
"""

import json
import math
from typing import Any


def strict_json(value: Any) -> Any:
    """A copy of ``value`` in which every non-finite float is None.

    Recurses through dicts, lists and tuples (tuples become lists, as JSON has them).
    Python floats, numpy floating scalars and 0-d arrays or tensors of a float dtype
    count as floats (finite ones become Python floats); other values are returned
    unchanged.

    Args:
        value: Anything :func:`json.dumps` would be given.

    Returns:
        The same structure with NaN, inf and -inf replaced by None.

    Example:
        >>> import numpy as np
        >>> strict_json({"error": float("nan"), "k": [1, np.float32(-np.inf), (2.5, None)]})
        {'error': None, 'k': [1, None, [2.5, None]]}
    """
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(item) for item in value]
    number = _as_float(value)
    if number is None:
        return value
    return number if math.isfinite(number) else None


def dumps(value: Any, **kwargs: Any) -> str:
    """:func:`json.dumps` of :func:`strict_json` ``(value)``, refusing NaN and inf.

    Args:
        value: The payload.
        **kwargs: Passed to :func:`json.dumps` (e.g. ``indent``, ``default``);
            ``allow_nan`` is always False.

    Returns:
        Standard JSON text.

    Example:
        >>> dumps({"mean_abs_error": float("nan"), "accuracy": 0.5})
        '{"mean_abs_error": null, "accuracy": 0.5}'
    """
    kwargs["allow_nan"] = False
    return json.dumps(strict_json(value), **kwargs)


def _as_float(value: Any) -> float | None:
    """``value`` as a Python float if it is a float scalar (numpy, 0-d array/tensor)."""
    if isinstance(value, bool | int | str) or value is None:
        return None
    if isinstance(value, float):
        return value
    dtype = getattr(value, "dtype", None)
    if dtype is None or getattr(value, "ndim", None) != 0 or not _is_floating(dtype):
        return None
    return float(value)


def _is_floating(dtype: Any) -> bool:
    """True for numpy and torch floating dtypes (complex and integers are not)."""
    if getattr(dtype, "is_floating_point", None) is True:  # torch.dtype
        return True
    return getattr(dtype, "kind", None) == "f"  # numpy.dtype
