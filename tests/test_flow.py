"""Rank correlations and osl.trace (FlowResult)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import oversquash_lens as osl
from oversquash_lens import _hooknames as names
from oversquash_lens.analyzers._ranks import average_ranks, kendall, spearman

from .conftest import BACKENDS
from .helpers import assert_close, hook_registry, leftover_hooks

small_ints = st.lists(st.integers(0, 5), min_size=3, max_size=12)


def _kendall_tau_b(x: list[float], y: list[float]) -> float:
    """Textbook τ-b by explicit pair loops (slow reference)."""
    concordant = discordant = ties_x = ties_y = 0
    n = len(x)
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif dx * dy > 0:
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denominator if denominator else math.nan


@settings(max_examples=80, deadline=None)
@given(small_ints, st.randoms(use_true_random=False))
def test_kendall_matches_pair_loops(values: list[int], rng) -> None:
    x = [float(v) for v in values]
    y = [float(rng.randint(0, 4)) for _ in values]
    expected = _kendall_tau_b(x, y)
    got = float(kendall(torch.tensor(x), torch.tensor(y), block=2))
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.permutations(list(range(10))))
def test_spearman_closed_form_without_ties(order: list[int]) -> None:
    x = torch.arange(10, dtype=torch.float64)
    y = torch.tensor(order, dtype=torch.float64)
    d2 = float(((x - y) ** 2).sum())
    assert float(spearman(x, y)) == pytest.approx(1 - 6 * d2 / (10 * 99), abs=1e-12)


def test_average_ranks_and_batching() -> None:
    assert average_ranks(torch.tensor([2.0, 2.0, 1.0, 5.0])).tolist() == [2.5, 2.5, 1.0, 4.0]
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(3, 4, 50, generator=gen), torch.randn(3, 4, 50, generator=gen)
    batched = kendall(x, y, block=7)
    for i in range(3):
        for j in range(4):
            assert float(batched[i, j]) == pytest.approx(float(kendall(x[i, j], y[i, j])))
    assert float(spearman(x[0, 0], x[0, 0])) == pytest.approx(1.0)
    assert float(kendall(x[0, 0], -x[0, 0])) == pytest.approx(-1.0)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_trace_pairs_layers_and_round_trips(load, backend: str, name: str, tmp_path) -> None:
    model = load(name, backend)
    before = hook_registry(model)
    flow = osl.trace(model, "1 1 1 2 1 1 1 1", method="exact", attention="full")
    assert not leftover_hooks(model, before)
    n_layers = model.cfg.n_layers
    assert flow.points[-1] == names.FINAL_NORM
    assert flow.path_layers == (*range(n_layers), n_layers - 1)
    paths = osl.attention_paths(model, "1 1 1 2 1 1 1 1")
    torch.testing.assert_close(flow.paths[:, :n_layers], paths.weights, rtol=0, atol=0)
    measured = osl.sensitivity(model, "1 1 1 2 1 1 1 1", method="exact")
    torch.testing.assert_close(flow.sensitivity, measured.norms.double(), rtol=0, atol=0)
    both = osl.trace(model, "1 1 1 2 1 1 1 1", method="exact")  # one doubled-batch pass
    frozen = osl.sensitivity(model, "1 1 1 2 1 1 1 1", method="exact", attention="frozen")
    # The doubled batch changes the order of float32 sums: the same numbers to rounding.
    assert_close(both.sensitivity, measured.norms.double(), torch.float32)
    assert_close(both.measure("frozen"), frozen.norms.double(), torch.float32)
    for k in range(len(flow.points)):
        expected = spearman(flow.sensitivity[0, k], flow.paths[0, k])
        assert float(flow.spearman[0, k]) == pytest.approx(float(expected))
    loaded = osl.FlowResult.load(flow.save(tmp_path / "flow"))
    assert torch.equal(loaded.kendall, flow.kendall) and loaded.points == flow.points
    table = flow.to_dataframe()
    assert len(table) == len(flow.points) * flow.sensitivity.shape[-1]
    table = flow.agreement()  # one row per point, proxy and measurement
    assert len(table) == len(flow.points) * len(flow.proxy_methods) * len(flow.measures)


def test_trace_plots(load) -> None:
    import matplotlib

    matplotlib.use("Agg")
    flow = osl.trace(load("tiny-llama", BACKENDS[0]), "1 2 1 2 1", probes=8)
    assert flow.sensitivity_method == "hutchinson"
    assert bool((flow.sensitivity_stderr > 0).any())
    fig = flow.plot()
    assert len(fig.axes) >= 4
