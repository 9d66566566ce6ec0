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

# Attention paths (analyzers/_paths.py, _path_math.py)
Pattern = Float[Tensor, "batch head_index query_pos key_pos"]
PathMatrix = Float64[Tensor, "batch query_pos key_pos"]
PathRows = Float64[Tensor, "batch *row key_pos"]
PathWeights = Float64[Tensor, "batch layer key_pos"]
HeadPathWeights = Float64[Tensor, "batch layer head_index key_pos"]
LayerPathWeights = Float64[Tensor, "layer key_pos"]
HeadScale = Float64[Tensor, "layer head_index"]
LayerValues = Float64[Tensor, " layer"]
PosValues = Float64[Tensor, " key_pos"]
__all__ += [
    "HeadPathWeights",
    "HeadScale",
    "LayerPathWeights",
    "LayerValues",
    "PathMatrix",
    "PathRows",
    "PathWeights",
    "Pattern",
    "PosValues",
]

# One token sequence of any length (tasks/); "_": lengths may differ between arguments
TokenSeq = Int[Tensor, " _pos"]
__all__ += ["TokenSeq"]

# Jacobian sensitivity (analyzers/_jacobian.py, _sensitivity.py)
Cotangents = Float[Tensor, "chunk batch d_out"]
InputGrads = Float[Tensor, "chunk batch pos d_in"]
PositionNorms = Float64[Tensor, "batch pos"]
SensitivityNorms = Float64[Tensor, "batch point pos"]
__all__ += ["Cotangents", "InputGrads", "PositionNorms", "SensitivityNorms"]

# Glasses comparison (_glasses.py, _glasses_result.py)
from jaxtyping import Bool  # noqa: E402  (kept with the aliases that use it)

VariantValues = Float64[Tensor, "variant length"]
VariantFlags = Bool[Tensor, "variant length"]
VariantInts = Int[Tensor, "variant length"]
SpacingValues = Float64[Tensor, "spacing length"]
SpacingFlags = Bool[Tensor, "spacing length"]
__all__ += ["SpacingFlags", "SpacingValues", "VariantFlags", "VariantInts", "VariantValues"]

# Behaviour sweeps (_behaviour_result.py): one entry per generated answer
from jaxtyping import Bool  # noqa: E402, F811  (kept with the aliases that use it)

RowInts = Int[Tensor, " row"]
RowFlags = Bool[Tensor, " row"]
RowFloats = Float64[Tensor, " row"]
__all__ += ["RowFlags", "RowFloats", "RowInts"]
