"""Attachable analyzers: each declares hook points, keeps what it needs, computes a result."""

from ._base import Analyzer as Analyzer
from ._base import RunRecord as RunRecord
from ._residual_norms import ResidualNorms as ResidualNorms
from ._residual_norms import ResidualNormsResult as ResidualNormsResult

__all__ = ["Analyzer", "ResidualNorms", "ResidualNormsResult", "RunRecord"]
