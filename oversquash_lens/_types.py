"""Tensor annotations, with dimension names the TransformerLens way.

``Float`` accepts any floating dtype (activations may be bf16/fp16); ``Float64`` marks
values we deliberately upcast before reducing.
"""

from jaxtyping import Float, Float64, Int
from torch import Tensor

Tokens = Int[Tensor, "batch pos"]
TokensAnyBatch = Int[Tensor, " *batch pos"]
Residual = Float[Tensor, "batch pos d_model"]
ResidualAtPos = Float[Tensor, "batch d_model"]
PointNorms = Float64[Tensor, "batch point"]

__all__ = ["PointNorms", "Residual", "ResidualAtPos", "Tokens", "TokensAnyBatch"]
