"""Representational collapse: metrics, the probe, osl.collapse and its result."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import oversquash_lens as osl
from oversquash_lens import _hooknames as names
from oversquash_lens._run_precision import parse_precision
from oversquash_lens.analyzers import _collapse_probe as probe_module
from oversquash_lens.analyzers._collapse_math import (
    compare_in_format,
    distances,
    first_stable,
    metric_index,
)
from oversquash_lens.analyzers._collapse_plan import plan
from oversquash_lens.analyzers._collapse_probe import _Stack, _stack_releasing, _stacked
from oversquash_lens.precision import round_to_format, ulp_distance

from .conftest import BACKENDS
from .helpers import hook_registry, leftover_hooks, state_of

LINF = metric_index("linf")
floats = st.floats(-1e3, 1e3, allow_nan=False, width=32)


# ---------------------------------------------------------------- pure math
def test_distances_closed_forms() -> None:
    a = torch.tensor([3.0, 0.0, -1.0])
    b = torch.tensor([0.0, 4.0, -1.0])
    l1, l2, linf, cosine = distances(a, b).tolist()
    assert (l1, l2, linf) == (7.0, 5.0, 4.0)
    assert cosine == pytest.approx(1 - 1 / (math.sqrt(10) * math.sqrt(17)), abs=1e-15)
    zero = torch.zeros(3)
    assert distances(zero, zero).tolist() == [0.0, 0.0, 0.0, 0.0]
    assert distances(zero, a)[3] == 1.0  # one zero vector: cosine distance 1 by convention


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(floats, floats), min_size=1, max_size=16))
def test_distance_properties(values: list[tuple[float, float]]) -> None:
    a = torch.tensor([v[0] for v in values], dtype=torch.float32)
    b = torch.tensor([v[1] for v in values], dtype=torch.float32)
    ab, ba = distances(a, b), distances(b, a)
    torch.testing.assert_close(ab, ba, rtol=0, atol=0)  # symmetric
    l1, l2, linf, cosine = ab.tolist()
    # Norm inequalities, with float64 rounding slack (values are exact in float64 but the
    # reductions round at ~1e-16 relative).
    assert linf <= l2 * (1 + 1e-12) and l2 <= l1 * (1 + 1e-12)
    assert -1e-12 <= cosine <= 2 + 1e-12
    assert (linf == 0) == bool(torch.equal(a, b))


def test_compare_in_format_agrees_with_torch_casts() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(64, 32, generator=gen)
    scale = torch.where(torch.arange(64) % 2 == 0, 2.0**-22, 2.0**-3)[:, None]
    b = a + torch.randn(64, 32, generator=gen) * scale  # tiny (mostly equal) / large steps
    cmp = compare_in_format(a, b, "bfloat16")
    expected = (a.bfloat16() == b.bfloat16()).all(-1)
    assert torch.equal(cmp.bitwise_equal, expected)
    assert 0 < int(expected.sum()) < 64  # both outcomes are exercised
    linf = (a.bfloat16().double() - b.bfloat16().double()).abs().amax(-1)
    torch.testing.assert_close(cmp.linf, linf, rtol=0, atol=0)
    torch.testing.assert_close(cmp.eps_ratio, linf / 2**-7, rtol=0, atol=0)
    assert torch.equal(cmp.ulps == 0, expected)


@pytest.mark.parametrize("fmt", ["float32", "bfloat16", "float16", "float64"])
def test_native_ulp_fast_path_matches_the_general_one(fmt: str) -> None:
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(8, 256, generator=gen, dtype=torch.float64) * 10.0 ** torch.randint(
        -6, 6, (8, 1), generator=gen
    )
    b = a * (1 + torch.randn(8, 256, generator=gen, dtype=torch.float64) * 1e-3)
    b[0, :4] = torch.tensor([0.0, -0.0, float("inf"), -a[0, 3]])  # zero, sign, overflow
    fast = compare_in_format(a, b, fmt)
    general = ulp_distance(round_to_format(a, fmt), round_to_format(b, fmt), fmt).amax(-1)
    torch.testing.assert_close(fast.ulps, general, rtol=0, atol=0)


def test_first_stable_and_inverse_law() -> None:
    assert first_stable(torch.tensor([False, True, False, True, True])) == 3
    assert first_stable(torch.tensor([True, True])) == 0
    assert first_stable(torch.tensor([True, False])) is None
    result = _synthetic_result([1, 2, 5, 10, 100], [3.0 / k for k in [1, 2, 5, 10, 100]])
    length = result.collapse_length("float32", "epsilon")
    assert length.fit is not None and length.fit.slope == pytest.approx(-1.0, abs=1e-12)
    assert length.predicted == pytest.approx(3.0 / 2**-23, rel=1e-12)
    assert length.measured is None  # 0.03 at k = 100 is far above float32's epsilon
    loose = result.collapse_length("bfloat16", "epsilon")
    assert loose.predicted == pytest.approx(3.0 * 128, rel=1e-12) and loose.measured is None
    assert result.collapse_length("bfloat16", "bits").measured == 10  # set below


def _synthetic_result(lengths: list[int], curve: list[float]) -> osl.CollapseResult:
    """A hand-made result: float32 and bfloat16 rows with the same distance curve."""
    n_len, n_points = len(lengths), 2
    distances = torch.zeros(2, n_len, n_points, 4, dtype=torch.float64)
    distances[:, :, :, LINF] = torch.tensor(curve, dtype=torch.float64)[None, :, None]
    equal = torch.zeros(2, n_len, n_points, dtype=torch.bool)
    equal[1, 3:] = True
    provenance = osl.Provenance("hand-made", "hooked", None, "float32", "cpu", "eager", None, "")
    return osl.CollapseResult(
        lengths=tuple(lengths),
        precisions=("float32", "bfloat16"),
        formats=("float32", "bfloat16"),
        points=(names.FINAL_NORM, "logits"),
        head_layers=(),
        distances=distances,
        noise=torch.zeros_like(distances),
        head_distances=torch.zeros(2, n_len, 0, 0, 4, dtype=torch.float64),
        head_noise=torch.zeros(2, n_len, 0, 0, 4, dtype=torch.float64),
        bitwise_equal=equal,
        ulps=torch.zeros(2, n_len, n_points, dtype=torch.float64),
        eps_ratio=torch.zeros(2, n_len, n_points, dtype=torch.float64),
        argmax_a=torch.zeros(2, n_len, dtype=torch.long),
        argmax_b=torch.zeros(2, n_len, dtype=torch.long),
        continuation_equal=torch.full((2, n_len), -1, dtype=torch.long),
        continuation=0,
        family="hand-made",
        mode="independent",
        passes=0,
        provenance=provenance,
    )


def test_plan_shares_prefix_chains() -> None:
    seqs = [(tuple([0] + [7] * k), tuple([0] + [7] * (k + 1))) for k in range(1, 9)]
    (unit,) = plan(seqs, "shared")
    assert len(unit.passes) == 2 and unit.passes[0] == seqs[-1][1]
    assert unit.passes[1] == seqs[-1][1][:-1]
    assert all(n is not None for n in unit.noise)
    assert len(plan(seqs, "independent")) == 8
    # Not prefix-shaped (a fixed final token): every pair gets its own two passes.
    fixed = [(tuple([7] * k + [3]), tuple([7] * (k + 1) + [3])) for k in range(1, 4)]
    units = plan(fixed, "shared")
    assert [len(u.passes) for u in units] == [2, 2, 2]
    assert units[0].noise[0] == ((0, 0), (1, 0))  # last common position: the last 7 of A_1
    with pytest.raises(ValueError, match="mode"):
        plan(seqs, "both")  # type: ignore[arg-type]


def test_parse_precision() -> None:
    assert parse_precision("bf16").native and parse_precision("bf16").label == "bfloat16"
    emulated = parse_precision("emulate:e5m3")
    assert not emulated.native and emulated.fmt.mantissa_bits == 3
    with pytest.raises(osl.UnsupportedPrecisionError, match="emulate:float8_e4m3"):
        parse_precision("float8_e4m3")
    with pytest.raises(osl.UnknownPrecisionError):
        parse_precision("float12")


# ---------------------------------------------------------------- probe
def test_probe_compare_matches_a_cache(load, backend: str) -> None:
    model = load("tiny-llama", backend)
    t1, t2 = model.to_tokens("1 1 1"), model.to_tokens("1 1 1 1")
    before = hook_registry(model)
    with osl.attach(model, osl.CollapseProbe()) as rec:
        _, c1 = model.run_with_cache(t1)
        logits2, c2 = model.run_with_cache(t2)
    cmp = rec.compare(0, 1)
    assert not leftover_hooks(model, before)
    assert cmp.points[-2:] == (names.FINAL_NORM, "logits")
    y1, y2 = c1[names.FINAL_NORM][0, -1].double(), c2[names.FINAL_NORM][0, -1].double()
    assert cmp.distances[-2, LINF] == (y1 - y2).abs().max()
    z1, z2 = c1[names.z(1)][0, -1].double(), c2[names.z(1)][0, -1].double()
    torch.testing.assert_close(
        cmp.head_distances[1, :, LINF], (z1 - z2).abs().amax(-1), rtol=0, atol=0
    )
    assert cmp.argmax_b == int(logits2[0, -1].argmax())
    assert cmp.format == "float32"
    # The same run against itself: every distance is exactly zero.
    same = rec.compare(1, 1, precision="bfloat16")
    assert float(same.distances.abs().max()) == 0.0 and bool(same.bitwise_equal.all())


@pytest.mark.parametrize("positions", [[1, 2, 3], [0, 2, -1]], ids=["slice", "list"])
def test_probe_keeps_the_cache_values_of_every_run_without_restacking(
    load, backend: str, positions: list[int], monkeypatch
) -> None:
    """The probe copies each point straight into its run's stack: every kept value is the
    cached one, a later run never writes into an earlier run's stack, and compute() does
    not stack again (the copy it saves)."""
    model = load("tiny-llama", backend)

    def no_restack(*_: object) -> None:
        raise AssertionError("the kept points were stacked again")

    monkeypatch.setattr(probe_module, "_stack_releasing", no_restack)
    runs = [model.to_tokens("1 1 1 1"), model.to_tokens("1 2 1 2 1 2")]
    probe = osl.CollapseProbe(positions=positions)
    with osl.attach(model, probe) as rec:
        caches = [model.run_with_cache(tokens) for tokens in runs]
    for index, (logits, cache) in enumerate(caches):
        reps = rec.result(probe, index)  # computed after both runs
        at = list(reps.positions)
        for p, point in enumerate(reps.points):
            assert torch.equal(reps.residual[0, :, p], cache[point][0, at]), point
        for j, layer in enumerate(reps.head_layers):
            assert torch.equal(reps.heads[0, :, j], cache[names.z(layer)][0, at])
        assert torch.equal(reps.logits[0], logits[0, at])


def test_stack_falls_back_to_torch_stack_when_points_do_not_fit() -> None:
    """Points that fire out of order or in another dtype are copied on their own, and the
    run is stacked as torch.stack would (promoting dtypes)."""
    gen = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(1, 2, 3, generator=gen) for _ in range(3))
    stack = _Stack(["a", "b", "c"])
    kept = {"a": stack.put("a", a), "b": stack.put("b", b.bfloat16())}
    assert kept["b"] is None  # another dtype: not in the stack
    kept["b"] = b.bfloat16().clone()
    assert stack.put("c", c) is None  # the misfit closed the run's stack
    kept["c"] = c.clone()
    assert stack.put("b", b) is None
    out = _stacked(dict(kept), ["a", "b", "c"])  # type: ignore[arg-type]
    assert torch.equal(out, torch.stack([a, b.bfloat16().float(), c], dim=2))
    fresh = _Stack(["a", "b"])
    assert fresh.put("b", b) is None  # fired before the group's first point: no stack
    whole = {"a": fresh.put("a", a), "b": fresh.put("b", b)}
    assert torch.equal(_stacked(dict(whole), ["a", "b"]), torch.stack([a, b], dim=2))  # type: ignore[arg-type]
    assert fresh.put("b", c) is None  # the complete stack is closed: the run stays intact
    assert torch.equal(whole["b"], b)  # type: ignore[arg-type]


def test_probe_positions_and_refusals(load) -> None:
    model = load("tiny-gpt2", BACKENDS[0])
    with osl.attach(model, osl.CollapseProbe(positions=[0, -1], heads=0)) as rec:
        model(model.to_tokens("1 2 3"))
    reps = rec.result("CollapseProbe")
    assert isinstance(reps, osl.Representations)
    assert reps.positions == (0, 3) and reps.head_layers == (0,)
    first = rec.compare(0, 0, position_a=0, position_b=-1)
    assert first.distances[0, LINF] > 0
    with pytest.raises(KeyError, match="not kept"):
        rec.compare(0, 0, position_a=1)
    with pytest.raises(ValueError, match="does not exist"):
        with osl.attach(model, osl.CollapseProbe(heads=5)):
            pass


# ---------------------------------------------------------------- osl.collapse
def _reference_linf(model, tokens_a, tokens_b, point: str) -> float:
    """Slow reference: two plain cached runs, L∞ at the last positions in float64."""
    _, ca = model.run_with_cache(tokens_a[None])
    _, cb = model.run_with_cache(tokens_b[None])
    return float((ca[point][0, -1].double() - cb[point][0, -1].double()).abs().max())


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama", "tiny-nope"])
def test_collapse_matches_plain_runs(load, backend: str, name: str) -> None:
    model = load(name, backend)
    family = osl.tasks.repeated_last("1")
    lengths = [1, 2, 7]
    before, state = hook_registry(model), state_of(model)
    result = osl.collapse(model, family, lengths, ["float32"], progress=False)
    assert not leftover_hooks(model, before) and state_of(model) == state
    pairs = family.pairs(model, lengths)
    for i, pair in enumerate(pairs):
        for point in (names.FINAL_NORM, names.resid_post(0)):
            expected = _reference_linf(model, pair.a, pair.b, point)
            measured = float(result.distances[0, i, result.point_index(point), LINF])
            # Shared mode reads A_k from the longer pass: kernels on different lengths
            # differ by float32 rounding (~1e-6 here), which is exactly the noise floor.
            assert measured == pytest.approx(expected, abs=1e-5)
    assert result.mode == "shared" and result.passes == 2


def _assert_modes_agree(shared, independent, rotary_bridge: bool) -> None:
    gap = (shared.distances - independent.distances).abs()
    floor = torch.maximum(shared.noise, independent.noise).nan_to_num(0.0)
    if rotary_bridge:
        # Hugging Face rotary layers compute their angles in float32 whatever the model's
        # dtype (an explicit .float() in the rotary embedding), and the float32 matmul's
        # rounding depends on the sequence length: a float64 bridge over a rotary model
        # carries ~1e-7 relative noise in cos/sin, which the one-token noise floor does
        # not see (measured gap: 3e-5 on tiny-llama). Bound it at that level.
        slack = 1e-3 * shared.distances.abs().clamp_min(1.0)
    else:
        # float64 kernels on different sequence lengths differ by a few ulps (~1e-15
        # relative, ~1e-13 absolute measured); allow that on top of the noise floor.
        slack = 1e-11 * shared.distances.abs().clamp_min(1.0)
    assert bool((gap <= 4 * floor + slack).all()), float((gap - 4 * floor).max())


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_shared_and_independent_agree_within_the_noise_floor(load, backend, name: str) -> None:
    model = load(name, backend)
    family = osl.tasks.repeated_last("1")
    lengths = [1, 3, 10, 40]
    shared = osl.collapse(model, family, lengths, ["float64"], progress=False)
    independent = osl.collapse(
        model, family, lengths, ["float64"], mode="independent", progress=False
    )
    assert independent.passes == 2 * len(lengths) and shared.passes == 2
    _assert_modes_agree(shared, independent, backend == "bridge" and name == "tiny-llama")
    if backend == "hooked" or name == "tiny-gpt2":
        assert float(independent.noise.nan_to_num(0).max()) < 1e-12


@pytest.mark.parametrize("fmt", ["float32", "bfloat16", "emulate:float8_e4m3"])
def test_measuring_each_place_once_gives_the_per_pair_numbers(load, monkeypatch, fmt) -> None:
    """The sweep prepares each kept vector once and reads pairs as views of it: the same
    numbers, bit for bit, as comparing every pair on its own copies, for consecutive and
    scattered rows, rows from two passes, chunk edges, NaNs and tied logits."""
    from oversquash_lens import _collapse
    from oversquash_lens.analyzers._collapse_plan import Unit
    from oversquash_lens.analyzers._collapse_probe import compare_arrays

    model = load("tiny-llama", BACKENDS[0])
    spec = parse_precision(fmt, torch.device("cpu"), torch.float32).fmt
    family = osl.tasks.repeated_last("1")
    chain = plan(
        [(tuple(p.a.tolist()), tuple(p.b.tolist())) for p in family.pairs(model, range(1, 12))],
        "shared",
    )[0]
    reps = _collapse._run_passes(model, chain, True, torch.device("cpu"))
    row3, row4 = reps[0].positions.index(3), reps[0].positions.index(4)
    reps[0].residual[0, row3, 2, :5] = float("nan")  # one point of one place: NaN
    reps[0].logits[0, row4, :2] = reps[0].logits[0, row4].max()  # a tie for the top token
    # a floor between equal values (the usual case) is 0 without arithmetic: not when
    # both hold the same infinity, and ±0 are the same value
    row9 = [rep.positions.index(9) for rep in reps]
    assert torch.equal(reps[0].residual[0, row9[0]], reps[1].residual[0, row9[1]])
    for rep, row in zip(reps, row9, strict=True):
        rep.heads[0, row, 0, 0, 0] = float("inf")
    for pos in (6, 8):
        row = [rep.positions.index(pos) for rep in reps]
        reps[0].residual[0, row[0], 1, 0], reps[1].residual[0, row[1], 1, 0] = -0.0, 0.0
    unit = Unit(
        chain.passes,
        [0, 1, 2, 3, 4, 5, 6],
        a=[(0, 3), (0, 4), (1, 7), (0, 2), (0, 5), (1, 6), (0, 9)],
        b=[(0, 4), (0, 5), (0, 3), (1, 2), (0, 6), (0, 7), (0, 10)],
        noise=[
            ((0, 3), (1, 3)),
            None,
            ((1, 8), (0, 8)),
            ((0, 9), (1, 9)),
            ((0, 5), (1, 5)),  # this chunk's floors: equal values, ±0 included
            ((0, 6), (1, 6)),
            ((0, 4), (1, 2)),
        ],
    )
    monkeypatch.setattr(_collapse, "_CHUNK", 2)  # chunks of 2, 2, 2 and 1 pairs
    got = _collapse._measure(reps, unit, spec)

    def at(place):
        rep = reps[place[0]]
        row = rep.positions.index(place[1])
        return rep.residual[0, row].clone(), rep.heads[0, row].clone(), rep.logits[0, row].clone()

    for j in range(len(unit.pairs)):
        (ra, ha, la), (rb, hb, lb) = at(unit.a[j]), at(unit.b[j])
        want = compare_arrays(ra, rb, ha, hb, la, lb, spec)
        floor_at = unit.noise[j]
        if floor_at is None:
            want["noise"] = torch.full_like(want["distances"], float("nan"))
            want["head_noise"] = torch.full_like(want["head_distances"], float("nan"))
        else:
            (r1, h1, l1), (r2, h2, l2) = at(floor_at[0]), at(floor_at[1])
            logit_floor = distances(l1, l2).unsqueeze(0)
            want["noise"] = torch.cat([distances(r1, r2), logit_floor])
            want["head_noise"] = distances(h1, h2)
        for key, expected in want.items():
            torch.testing.assert_close(got[key][j], expected, rtol=0, atol=0, equal_nan=True)
    assert bool(got["ulps"][0].isnan().any()) and bool(got["distances"][0].isnan().any())
    assert bool(got["head_noise"][3].isnan().any())  # inf - inf: NaN, not a shortcut's 0
    assert float(got["noise"][4:6].abs().max()) == 0.0  # equal floors, ±0 included
    assert int(got["argmax_a"][1]) == 0  # the first of the tied tokens


def test_fixed_final_family_runs_pairwise(load) -> None:
    model = load("tiny-gpt2", BACKENDS[0])
    result = osl.collapse(model, osl.tasks.fixed_final("1", "0"), [1, 4], progress=False)
    assert result.passes == 4
    assert bool(result.noise[0, :, 0].isfinite().all())  # a common prefix exists
    assert float(result.distances[0, 0, result.point_index(), LINF]) > 1e-3


def test_precisions_formats_and_equality_implies_same_answer(load, backend: str) -> None:
    # NoPE without BOS: the repeated token's representation does not depend on k, so
    # pairs are equal up to rounding and some collapse bitwise in coarse formats.
    model = load("tiny-nope", backend)
    family = osl.tasks.repeated_last("1", bos=False)
    result = osl.collapse(
        model,
        family,
        [1, 2, 3, 8, 30],
        ["float32", "bfloat16", "emulate:bfloat16", "emulate:e4m2"],
        progress=False,
    )
    assert result.formats == ("float32", "bfloat16", "bfloat16", "e4m2")
    logits = result.point_index("logits")
    equal = result.bitwise_equal[:, :, logits]
    assert bool(equal[-1].all())  # 2 mantissa bits cannot tell these logits apart
    same_answer = result.argmax_a == result.argmax_b
    assert bool(same_answer[equal].all())  # equal final states give equal answers
    length = result.collapse_length("emulate:e4m2", "bits", point="logits")
    assert length.measured == 1 and length.reference == "float32"


def test_continuations_and_table(load) -> None:
    model = load("tiny-llama", BACKENDS[0])
    result = osl.collapse(
        model, osl.tasks.repeated_last("1"), [1, 2], ["float32"], continuation=2, progress=False
    )
    assert set(result.continuation_equal.flatten().tolist()) <= {0, 1}
    table = result.to_dataframe()
    assert len(table) == 2 * len(result.points)
    assert {"linf", "noise_linf", "bitwise_equal", "ulps", "argmax_equal"} <= set(table.columns)
    heads = result.heads_dataframe()
    assert len(heads) == 2 * model.cfg.n_layers


def test_save_load_plot(load, tmp_path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    model = load("tiny-gpt2", BACKENDS[0])
    result = osl.collapse(
        model, osl.tasks.repeated_last("1"), [1, 2, 5], ["float32", "bf16"], progress=False
    )
    path = result.save(tmp_path / "collapse")
    loaded = osl.CollapseResult.load(path)
    assert torch.equal(loaded.distances, result.distances)
    assert torch.equal(loaded.bitwise_equal, result.bitwise_equal)
    assert loaded.lengths == result.lengths and loaded.points == result.points
    assert loaded.family_params == result.family_params
    ax = result.plot().axes[0]
    assert ax.get_xscale() == "log" and len(ax.lines) >= 4
    result.plot(layer=None, point=names.FINAL_NORM)


def test_checkpoint_resumes(load, tmp_path, monkeypatch) -> None:
    import oversquash_lens._collapse as module

    model = load("tiny-gpt2", BACKENDS[0])
    family = osl.tasks.repeated_last("1")
    checkpoint = tmp_path / "sweep.pt"
    first = osl.collapse(model, family, [1, 2], progress=False, checkpoint=checkpoint)
    assert checkpoint.exists()

    def no_passes(*args, **kwargs):
        raise AssertionError("a resumed sweep must not run finished units again")

    monkeypatch.setattr(module, "_run_passes", no_passes)
    again = osl.collapse(model, family, [1, 2], progress=False, checkpoint=checkpoint)
    assert torch.equal(again.distances, first.distances)
    with pytest.raises(osl.CheckpointMismatchError, match="another model or sweep"):
        osl.collapse(model, family, [1, 3], progress=False, checkpoint=checkpoint)


def test_bad_input(load) -> None:
    model = load("tiny-gpt2", BACKENDS[0])
    family = osl.tasks.repeated_last("1")
    with pytest.raises(osl.EmptySequenceError):
        osl.collapse(model, family, [], progress=False)
    with pytest.raises(osl.PromptTooLongError):
        osl.collapse(model, family, [model.cfg.n_ctx + 5], progress=False)
    with pytest.raises(osl.UnsupportedPrecisionError, match="emulate:"):
        osl.collapse(model, family, [1], ["float8_e5m2"], progress=False)
    with pytest.raises(ValueError, match="mode"):
        osl.collapse(model, family, [1], mode="joint", progress=False)  # type: ignore[arg-type]


def test_collapse_restores_model_after_failure(load, monkeypatch) -> None:
    import oversquash_lens._collapse as module

    model = load("tiny-llama", BACKENDS[0])
    before, state = hook_registry(model), state_of(model)

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(module, "_measure", broken)
    with pytest.raises(RuntimeError, match="boom"):
        osl.collapse(model, osl.tasks.repeated_last("1"), [1, 2], ["bfloat16"], progress=False)
    assert not leftover_hooks(model, before) and state_of(model) == state
    assert model.W_E.dtype == torch.float32


@pytest.mark.slow
def test_smollm2_shared_and_independent_agree(load) -> None:
    """Acceptance: both modes agree within the noise floor in float64 on SmolLM2."""
    model = load("smollm2-135m", BACKENDS[0])
    family = osl.tasks.repeated_last("1", prefix=osl.tasks.COUNT_ONES)
    lengths = [1, 2, 6, 11]
    shared = osl.collapse(model, family, lengths, ["float64"], heads=-1, progress=False)
    independent = osl.collapse(
        model, family, lengths, ["float64"], heads=-1, mode="independent", progress=False
    )
    _assert_modes_agree(shared, independent, rotary_bridge=BACKENDS[0] == "bridge")


def test_metrics_are_read_by_name_with_advice(load) -> None:
    result = osl.collapse(load("tiny-gpt2", BACKENDS[0]), osl.tasks.ones(), [1, 2], progress=False)
    assert torch.equal(result.metric("l2"), result.distances[..., 1])
    assert torch.equal(result.metric("linf", of="noise"), result.noise[..., 2])
    assert result.metric("cosine", of="head_distances").shape == result.head_distances.shape[:-1]
    for bad in (lambda: result.curve("float32", metric="l3"), lambda: result.metric("L2")):
        with pytest.raises(ValueError, match=r"metric must be one of \('l1', 'l2'"):
            bad()
    with pytest.raises(ValueError, match="of must be one of"):
        result.metric("l2", of="argmax_a")
    rows = result.rows()
    assert rows == result.to_dataframe().to_dict("records")
    assert len(rows) == len(result.precisions) * len(result.lengths) * len(result.points)


def test_stacking_in_place_promotes_like_torch_stack() -> None:
    """CollapseProbe stacks its kept points while releasing them; with points of mixed
    dtypes (a bfloat16 model's float32 final norm) it must promote as torch.stack does,
    not round everything to the first point's dtype."""
    gen = torch.Generator().manual_seed(0)
    kept = {
        "a": torch.randn(1, 3, 4, generator=gen).bfloat16(),
        "b": torch.randn(1, 3, 4, generator=gen),
    }
    expected = torch.stack([kept["a"], kept["b"]], dim=2)
    released = dict(kept)
    out = _stack_releasing(released, ["a", "b"])
    assert out.dtype == expected.dtype == torch.float32 and torch.equal(out, expected)
    assert not released  # every entry handed over
