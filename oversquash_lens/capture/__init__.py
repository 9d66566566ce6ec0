"""Hook plumbing: the only code that adds or removes hooks.

Record activations, intervene, emulate precision at hook points, run natively in another
dtype, and restore the model's state afterwards, whatever happens in the block.
"""

from ._checkpoint import blocks_checkpointed as blocks_checkpointed
from ._checkpoint import checkpointed_blocks as checkpointed_blocks
from ._hooks import HookFn as HookFn
from ._hooks import fired_hooks as fired_hooks
from ._hooks import hook_dict as hook_dict
from ._hooks import hook_point as hook_point
from ._hooks import hooks as hooks
from ._hooks import intervene as intervene
from ._hooks import silent_pass as silent_pass
from ._precision import active_precision as active_precision
from ._precision import check_emulation as check_emulation
from ._precision import emulate_precision as emulate_precision
from ._precision import native_dtype as native_dtype
from ._record import ActivationRecord as ActivationRecord
from ._record import record as record
from ._runs import logits_transformed as logits_transformed
from ._runs import run_boundaries as run_boundaries
from ._state import frozen_parameters as frozen_parameters
from ._state import preserve_state as preserve_state

__all__ = [
    "ActivationRecord",
    "HookFn",
    "active_precision",
    "blocks_checkpointed",
    "check_emulation",
    "checkpointed_blocks",
    "emulate_precision",
    "fired_hooks",
    "frozen_parameters",
    "hook_dict",
    "hook_point",
    "hooks",
    "intervene",
    "logits_transformed",
    "native_dtype",
    "preserve_state",
    "record",
    "run_boundaries",
    "silent_pass",
]
