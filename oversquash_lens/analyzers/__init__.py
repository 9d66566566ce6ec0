"""Attachable analyzers: each declares hook points, keeps what it needs, computes a result."""

from typing import Any

from .._moved import moved as _moved
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
from ._residual_norms import ResidualNorms as ResidualNorms
from ._residual_norms import ResidualNormsResult as ResidualNormsResult
from ._sensitivity import Sensitivity as Sensitivity
from ._sensitivity_result import SensitivityResult as SensitivityResult

__all__ = [
    "Analyzer",
    "AttentionPaths",
    "FlowResult",
    "PathResult",
    "Sensitivity",
    "SensitivityResult",
    "log_path_counts",
    "path_counts",
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

# The functions that run a model live above the analyzers now (oversquash_lens._paths,
# oversquash_lens._sensitivity; public as osl.attention_paths, osl.sensitivity). Their
# old paths here keep working for one release, with a DeprecationWarning.
_MOVED_NAMES = ("attention_paths", "sensitivity")  # up to the functions that run models


def __getattr__(name: str) -> Any:
    """The old ``oversquash_lens.analyzers.attention_paths`` / ``.sensitivity`` paths."""
    if name in _MOVED_NAMES:
        return _moved(f"oversquash_lens.analyzers.{name}", f"oversquash_lens.{name}")
    raise AttributeError(f"module 'oversquash_lens.analyzers' has no attribute {name!r}")
