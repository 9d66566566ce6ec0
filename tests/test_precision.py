"""Precision emulation: bit-exact against torch casts and an exact slow reference."""

import bisect
import functools
import math
import re
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import oversquash_lens as osl
from oversquash_lens.precision import (
    FloatFormat,
    get_format,
    list_formats,
    machine_epsilon,
    round_to_format,
    ulp_distance,
    ulp_index,
)


def random_float32_bits(n: int, seed: int) -> torch.Tensor:
    """Uniform over all 2^32 bit patterns: every exponent, subnormals, ±inf, NaNs."""
    gen = torch.Generator().manual_seed(seed)
    bits = torch.randint(-(2**31), 2**31, (n,), generator=gen, dtype=torch.int64)
    return bits.to(torch.int32).view(torch.float32)


def neighbourhood(fmt: FloatFormat) -> torch.Tensor:
    """Format values, the midpoints between them and their float32 neighbours."""
    values = torch.tensor(sorted(float(v) for v in format_values(fmt)), dtype=torch.float64)
    mids = (values[1:] + values[:-1]) / 2
    candidates = torch.cat([values, mids, -values, -mids]).to(torch.float32)
    up = torch.nextafter(candidates, torch.full_like(candidates, math.inf))
    down = torch.nextafter(candidates, torch.full_like(candidates, -math.inf))
    specials = torch.tensor([0.0, -0.0, math.inf, -math.inf, math.nan])
    return torch.cat([candidates, up, down, specials])


def bitwise_equal(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Same bits, or both NaN (NaN payloads may differ)."""
    int_type = {torch.float32: torch.int32, torch.float64: torch.int64}[a.dtype]
    same = a.view(int_type) == b.view(int_type)
    return same | (torch.isnan(a) & torch.isnan(b))


# --------------------------------------------------------------------------- torch casts
@pytest.mark.parametrize("name", ["float16", "bfloat16", "float8_e4m3", "float8_e5m2"])
def test_matches_torch_cast_bit_for_bit(name: str) -> None:
    fmt = get_format(name)
    assert fmt.torch_dtype is not None
    x = torch.cat([random_float32_bits(1_000_000, seed=1), edge_cases_float32(fmt)])
    ours = round_to_format(x, fmt)
    torch_cast = x.to(fmt.torch_dtype).to(torch.float32)
    equal = bitwise_equal(ours, torch_cast)
    assert bool(equal.all()), (
        f"{int((~equal).sum())} mismatches, e.g. x={x[~equal][:4].tolist()} "
        f"ours={ours[~equal][:4].tolist()} torch={torch_cast[~equal][:4].tolist()}"
    )


def edge_cases_float32(fmt: FloatFormat) -> torch.Tensor:
    if fmt.exponent_bits + fmt.mantissa_bits <= 15:
        return neighbourhood(fmt)
    # Too many values to enumerate: take ties and near-ties around every binade edge.
    exps = torch.arange(fmt.emin - fmt.mantissa_bits - 2, fmt.emax + 3, dtype=torch.float64)
    base = torch.pow(2.0, exps)
    ulp = torch.pow(2.0, (exps - fmt.mantissa_bits).clamp(min=fmt.emin - fmt.mantissa_bits))
    odd = base + ulp  # odd mantissa: ties round up
    grid = torch.cat([base, base + ulp / 2, odd + ulp / 2, base - ulp / 4, 3 * base / 2])
    grid = torch.cat([grid, torch.tensor([fmt.max_finite, fmt.max_finite * (1 + 2**-20)])])
    grid = grid[grid < 3.4e38].to(torch.float32)
    return torch.cat([grid, -grid, torch.tensor([0.0, -0.0, math.inf, -math.inf, math.nan])])


# --------------------------------------------------------------------------- exact reference
@functools.cache
def format_values(fmt: FloatFormat) -> tuple[Fraction, ...]:
    """Every non-negative finite value, in order, as exact fractions."""
    m = fmt.mantissa_bits
    out = [Fraction(k, 2**m) * Fraction(2) ** fmt.emin for k in range(2**m)]  # subnormals
    for e in range(fmt.emin, fmt.emax + 1):
        for k in range(2**m):
            out.append(Fraction(2**m + k, 2**m) * Fraction(2) ** e)
    if fmt.finite_only:
        out.pop()  # the all-ones pattern of the top binade is NaN
    return tuple(out)


def reference_round(x: float, fmt: FloatFormat) -> float:
    """Round-to-nearest-even by exhaustive search over the format's values (slow, exact)."""
    if math.isnan(x):
        return math.nan
    sign = -1.0 if math.copysign(1.0, x) < 0 else 1.0
    values = format_values(fmt)
    # One virtual value past the top: rounding to it (or beyond) means overflow.
    step = values[-1] - values[-2]
    extended = [*values, values[-1] + step]
    overflow = math.copysign(fmt.max_finite if fmt.finite_only else math.inf, sign)
    if math.isinf(x):
        return overflow
    a = Fraction(abs(x))
    if a >= extended[-1]:
        return overflow
    hi = bisect.bisect_left(extended, a)
    if extended[hi] == a:
        pick = hi
    else:
        lo = hi - 1
        below, above = a - extended[lo], extended[hi] - a
        pick = lo if below < above else hi if above < below else (lo if lo % 2 == 0 else hi)
    if pick == len(extended) - 1:
        return overflow
    return sign * float(extended[pick])


CUSTOM = [(3, 2), (4, 3), (5, 2), (5, 7), (6, 4), (2, 1), (4, 1), (8, 3)]


@pytest.mark.parametrize("spec", ["float8_e4m3", "float8_e5m2", *CUSTOM])
def test_matches_exact_reference(spec: object) -> None:
    fmt = get_format(spec)  # type: ignore[arg-type]
    x = torch.cat([random_float32_bits(4_000, seed=2), neighbourhood(fmt)])
    # Bring most random values into the format's range so rounding (not overflow) is tested.
    gen = torch.Generator().manual_seed(3)
    exponents = torch.randint(
        fmt.emin - fmt.mantissa_bits - 2, fmt.emax + 2, (4_000,), generator=gen
    )
    x = torch.cat([x, torch.rand(4_000, generator=gen) * torch.pow(2.0, exponents)])
    ours = round_to_format(x, fmt)
    expected = torch.tensor([reference_round(v, fmt) for v in x.tolist()], dtype=torch.float32)
    equal = bitwise_equal(ours, expected)
    assert bool(equal.all()), (
        f"x={x[~equal][:4].tolist()} ours={ours[~equal][:4].tolist()} "
        f"reference={expected[~equal][:4].tolist()}"
    )


@pytest.mark.parametrize("name", ["bfloat16", "float16", "float8_e5m2"])
def test_float64_inputs_round_once(name: str) -> None:
    """float64 inputs are rounded straight to the format (no detour through float32)."""
    fmt = get_format(name)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(20_000, dtype=torch.float64, generator=gen) * 2.0 ** torch.randint(
        -20, 20, (20_000,), generator=gen
    )
    # Values just above a float32-rounding tie: a float32 detour would round them wrongly.
    tie = round_to_format(x, fmt) + (
        torch.pow(2.0, torch.floor(torch.log2(x.abs())) - fmt.mantissa_bits) / 2
    ) * torch.sign(x)
    x = torch.cat([x, tie + tie.abs() * 2.0**-40])
    ours = round_to_format(x, fmt)
    expected = torch.tensor([reference_round(v, fmt) for v in x.tolist()], dtype=torch.float64)
    assert bool(bitwise_equal(ours, expected).all())


# --------------------------------------------------------------------------- properties
formats = st.one_of(
    st.sampled_from(["float16", "bfloat16", "float8_e4m3", "float8_e5m2", "float32"]),
    st.tuples(st.integers(2, 8), st.integers(1, 12)),
)
finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@settings(deadline=None, max_examples=300)
@given(spec=formats, a=finite32, b=finite32)
def test_rounding_is_monotone(spec: object, a: float, b: float) -> None:
    lo, hi = sorted([a, b])
    r = round_to_format(torch.tensor([lo, hi]), spec)  # type: ignore[arg-type]
    assert r[0] <= r[1]


@settings(deadline=None, max_examples=300)
@given(spec=formats, a=st.floats(width=32))
def test_rounding_is_idempotent_and_odd(spec: object, a: float) -> None:
    x = torch.tensor([a])
    once = round_to_format(x, spec)  # type: ignore[arg-type]
    assert bool(bitwise_equal(round_to_format(once, spec), once).all())  # type: ignore[arg-type]
    assert bool(bitwise_equal(round_to_format(-x, spec), -once).all())  # type: ignore[arg-type]


@settings(deadline=None, max_examples=200)
@given(spec=formats, a=finite32)
def test_rounding_error_is_at_most_half_an_ulp(spec: object, a: float) -> None:
    fmt = get_format(spec)  # type: ignore[arg-type]
    r = float(round_to_format(torch.tensor([a], dtype=torch.float64), fmt))
    if math.isinf(r) or abs(a) > fmt.max_finite:
        return
    binade = max(math.floor(math.log2(abs(a))) if a else fmt.emin, fmt.emin)
    assert abs(r - a) <= 2.0 ** (binade - fmt.mantissa_bits) / 2


# --------------------------------------------------------------------------- constants
def test_machine_epsilon_and_ranges_match_torch() -> None:
    assert machine_epsilon("bfloat16") == 2**-7 == 0.0078125
    assert machine_epsilon("float16") == 2**-10
    for name in ["float64", "float32", "float16", "bfloat16"]:
        fmt = get_format(name)
        info = torch.finfo(fmt.torch_dtype)
        assert fmt.epsilon == info.eps
        assert fmt.max_finite == info.max
        assert fmt.min_normal == info.smallest_normal
        assert fmt.min_subnormal == info.smallest_normal * info.eps
    for name in ["float8_e4m3", "float8_e5m2"]:
        fmt = get_format(name)
        assert fmt.max_finite == torch.finfo(fmt.torch_dtype).max
        assert fmt.epsilon == torch.finfo(fmt.torch_dtype).eps


def test_format_names_aliases_and_errors() -> None:
    assert get_format("bf16") is get_format("bfloat16") is get_format(torch.bfloat16)
    assert get_format("float8_e4m3fn").finite_only
    assert get_format((5, 10)) is get_format("float16")
    assert get_format("e5m7").epsilon == 2**-7
    builtin = ["float64", "float32", "float16", "bfloat16", "float8_e4m3", "float8_e5m2"]
    assert list_formats("native")[:6] == list_formats()[:6] == builtin
    with pytest.raises(osl.UnknownPrecisionError, match="e<exponent_bits>m<mantissa_bits>"):
        get_format("bfloat17")
    with pytest.raises(osl.UnknownPrecisionError, match="exponent_bits"):
        get_format((12, 3))
    with pytest.raises(osl.UnknownPrecisionError, match="mantissa_bits"):
        get_format("e4m0")
    with pytest.raises(ValueError, match="exponent_bits"):
        FloatFormat("wide", 12, 3)
    # custom strings are IEEE-style; the OCP fp8 e4m3 (no infinity, max 448) has its own name
    assert get_format("e4m3").max_finite == 240 and not get_format("e4m3").finite_only
    assert get_format("float8_e4m3").max_finite == 448
    with pytest.raises(ValueError, match="already registered"):
        osl.precision.register_format(FloatFormat("bfloat16", 8, 7))


def test_round_rejects_what_it_cannot_do_exactly() -> None:
    with pytest.raises(TypeError, match="float"):
        round_to_format(torch.tensor([1, 2]), "bfloat16")
    with pytest.raises(ValueError, match="wider"):
        round_to_format(torch.tensor([1.0], dtype=torch.bfloat16), "float16")
    with pytest.raises(ValueError, match="float64"):  # range beyond float32's: would overflow
        round_to_format(torch.tensor([1.0]), "e11m10")
    assert round_to_format(torch.tensor([3e38], dtype=torch.float64), "e11m10").item() > 3e38
    # Under the test suite's runtime type checking the Literal annotation rejects it first.
    with pytest.raises((ValueError, TypeError), match="overflow"):
        round_to_format(torch.tensor([1.0]), "bfloat16", overflow="wrap")  # type: ignore[arg-type]


def test_saturating_overflow() -> None:
    x = torch.tensor([1e6, -math.inf, 70000.0])
    assert round_to_format(x, "float16").tolist() == [math.inf, -math.inf, math.inf]
    assert round_to_format(x, "float16", overflow="saturate").tolist() == [65504, -65504, 65504]


def test_straight_through_gradient() -> None:
    x = torch.tensor([1.0 + 2**-9, 3.3], requires_grad=True)
    y = round_to_format(x, "bfloat16")
    y.sum().backward()
    assert x.grad is not None and x.grad.tolist() == [1.0, 1.0]
    assert y.tolist() == [1.0, float(torch.tensor(3.3).bfloat16())]


# --------------------------------------------------------------------------- ULPs
def test_ulp_index_matches_float32_bit_order() -> None:
    x = random_float32_bits(200_000, seed=5)
    x = x[torch.isfinite(x)]
    bits = x.view(torch.int32).to(torch.int64)
    ordered = torch.where(bits < 0, -(bits & 0x7FFFFFFF), bits)
    assert torch.equal(ulp_index(x, "float32"), ordered.to(torch.float64))


@pytest.mark.parametrize("name", ["bfloat16", "float16", "float8_e4m3", "float8_e5m2"])
def test_adjacent_values_are_one_ulp_apart(name: str) -> None:
    fmt = get_format(name)
    values = torch.tensor([float(v) for v in format_values(fmt)], dtype=torch.float32)
    signed = torch.cat([-values.flip(0)[:-1], values])  # -max .. -min, 0, min .. max
    index = ulp_index(signed, fmt)
    assert torch.equal(index.diff(), torch.ones(len(signed) - 1, dtype=torch.float64))
    assert ulp_distance(signed[:-1], signed[1:], fmt).eq(1).all()


def test_ulp_distance_properties() -> None:
    a, b = torch.randn(1000), torch.randn(1000)
    d = ulp_distance(a, b, "bfloat16")
    assert torch.equal(d, ulp_distance(b, a, "bfloat16"))
    same = round_to_format(a, "bfloat16") == round_to_format(b, "bfloat16")
    assert torch.equal(d == 0, same)
    assert ulp_distance(torch.tensor([0.0]), torch.tensor([-0.0]), "float16").item() == 0
    assert math.isnan(ulp_distance(torch.tensor([math.nan]), torch.tensor([1.0]), "bf16").item())
    top = torch.tensor([get_format("float16").max_finite])
    assert ulp_distance(top, torch.tensor([math.inf]), "float16").item() == 1


def test_wider_formats_are_the_identity() -> None:
    x = random_float32_bits(10_000, seed=6)
    for fmt in ["float32", "float64", "e9m30"]:
        assert bool(bitwise_equal(round_to_format(x, fmt), x).all())


def test_precision_specs_have_one_parser() -> None:
    # "emulate:<format>" is read in precision/_spec.py only; every other module asks it.
    from pathlib import Path

    package = Path(osl.__file__).parent
    spelled = re.compile(r"""(removeprefix|startswith|split|partition)\(\s*["']emulate:""")
    readers = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if spelled.search(path.read_text(encoding="utf-8"))
    ]
    assert readers == [], f"parse 'emulate:' with precision.parse_spec instead: {readers}"
    spec = osl.precision.parse_spec("emulate:e5m3")
    assert spec.emulated and spec.label == "emulate:e5m3" and spec.fmt.mantissa_bits == 3
