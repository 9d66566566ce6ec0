"""Exceptions raised by oversquash_lens. Each message says what to do next."""


class OversquashLensError(Exception):
    """Base class for every error this package raises on purpose."""


class UnknownModelError(OversquashLensError, KeyError):
    """A model name that is neither registered here nor loadable by TransformerLens."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelLoadError(OversquashLensError, RuntimeError):
    """A model could not be loaded (e.g. its weights need a network that is not there)."""


class BackendUnavailableError(OversquashLensError, ImportError):
    """The requested TransformerLens backend does not exist in the installed version."""


class UnsupportedModelError(OversquashLensError, TypeError):
    """An object that is neither a HookedTransformer nor a TransformerBridge."""


class MissingHookError(OversquashLensError, RuntimeError):
    """A hook point an analysis needs does not exist or does not fire on this model."""


class PatternsUnavailableError(MissingHookError):
    """The model's attention kernel never materializes attention patterns (SDPA / flash)."""


class PromptTooLongError(OversquashLensError, ValueError):
    """A prompt has more tokens than the model's context window."""


class EmptySequenceError(OversquashLensError, ValueError):
    """A prompt or sequence with no tokens."""


class UnknownPrecisionError(OversquashLensError, KeyError):
    """A precision name that is not a known format."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnsupportedPrecisionError(OversquashLensError, RuntimeError):
    """A precision the device cannot run natively (emulate it instead)."""


class IncompatibleRunError(OversquashLensError, RuntimeError):
    """An analyzer saw a run it cannot serve (e.g. gradients disabled, no patterns)."""


class TokenizationError(OversquashLensError, ValueError):
    """A task's text does not tokenize as built: an item splits, merges or needs a BOS."""


class CheckpointError(OversquashLensError, ValueError):
    """A sweep's checkpoint file is corrupt, truncated or not a checkpoint at all."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint written for another model, dtype, precision or sweep."""


class RaggedBatchError(IncompatibleRunError, ValueError):
    """A batch whose rows have different lengths (padding) where a position is measured."""


class InvalidTokensError(OversquashLensError, ValueError):
    """Token ids of the wrong dtype, or outside the model's vocabulary."""


class PathBudgetError(OversquashLensError, ValueError):
    """A path computation that would exceed its time or memory budget (say so, early)."""


class UnsupportedArchitectureError(OversquashLensError, ValueError):
    """A model whose architecture breaks an assumption of the analysis (e.g. causal masks)."""


class ResultFileError(OversquashLensError, ValueError):
    """A file Result.load cannot read: corrupt, truncated, foreign, or from a newer version."""


class InsufficientMemoryError(OversquashLensError, MemoryError):
    """A run whose estimated memory exceeds what the machine has free (refused before work)."""
