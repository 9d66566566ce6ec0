"""Tensor annotations of the theory checks (same conventions as ``oversquash_lens._types``).

Kept here, beside the only code that uses them, so this subpackage stays self-contained.
"""

from jaxtyping import Float, Float64, Int
from torch import Tensor

ScoreRow = Float[Tensor, " pos"]
"""One row of attention logits (scores before the softmax)."""
Lengths = Int[Tensor, " length"]
"""Sequence lengths n at which a collapse curve is measured."""
SeedCurves = Float64[Tensor, "seed length"]
"""One distance per (seed, length)."""
Curve = Float64[Tensor, " length"]
"""One value per length (e.g. a mean over seeds)."""
PointStates = Float64[Tensor, "point pos d_model"]
"""Residual stream at every point v(0) .. v(L), every position."""
TokenIds = Int[Tensor, " pos"]
"""Token ids of one sequence."""
Embedding = Float[Tensor, "d_vocab d_model"]
"""Token embedding matrix."""

__all__ = [
    "Curve",
    "Embedding",
    "Lengths",
    "PointStates",
    "ScoreRow",
    "SeedCurves",
    "TokenIds",
]
