"""oversquash_lens: how information about each input token reaches the last token.

A TransformerLens plugin implementing the measurements of Barbero et al., "Transformers
need glasses! Information over-squashing in language tasks" (NeurIPS 2024).
"""

from . import capture as capture
from . import precision as precision
from . import render as render
from . import tasks as tasks
from . import theory as theory
from ._adapter import ModelAdapter as ModelAdapter
from ._attach import Recording as Recording
from ._attach import attach as attach
from ._behaviour import behaviour as behaviour
from ._behaviour_result import BehaviourResult as BehaviourResult
from ._collapse import collapse as collapse
from ._errors import BackendUnavailableError as BackendUnavailableError
from ._errors import CheckpointError as CheckpointError
from ._errors import CheckpointMismatchError as CheckpointMismatchError
from ._errors import EmptySequenceError as EmptySequenceError
from ._errors import IncompatibleRunError as IncompatibleRunError
from ._errors import InsufficientMemoryError as InsufficientMemoryError
from ._errors import InvalidTokensError as InvalidTokensError
from ._errors import MissingHookError as MissingHookError
from ._errors import ModelLoadError as ModelLoadError
from ._errors import OversquashLensError as OversquashLensError
from ._errors import PathBudgetError as PathBudgetError
from ._errors import PatternsUnavailableError as PatternsUnavailableError
from ._errors import PromptTooLongError as PromptTooLongError
from ._errors import RaggedBatchError as RaggedBatchError
from ._errors import ResultFileError as ResultFileError
from ._errors import TokenizationError as TokenizationError
from ._errors import UnknownModelError as UnknownModelError
from ._errors import UnknownPrecisionError as UnknownPrecisionError
from ._errors import UnsupportedArchitectureError as UnsupportedArchitectureError
from ._errors import UnsupportedModelError as UnsupportedModelError
from ._errors import UnsupportedPrecisionError as UnsupportedPrecisionError
from ._generate import greedy_generate as greedy_generate
from ._glasses import compare_glasses as compare_glasses
from ._glasses import separator_search as separator_search
from ._glasses_result import GlassesResult as GlassesResult
from ._glasses_result import SeparatorSearch as SeparatorSearch
from ._glasses_variants import Variant as Variant
from ._glasses_variants import glasses as glasses
from ._glasses_variants import parse_variant as parse_variant
from ._memory import memory_limit as memory_limit
from ._moved import alias_module as _alias_module
from ._paths import attention_paths as attention_paths
from ._sensitivity import sensitivity as sensitivity
from ._shards import Shard as Shard
from ._shards import behaviour_shard as behaviour_shard
from ._shards import collapse_shard as collapse_shard
from ._shards import merge as merge_shards
from ._trace import trace as trace
from .analyzers import Analyzer as Analyzer
from .analyzers import AttentionPaths as AttentionPaths
from .analyzers import CollapseLength as CollapseLength
from .analyzers import CollapseProbe as CollapseProbe
from .analyzers import CollapseResult as CollapseResult
from .analyzers import FlowResult as FlowResult
from .analyzers import PairComparison as PairComparison
from .analyzers import PathResult as PathResult
from .analyzers import Representations as Representations
from .analyzers import ResidualNorms as ResidualNorms
from .analyzers import ResidualNormsResult as ResidualNormsResult
from .analyzers import RunRecord as RunRecord
from .analyzers import Sensitivity as Sensitivity
from .analyzers import SensitivityResult as SensitivityResult
from .analyzers import log_path_counts as log_path_counts
from .analyzers import path_counts as path_counts
from .capture import emulate_precision as emulate_precision
from .capture import intervene as intervene
from .capture import native_dtype as native_dtype
from .capture import preserve_state as preserve_state
from .capture import record as record
from .models import ModelInfo as ModelInfo
from .models import list_models as list_models
from .models import load_model as load_model
from .models import model_info as model_info
from .models import register_model as register_model
from .precision import FloatFormat as FloatFormat
from .precision import get_format as get_format
from .precision import machine_epsilon as machine_epsilon
from .precision import round_to_format as round_to_format
from .precision import ulp_distance as ulp_distance
from .reporting import report as report
from .results import Provenance as Provenance
from .results import Result as Result
from .tasks import Task as Task
from .tasks import TaskInstance as TaskInstance

# The report's subpackage was ``oversquash_lens.report``, a name the report function holds:
# ``from oversquash_lens.report import get_suite`` keeps working for one release.
_alias_module("oversquash_lens.report", "oversquash_lens.reporting")

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
    "trace",
    "CollapseLength",
    "CollapseProbe",
    "CollapseResult",
    "PairComparison",
    "Representations",
    "collapse",
    # a sweep split across machines (the CLI's --shard I/N), then merged
    "Shard",
    "collapse_shard",
    "behaviour_shard",
    "merge_shards",
    "BehaviourResult",
    "behaviour",
    "greedy_generate",
    "GlassesResult",
    "SeparatorSearch",
    "Variant",
    "compare_glasses",
    "glasses",
    "parse_variant",
    "separator_search",
    "render",
    "report",
    "Task",
    "TaskInstance",
    "ModelAdapter",
    "Provenance",
    "Recording",
    "ResidualNorms",
    "ResidualNormsResult",
    "Result",
    "RunRecord",
    "attach",
    "memory_limit",
    "capture",
    "emulate_precision",
    "intervene",
    "native_dtype",
    "preserve_state",
    "record",
    "tasks",
    "theory",
    "BackendUnavailableError",
    "CheckpointError",
    "CheckpointMismatchError",
    "EmptySequenceError",
    "FloatFormat",
    "IncompatibleRunError",
    "InvalidTokensError",
    "MissingHookError",
    "ModelInfo",
    "ModelLoadError",
    "OversquashLensError",
    "PathBudgetError",
    "InsufficientMemoryError",
    "PatternsUnavailableError",
    "PromptTooLongError",
    "RaggedBatchError",
    "ResultFileError",
    "TokenizationError",
    "UnknownModelError",
    "UnknownPrecisionError",
    "UnsupportedArchitectureError",
    "UnsupportedModelError",
    "UnsupportedPrecisionError",
    "get_format",
    "list_models",
    "load_model",
    "machine_epsilon",
    "model_info",
    "precision",
    "register_model",
    "round_to_format",
    "ulp_distance",
]
