"""Gradient runs with checkpointed blocks: the same numbers, one block's graph at a time.

``capture.checkpointed_blocks`` makes every block keep only its inputs; the backward
passes recompute each block when they reach it. The Jacobian norms must be bit-identical
to a run that keeps every graph (the same operations on the same values), the memory
must drop to about one block's graph, observers must not record the recomputation, and
the blocks must be restored however the block ends.
"""

from typing import Any

import pytest
import torch

import oversquash_lens as osl
from oversquash_lens import _memory
from oversquash_lens.analyzers._memory import total_bytes
from oversquash_lens.analyzers._sensitivity import Sensitivity
from oversquash_lens.capture import blocks_checkpointed, checkpointed_blocks

from .helpers import hook_registry, peak_and_estimate


@pytest.fixture
def tiny_llama(load: Any, backend: str) -> Any:
    return load("tiny-llama", backend)


@pytest.fixture
def tiny_gpt2(load: Any, backend: str) -> Any:
    return load("tiny-gpt2", backend)


def _tokens(model: Any, n: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(3, osl.ModelAdapter(model).d_vocab, (1, n), generator=generator)


def _restored(model: Any) -> bool:
    return not blocks_checkpointed(model) and all("forward" not in vars(b) for b in model.blocks)


METHODS = {
    # chunks of 2 and 8 go through one vmapped backward (is_grads_batched) each
    "hutchinson": {"method": "hutchinson", "probes": 6, "chunk_size": 2},
    "exact": {"method": "exact", "chunk_size": 8},
    "frozen": {"method": "hutchinson", "probes": 4, "attention": "frozen", "chunk_size": 1},
    "power": {"method": "power", "iterations": 4},  # double backward through the blocks
}


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_checkpointed_blocks_give_the_same_numbers(
    load: Any, backend: str, name: str, method: str
) -> None:
    """Bit-identical norms (and standard errors) with and without checkpointing, for
    every layer's output point; the provenance says which ran; the blocks are restored."""
    model = load(name, backend)
    tokens = _tokens(model, 12)
    kept = osl.sensitivity(model, tokens, checkpoint=False, **METHODS[method])
    before = hook_registry(model)
    recomputed = osl.sensitivity(model, tokens, checkpoint=True, **METHODS[method])
    assert torch.equal(kept.norms, recomputed.norms)
    if kept.stderr is not None:
        assert recomputed.stderr is not None and torch.equal(kept.stderr, recomputed.stderr)
    assert kept.provenance.extra["checkpoint"] is False
    assert recomputed.provenance.extra["checkpoint"] is True
    assert _restored(model) and hook_registry(model) == before


def test_trace_with_checkpointed_blocks_gives_the_same_numbers(tiny_llama: Any) -> None:
    """trace's doubled batch (full and frozen copies, detached patterns in the second
    half) recomputed block by block: the same full, frozen and score-path numbers."""
    model, tokens = tiny_llama, _tokens(tiny_llama, 12)
    kept = osl.trace(model, tokens, probes=4, path_methods=["bound"], checkpoint=False)
    recomputed = osl.trace(model, tokens, probes=4, path_methods=["bound"], checkpoint=True)
    assert torch.equal(kept.sensitivity, recomputed.sensitivity)
    assert kept.sensitivity_stderr is not None and recomputed.sensitivity_stderr is not None
    assert torch.equal(kept.sensitivity_stderr, recomputed.sensitivity_stderr)
    assert _restored(model)


def _peak(model: Any, tokens: torch.Tensor, checkpoint: bool) -> tuple[int, int]:
    """Peak tensor bytes of a Hutchinson run, and the largest estimate its checks made."""
    return peak_and_estimate(
        lambda: osl.sensitivity(model, tokens, method="hutchinson", probes=4, checkpoint=checkpoint)
    )


def test_checkpointing_holds_one_blocks_graph_and_the_estimate_bounds_it(tiny_llama: Any) -> None:
    """At 384 tokens (attention patterns dominate: tiny-llama's d_model is 64) the
    checkpointed run holds the graph of one block fewer (tiny-llama has two): at least 3
    of its [heads, n, n] tensors (the softmax output, the masked scores, the pattern the
    value product saved) less than the run keeping both graphs. Its estimate is an upper
    bound within 6× of the measured peak, as for every other run."""
    n = 384
    tokens = _tokens(tiny_llama, n)
    full, _ = _peak(tiny_llama, tokens, checkpoint=False)
    recomputed, estimated = _peak(tiny_llama, tokens, checkpoint=True)
    adapter = osl.ModelAdapter(tiny_llama)
    patterns = adapter.n_heads * n * n * 4
    assert full - recomputed >= 3 * (adapter.n_layers - 1) * patterns, (full, recomputed)
    assert recomputed <= estimated <= 6 * recomputed, (recomputed, estimated)


def test_checkpointing_is_chosen_when_the_graph_would_not_fit(tiny_llama: Any) -> None:
    """Under a limit that the full graph exceeds but one block's graph fits, the run is
    checkpointed (and says so) with the numbers of the unchecked run; under a limit below
    both it is refused before any work; ``checkpoint=False`` refuses rather than switch."""
    model, tokens = tiny_llama, _tokens(tiny_llama, 300)
    adapter = osl.ModelAdapter(model)
    analyzer = Sensitivity(method="hutchinson", probes=4)
    names = {"s": analyzer.hook_names(adapter)}

    def need(checkpoint: bool) -> int:
        parts = _memory.estimate(
            adapter, [analyzer], names, 1, 300, grad=True, checkpoint=checkpoint
        )
        return total_bytes(parts)

    assert need(True) < need(False)
    with osl.memory_limit(None):
        reference = osl.sensitivity(model, tokens, method="hutchinson", probes=4)
    assert reference.provenance.extra["checkpoint"] is False
    between = (need(True) + need(False)) // 2
    with osl.memory_limit(between):
        chosen = osl.sensitivity(model, tokens, method="hutchinson", probes=4)
        with pytest.raises(osl.InsufficientMemoryError, match="checkpoint=True"):
            osl.sensitivity(model, tokens, method="hutchinson", probes=4, checkpoint=False)
    assert chosen.provenance.extra["checkpoint"] is True
    assert torch.equal(chosen.norms, reference.norms)
    with osl.memory_limit(need(True) - 1), pytest.raises(osl.InsufficientMemoryError) as caught:
        osl.sensitivity(model, tokens, method="hutchinson", probes=4)
    assert "one block's autograd graph" in str(caught.value) or "checkpointed" in str(caught.value)
    assert _restored(model)


def test_observers_see_one_pass_and_the_blocks_come_back_after_an_error(tiny_llama: Any) -> None:
    """The recomputation in the backward pass is not a new run for attach's observers
    (one run, the same residual norms); a block that raises inside the checkpointed block
    leaves every block as it was."""
    model, tokens = tiny_llama, _tokens(tiny_llama, 10)
    sens = Sensitivity(method="hutchinson", probes=4, layers="final")
    norms = osl.ResidualNorms()
    with osl.attach(model, norms) as plain:
        model(tokens)
    with (
        osl.attach(model, sens, norms) as rec,
        osl.capture.frozen_parameters(model),
        torch.enable_grad(),
        checkpointed_blocks(model),
    ):
        model(tokens)
        rec.result(sens)  # the backward passes recompute every block here
        assert rec.n_runs == 1
    assert torch.equal(rec.result(norms).norms, plain.result(norms).norms)
    assert _restored(model)
    with pytest.raises(ZeroDivisionError):
        with checkpointed_blocks(model):
            assert blocks_checkpointed(model)
            raise ZeroDivisionError
    assert _restored(model)
