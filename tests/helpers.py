"""Shared test helpers: tolerances per dtype, hook inspection."""

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

# (rtol, atol) for comparing two computations of the same quantity.
# float64: reassociation error of a few ulps on O(1) values (2.2e-16 each), accumulated
#   over sums of up to ~10^4 terms.
# float32: ulp 1.2e-7 on O(1) activations; weight folding reorders every reduction, and a
#   few layers of d_model-long dot products accumulate ~1e-6..1e-5 absolute error.
# bfloat16 / float16: one rounding of an O(1) value is 2^-8 / 2^-11 relative; a forward
#   pass through a tiny model compounds ~20 of them on logits of size ~3.
# Pass the least precise dtype involved in the comparison.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (1e-5, 1e-5),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (5e-2, 1e-1),
}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None):
    rtol, atol = TOLERANCES[dtype or expected.dtype]
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, check_dtype=False)


def hook_registry(model: Any, *, warm_up: bool = True) -> dict[str, tuple[Any, ...]]:
    """Every torch hook registered anywhere in the model, by module (handle ids), plus the
    TransformerLens handle lists of each HookPoint. Equal snapshots = same hooks.

    Runs ``run_with_cache`` once first (unless ``warm_up=False``): on its first passes
    TransformerBridge wires permanent capture hooks of its own into each block, and
    transformers installs an output-capturing hook; neither is ours to remove, and both
    stay fixed afterwards.
    """
    if warm_up:
        with torch.no_grad():
            model.run_with_cache(torch.zeros((1, 2), dtype=torch.long, device=model.W_E.device))
    out: dict[str, tuple[Any, ...]] = {}
    for name, module in model.named_modules():
        out[name] = (
            tuple(module._forward_pre_hooks),
            tuple(module._forward_hooks),
            tuple(module._backward_hooks),
            tuple(module._backward_pre_hooks),
            tuple(id(h) for h in getattr(module, "fwd_hooks", ())),
            tuple(id(h) for h in getattr(module, "bwd_hooks", ())),
        )
    return out


def leftover_hooks(model: Any, before: dict[str, tuple[Any, ...]]) -> list[str]:
    """Modules whose hooks differ from the ``before`` snapshot."""
    after = hook_registry(model)
    return [name for name in after if after[name] != before.get(name)]


def state_of(model: Any) -> dict[str, Any]:
    """Everything a run must leave unchanged: dtypes, data pointers, modes."""
    from oversquash_lens._tensors import floating_tensors

    tensors = floating_tensors(model)  # parameters, buffers, bridge's processed weights
    return {
        "storage": [(t.dtype, t.data_ptr()) for t in tensors],
        "training": {n: m.training for n, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grad_enabled": torch.is_grad_enabled(),
        "cfg_dtype": getattr(model.cfg, "dtype", None),
    }


class TensorBytesPeak(TorchDispatchMode):
    """Bytes of tensor storage alive, and their high-water mark, while active.

    Every aten op's outputs are seen here; each new storage is counted when it appears and
    uncounted by a weakref finalizer when torch frees it (torch keeps one Python object per
    storage, so the finalizer fires exactly then). Outputs sharing an input's storage
    (views, in-place ops) are not new, and tensors that existed before (weights) are not
    counted. Deterministic, unlike RSS (allocator caching, fragmentation).
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._seen: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {
            t.untyped_storage()._cdata
            for t in tree_flatten((args, kwargs))[0]
            if isinstance(t, torch.Tensor)
        }
        for item in tree_flatten(out)[0]:
            if isinstance(item, torch.Tensor):
                storage = item.untyped_storage()
                key = storage._cdata
                if key not in self._seen and key not in inputs:  # not a view, not in place
                    self._seen.add(key)
                    self.live += storage.nbytes()
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(storage, self._free, key, storage.nbytes())
        return out

    def _free(self, key: int, nbytes: int) -> None:
        self._seen.discard(key)
        self.live -= nbytes


def peak_and_estimate(call: Callable[[], Any]) -> tuple[int, int]:
    """Peak tensor bytes of ``call()`` and the largest estimate its memory checks made
    (``_memory.check`` is wrapped for the call, and restored after it)."""
    from oversquash_lens import _memory
    from oversquash_lens.analyzers._memory import total_bytes

    seen: list[int] = []
    check = _memory.check

    def spy(*args: Any, **kwargs: Any) -> None:
        estimated = {key: value for key, value in kwargs.items() if key != "advice"}
        seen.append(total_bytes(_memory.estimate(*args, **estimated)))
        check(*args, **kwargs)

    _memory.check = spy  # type: ignore[assignment]
    try:
        with TensorBytesPeak() as meter:
            call()
    finally:
        _memory.check = check  # type: ignore[assignment]
    return meter.peak, max(seen)
