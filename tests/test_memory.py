"""The up-front memory check: requests that cannot fit are refused before any work.

The estimate (``analyzers/_memory.py``) must be an upper bound of what a run really holds
(else the check lets through runs that then run out of memory) and not far above it (else
it refuses runs that fit). Both are measured here with the dispatch-mode meter of
``helpers.TensorBytesPeak``; a refused run must leave no trace: no block ran, no hook left.
"""

from typing import Any

import pytest
import torch

import oversquash_lens as osl
from oversquash_lens import _memory
from oversquash_lens.analyzers._memory import ModelShape, forward_parts, gib, needed, total_bytes
from oversquash_lens.analyzers._paths import AttentionPaths
from oversquash_lens.analyzers._sensitivity import Sensitivity
from oversquash_lens.analyzers._vjp_budget import vjp_bytes

from .helpers import hook_registry, peak_and_estimate

KiB = 1024


@pytest.fixture
def tiny_llama(load: Any, backend: str) -> Any:
    return load("tiny-llama", backend)


RUNS = {
    "paths": lambda model, tokens: osl.attention_paths(model, tokens),
    "hutchinson": lambda model, tokens: osl.sensitivity(model, tokens, method="hutchinson"),
    "frozen": lambda model, tokens: osl.sensitivity(
        model, tokens, method="hutchinson", attention="frozen"
    ),
    "trace": lambda model, tokens: osl.trace(model, tokens, probes=8),
    "view": lambda model, tokens: osl.render.attention_heads(model, tokens, paths=False),
    "collapse": lambda model, tokens: osl.collapse(
        model, osl.tasks.repeated_last("1"), range(1, tokens.shape[-1] - 1), ["float32"]
    ),
}


def _tokens(model: Any, n: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(3, osl.ModelAdapter(model).d_vocab, (1, n), generator=generator)


class BlockCalls:
    """Counts calls of the first block on long inputs (a torch forward pre-hook, removed
    on exit): short checks the analyses make first (is the model causal?) are not work."""

    def __init__(self, model: Any) -> None:
        self.block = model.blocks[0]
        self.calls = 0

    def __enter__(self) -> "BlockCalls":
        self.handle = self.block.register_forward_pre_hook(self._count)
        return self

    def _count(self, module: Any, args: tuple[Any, ...]) -> None:
        self.calls += int(args[0].shape[1] >= 100)

    def __exit__(self, *_: Any) -> None:
        self.handle.remove()


@pytest.mark.parametrize("run", sorted(RUNS))
def test_refused_before_any_work_with_the_estimate_in_the_message(
    tiny_llama: Any, run: str
) -> None:
    """Under a limit below the estimate, every analysis raises InsufficientMemoryError
    before the first block runs; the message gives the estimate and the free memory, and
    the model keeps no hook of the refused run."""
    model = tiny_llama
    tokens = _tokens(model, 200)
    before = hook_registry(model)
    with BlockCalls(model) as blocks, osl.memory_limit(64 * KiB):
        with pytest.raises(osl.InsufficientMemoryError) as caught:
            RUNS[run](model, tokens)
    assert blocks.calls == 0
    message = str(caught.value)
    assert "of host memory but 64 KiB is free" in message and "Nothing has run" in message
    assert "needs about " in message and "osl.memory_limit(None)" in message
    assert hook_registry(model) == before
    # The same call runs when the limit is off, and under the machine's own limit.
    with osl.memory_limit(None):
        RUNS[run](model, tokens[:, :20])
    RUNS[run](model, tokens[:, :20])


@pytest.mark.parametrize("run", ["paths", "hutchinson", "frozen", "trace"])
def test_estimate_bounds_the_measured_peak(tiny_llama: Any, run: str) -> None:
    """Estimate ≥ the peak tensor memory the run creates, and within 6× of it, at a
    length where the attention patterns dominate (n = 384; tiny-llama's d_model = 64)."""
    measured, estimated = peak_and_estimate(lambda: RUNS[run](tiny_llama, _tokens(tiny_llama, 384)))
    assert measured <= estimated <= 6 * measured, (gib(measured), gib(estimated))


def test_memory_limit_validates_and_restores() -> None:
    for bad in (0, -1, True):  # (a float or a string is refused by the type too)
        with pytest.raises(ValueError, match="positive number of bytes"):
            with osl.memory_limit(bad):  # type: ignore[arg-type]
                pass
    with osl.memory_limit(None):
        assert _memory._LIMIT.get() is None
        with osl.memory_limit(5):
            assert _memory._LIMIT.get() == 5
        assert _memory._LIMIT.get() is None
    assert _memory._LIMIT.get() == "auto"


SMOLLM2 = ModelShape(30, 9, 576, 1536, 49152, 4, 538_000_000)


def test_smollm2_full_context_estimates() -> None:
    """SmolLM2-135M (float32) at its full 8192 tokens: a no-grad pass fits in this
    machine's 24 GiB (one layer's attention, 5 × 2.25 GiB, dominates), a pass that keeps
    the autograd graph of all 30 layers does not (3 × 2.25 GiB per layer); with its
    blocks checkpointed a Hutchinson run fits (one block's graph and one VJP at a time),
    trace's doubled batch does not (its forward phase alone is 2 × 5 × 2.25 GiB)."""
    no_grad = total_bytes(forward_parts(SMOLLM2, 1, 8192, grad=False))
    graph = total_bytes(forward_parts(SMOLLM2, 1, 8192, grad=True))
    assert 10 * 2**30 < no_grad < 16 * 2**30
    assert graph > 200 * 2**30
    paths = AttentionPaths().memory_parts(SMOLLM2, [], 1, 8192)
    assert sum(p.nbytes for p in paths) == 3 * 8192 * 8192 * 8  # P, transition, block
    backward = Sensitivity(method="hutchinson").memory_parts(SMOLLM2, [], 1, 8192)
    # one VJP per pass (the chunk budget allows no more): the stream part and 3 [9, n, n]
    assert backward[0].nbytes == 4 * 8192 * (64 * 576 + 3 * 9 * 8192)  # 7.9 GiB
    assert vjp_bytes(1, 8192, 576, 4) > 2**30  # so auto_chunk picks 1
    for attention, batch, fits in (("full", 1, True), ("frozen", 1, True), ("split", 2, False)):
        sens = Sensitivity(method="hutchinson", attention=attention)
        parts = forward_parts(SMOLLM2, batch, 8192, grad=True, checkpoint=True)
        parts += sens.memory_parts(SMOLLM2, [], batch, 8192)
        assert (total_bytes(parts) < 18 * 2**30) == fits, (attention, gib(total_bytes(parts)))


def test_layers_split_across_devices_share_the_graph(tiny_llama: Any, monkeypatch) -> None:
    """A model split over two devices needs half the graph on each, and each device's
    own limit decides: the check compares per device, not the sum."""
    model = tiny_llama
    adapter = osl.ModelAdapter(model)
    devices = [torch.device("cuda:0"), torch.device("cuda:1")]
    monkeypatch.setattr(_memory, "_layer_devices", lambda m: devices * (adapter.n_layers // 2))
    analyzers = [Sensitivity(method="hutchinson")]
    names = {"Sensitivity": analyzers[0].hook_names(adapter)}
    parts = _memory.estimate(adapter, analyzers, names, 1, 256, grad=True)
    whole = needed((p.phase, p.nbytes) for p in parts if not p.host)
    split = needed((p.phase, p.nbytes / (2 if p.per_layer else 1)) for p in parts if not p.host)
    assert split < whole
    with osl.memory_limit(int(split) + 1):
        _memory.check(adapter, analyzers, names, 1, 256, grad=True)  # fits on each
    with osl.memory_limit(int(split) - 1), pytest.raises(osl.InsufficientMemoryError):
        _memory.check(adapter, analyzers, names, 1, 256, grad=True)


def test_trace_refuses_its_gradient_pass_before_the_path_passes(tiny_llama: Any) -> None:
    """trace runs its path passes (no graph) before the gradient pass: under a limit that
    the path passes fit but the doubled-batch gradient pass does not, it must refuse
    before the first of them."""
    model = tiny_llama
    adapter = osl.ModelAdapter(model)
    tokens = _tokens(model, 200)
    paths = AttentionPaths()
    needs_paths = total_bytes(
        _memory.estimate(adapter, [paths], {"p": paths.hook_names(adapter)}, 1, 200, grad=False)
    )
    split = Sensitivity(attention="split", method="hutchinson", probes=8)
    names = {"s": split.hook_names(adapter)}
    # even with its blocks recomputed (what trace falls back to) the pass does not fit
    needs_grad = total_bytes(
        _memory.estimate(adapter, [split], names, 2, 200, grad=True, checkpoint=True)
    )
    assert needs_paths < needs_grad
    with BlockCalls(model) as blocks, osl.memory_limit((needs_paths + needs_grad) // 2):
        with pytest.raises(osl.InsufficientMemoryError, match="attention='full'"):
            osl.trace(model, tokens, probes=8)  # the advice: one copy of the prompt
    assert blocks.calls == 0
