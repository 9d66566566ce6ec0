"""How many vector-Jacobian products one batched backward pass may take in memory.

Exact sensitivity sends ``d_model`` cotangents through the graph of one forward pass;
they go in chunks (one vmapped backward per chunk, ``is_grads_batched``) sized here.
"""

import torch
from torch import Tensor

# Cotangents per batched backward pass (one vmapped backward, is_grads_batched): as many
# as fit in the memory budget, at most MAX_CHUNK. On this project's 2-core CPU
# (benchmarks/bench_sensitivity.py, SmolLM2-135M, y_n at 64 tokens) a chunk of 8..32 took
# 107 s for the 576 VJPs, 64 took 116 s, a loop of plain backward passes 136 s. On a GPU
# larger batches keep the device busy (not measured: this work had no GPU).
# CPU budget: 1 GiB; CUDA: half the free memory.
MAX_CHUNK = {"cpu": 32, "cuda": 256}
CPU_BUDGET = 1024**3
# What the memory check counts per VJP (chunk_bytes): the stream part of vjp_bytes and
# this many [heads, n, n] tensors. Measured on SmolLM2-135M (one VJP per backward, the
# peak above what the forward pass left): 2.2 at 512 tokens and 2.1 at 1024 keeping
# every block's graph; with checkpointed blocks, 6.0 and 4.8 with the recomputed block's
# graph (3 tensors in the estimate) included. vjp_bytes' 4 stays the chunk budget.
SCORE_TENSORS = 3


def vjp_bytes(batch: int, pos: int, d_model: int, element_size: int) -> int:
    """Bytes one VJP's backward holds (see :func:`auto_chunk` for the calibration)."""
    return element_size * batch * pos * (64 * d_model + pos * max(d_model // 16, 1))


def chunk_bytes(
    batch: int,
    pos: int,
    d_model: int,
    element_size: int,
    chunk: int | None,
    budget: int | None,
    most: int | None = None,
) -> int:
    """Bytes of one batched backward of ``chunk`` VJPs (never more than ``most``).

    ``chunk`` None: as many as :func:`auto_chunk` picks on the CPU within ``budget``;
    ``most``: the VJPs the whole computation needs (a run of 4 probes never batches 32).
    """
    if chunk is None:
        per_vjp = vjp_bytes(batch, pos, d_model, element_size)
        chunk = max(1, min(MAX_CHUNK["cpu"], (budget or CPU_BUDGET) // max(per_vjp, 1)))
    if most is not None:
        chunk = max(1, min(chunk, most))
    heads = max(d_model // 64, 1)
    return chunk * element_size * batch * pos * (64 * d_model + SCORE_TENSORS * heads * pos)


def auto_chunk(x: Tensor, memory_budget: int | None = None) -> int:
    """VJPs per batched backward pass for this input, device and memory budget.

    One VJP's backward holds, per batch row, about ``64·d_model`` values per position
    (MLP and attention intermediates and their gradients) plus attention-score gradients
    ``~4·n_heads·pos`` per position (``n_heads`` guessed as ``d_model/64``): calibrated on
    SmolLM2-135M at 256 tokens (42 MB per VJP measured, 47 MB estimated).

    Example:
        >>> import torch
        >>> auto_chunk(torch.zeros(1, 64, 576)), auto_chunk(torch.zeros(1, 4096, 576))
        (32, 1)
    """
    device = x.device.type
    batch, pos, d_model = x.shape
    per_vjp = vjp_bytes(batch, pos, d_model, x.element_size())
    if memory_budget is None:
        if device == "cuda":
            free, _ = torch.cuda.mem_get_info(x.device)
            memory_budget = free // 2
        else:
            memory_budget = CPU_BUDGET
    cap = MAX_CHUNK.get(device, MAX_CHUNK["cpu"])
    return int(max(1, min(cap, memory_budget // max(per_vjp, 1))))
