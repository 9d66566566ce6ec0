"""Attachable analyzers: each declares hook points, keeps what it needs, computes a result."""

from ._base import Analyzer as Analyzer
from ._base import RunRecord as RunRecord
from ._collapse_probe import CollapseProbe as CollapseProbe
from ._collapse_probe import PairComparison as PairComparison
from ._collapse_probe import Representations as Representations
from ._collapse_probe import compare as compare
from ._collapse_result import CollapseLength as CollapseLength
from ._collapse_result import CollapseResult as CollapseResult
from ._residual_norms import ResidualNorms as ResidualNorms
from ._residual_norms import ResidualNormsResult as ResidualNormsResult

__all__ = [
    "Analyzer",
    "CollapseLength",
    "CollapseProbe",
    "CollapseResult",
    "PairComparison",
    "Representations",
    "ResidualNorms",
    "ResidualNormsResult",
    "RunRecord",
    "compare",
]
