"""Hook plumbing, public face: record, intervene, emulate precision, restore model state."""

from ._capture import ActivationRecord as ActivationRecord
from ._capture import emulate_precision as emulate_precision
from ._capture import fired_hooks as fired_hooks
from ._capture import hooks as hooks
from ._capture import intervene as intervene
from ._capture import native_dtype as native_dtype
from ._capture import preserve_state as preserve_state
from ._capture import record as record

__all__ = [
    "ActivationRecord",
    "emulate_precision",
    "fired_hooks",
    "hooks",
    "intervene",
    "native_dtype",
    "preserve_state",
    "record",
]
