"""Attachable analyzers: each declares hook points, keeps what it needs, computes a result."""

from ._base import Analyzer as Analyzer
from ._base import RunRecord as RunRecord
from ._collapse_probe import CollapseProbe as CollapseProbe
from ._collapse_probe import PairComparison as PairComparison
from ._collapse_probe import Representations as Representations
from ._collapse_probe import compare as compare
from ._collapse_result import CollapseLength as CollapseLength
from ._collapse_result import CollapseResult as CollapseResult
from ._flow import FlowResult as FlowResult
from ._path_counts import log_path_counts as log_path_counts
from ._path_counts import path_counts as path_counts
from ._path_result import PathResult as PathResult
from ._paths import AttentionPaths as AttentionPaths
from ._paths import attention_paths as attention_paths
from ._residual_norms import ResidualNorms as ResidualNorms
from ._residual_norms import ResidualNormsResult as ResidualNormsResult
from ._sensitivity import Sensitivity as Sensitivity
from ._sensitivity import sensitivity as sensitivity
from ._sensitivity_result import SensitivityResult as SensitivityResult

__all__ = [
    "Analyzer",
    "AttentionPaths",
    "FlowResult",
    "PathResult",
    "Sensitivity",
    "SensitivityResult",
    "attention_paths",
    "log_path_counts",
    "path_counts",
    "sensitivity",
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
