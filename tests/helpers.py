"""Shared test helpers: tolerances per dtype, hook inspection."""

from typing import Any

import torch

# (rtol, atol) for comparing two computations of the same quantity.
# float64: reassociation error of a few ulps on O(1) values (2.2e-16 each), accumulated
#   over sums of up to ~10^4 terms.
# float32: ulp 1.2e-7; matmul reductions over d_model <= 1536 and 30 layers accumulate
#   to ~1e-5 relative.
# bfloat16 / float16: one rounding of an O(1) value is 2^-8 / 2^-11 relative; a forward
#   pass compounds several.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (1e-5, 1e-6),
    torch.float16: (1e-2, 1e-3),
    torch.bfloat16: (5e-2, 1e-2),
}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None):
    rtol, atol = TOLERANCES[dtype or expected.dtype]
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, check_dtype=False)


def leftover_hooks(model: Any) -> list[str]:
    """Names of HookPoints that still carry any hook, and root-module hooks."""
    dirty = []
    for name, point in model.hook_dict.items():
        if point.fwd_hooks or point.bwd_hooks or point._forward_hooks or point._backward_hooks:
            dirty.append(name)
    for module_name, module in model.named_modules():
        if module._forward_pre_hooks:
            dirty.append(f"{module_name or '<root>'}: forward pre-hook")
    return dirty


def state_of(model: Any) -> dict[str, Any]:
    """Everything a run must leave unchanged: dtypes, data pointers, modes."""
    return {
        "dtypes": {n: p.dtype for n, p in model.named_parameters()},
        "data": {n: p.data_ptr() for n, p in model.named_parameters()},
        "training": {n: m.training for n, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grad_enabled": torch.is_grad_enabled(),
        "cfg_dtype": getattr(model.cfg, "dtype", None),
    }
