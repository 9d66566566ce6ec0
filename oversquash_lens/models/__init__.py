"""Model loading: offline tiny models, SmolLM2-135M from its GGUF, or any TransformerLens name."""

from .._compat import available_backends as available_backends
from .._compat import tl_version as tl_version
from ._build import Source as Source
from ._info import ModelInfo as ModelInfo
from ._info import model_info as model_info
from ._registry import ModelSpec as ModelSpec
from ._registry import list_models as list_models
from ._registry import load_model as load_model
from ._registry import register_model as register_model
from ._smollm2 import gguf_path as smollm2_gguf_path
from ._tiny import tiny_tokenizer as tiny_tokenizer
from ._toy import training_record as toy_training_record

__all__ = [
    "available_backends",
    "tl_version",
    "ModelInfo",
    "ModelSpec",
    "Source",
    "list_models",
    "load_model",
    "model_info",
    "register_model",
    "smollm2_gguf_path",
    "tiny_tokenizer",
    "toy_training_record",
]
