"""Hook plumbing: the only code that adds or removes hooks.

Record activations, intervene, emulate precision at hook points, run natively in another
dtype, and restore the model's state afterwards, whatever happens in the block.
"""

from ._hooks import ActivationRecord as ActivationRecord
from ._hooks import HookFn as HookFn
from ._hooks import fired_hooks as fired_hooks
from ._hooks import hook_dict as hook_dict
from ._hooks import hook_point as hook_point
from ._hooks import hooks as hooks
from ._hooks import intervene as intervene
from ._hooks import record as record
from ._hooks import run_boundaries as run_boundaries
from ._precision import active_precision as active_precision
from ._precision import emulate_precision as emulate_precision
from ._precision import native_dtype as native_dtype
from ._state import preserve_state as preserve_state

__all__ = [
    "ActivationRecord",
    "HookFn",
    "active_precision",
    "emulate_precision",
    "fired_hooks",
    "hook_dict",
    "hook_point",
    "hooks",
    "intervene",
    "native_dtype",
    "preserve_state",
    "record",
    "run_boundaries",
]
