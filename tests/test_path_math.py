"""Pure path math (paper §5): path counts, streamed products, closed forms, Thm 5.1.

Every check compares against an independent computation: dense matrix powers,
hand-worked examples, or autograd Jacobians of a linear model where the bound is tight.
"""

import math
from fractions import Fraction
from functools import partial
from types import SimpleNamespace

import pytest
import torch

from oversquash_lens import _hooknames as names
from oversquash_lens.analyzers import RunRecord, _path_math
from oversquash_lens.analyzers._path_counts import log_path_counts, path_counts
from oversquash_lens.analyzers._path_math import (
    RoundingBound,
    _causal_head_sum,
    bound_constants,
    causal_matmul_,
    path_summary,
    product_dtype,
    reduce_heads,
    transition_coefficients,
    uniform_path_weights,
)
from oversquash_lens.analyzers._paths import AttentionPaths
from oversquash_lens.results import Provenance

from .helpers import assert_close

F64 = torch.float64


def ones_causal(n: int, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    return torch.tril(torch.ones(n, n, dtype=dtype))


def uniform_causal(n: int) -> torch.Tensor:
    """Λ_ij = 1/i on the causal prefix (1-based i)."""
    return ones_causal(n, F64) / torch.arange(1, n + 1, dtype=F64)[:, None]


def random_causal(n: int, generator: torch.Generator, heads: int = 1) -> torch.Tensor:
    """Softmax attention over random scores, causal: [heads, n, n] row-stochastic."""
    scores = torch.randn(heads, n, n, generator=generator, dtype=F64) * 2
    mask = torch.ones(n, n, dtype=torch.bool).tril()
    return scores.masked_fill(~mask, -math.inf).softmax(-1)


def stream(analyzer: AttentionPaths, patterns: list[torch.Tensor]):
    """Drive the analyzer's own keep/compute on hand-made patterns [batch, head, n, n]."""
    fake = SimpleNamespace(n_layers=len(patterns), pattern=names.pattern)
    hook_names = analyzer.hook_names(fake)  # type: ignore[arg-type]
    kept = {name: analyzer.keep(name, p) for name, p in zip(hook_names, patterns, strict=True)}
    provenance = Provenance("synthetic", "none", None, "float64", "cpu", "eager", None, "test")
    run = RunRecord(0, None, hook_names, kept, provenance=provenance)
    return analyzer.compute(run)


# ---------------------------------------------------------------- path counts
def test_path_counts_match_matrix_powers() -> None:
    """Counts equal (M^L)_{n,i} and ((M + I)^L)_{n,i} for n ≤ 64, L ≤ 8 (int64 holds them)."""
    for n in range(1, 65):
        m = ones_causal(n)
        plain, with_residual = torch.eye(n, dtype=torch.int64), torch.eye(n, dtype=torch.int64)
        for layers in range(9):
            assert path_counts(n, layers) == tuple(plain[-1].tolist()), (n, layers)
            assert path_counts(n, layers, residual=True) == tuple(with_residual[-1].tolist())
            plain, with_residual = m @ plain, (m + torch.eye(n, dtype=torch.int64)) @ with_residual


def test_path_counts_worked_example_and_closed_form() -> None:
    assert path_counts(8, 3) == (36, 28, 21, 15, 10, 6, 3, 1)
    assert path_counts(5, 0) == (0, 0, 0, 0, 1)
    n, layers = 1000, 12
    assert path_counts(n, layers)[0] == math.comb(n + layers - 2, layers - 1)
    assert all(isinstance(c, int) for c in path_counts(n, 40))  # exact beyond float range


def test_log_path_counts_match_exact_counts() -> None:
    for n, layers in [(1, 0), (8, 3), (64, 8), (300, 30), (2000, 40)]:
        for residual in (False, True):
            exact = path_counts(n, layers, residual=residual)
            expected = torch.tensor([math.log(c) if c > 0 else -math.inf for c in exact], dtype=F64)
            got = log_path_counts(n, layers, residual=residual)
            # lgamma of arguments up to ~5000 carries ~1e-13 relative error
            torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-9)
    long = log_path_counts(1_000_000, 96)  # counts far beyond float64: logs stay finite
    assert torch.isfinite(long).all() and long[-1] == 0.0


@pytest.mark.parametrize("bad", [(0, 3), (5, -1), (True, 2), (4, False)])
def test_path_counts_refuse_bad_sizes(bad) -> None:
    with pytest.raises(ValueError, match="must be"):
        path_counts(*bad)
    with pytest.raises(ValueError, match="must be"):
        log_path_counts(*bad)


def test_context_paths_over_all_ones_graph_are_path_counts() -> None:
    """Streaming M⋯M (method context, unnormalized all-ones pattern) counts paths."""
    n = 30
    result = stream(AttentionPaths(method="context"), [ones_causal(n, F64)[None, None]] * 6)
    for layer in range(6):
        counts = torch.tensor(path_counts(n, layer + 1), dtype=F64)
        assert torch.equal(result.weights[0, layer], counts)


# ---------------------------------------------------------------- products
@pytest.mark.parametrize("n,block", [(1, 4), (20, 7), (64, 16), (70, 256)])
def test_head_mean_reads_the_causal_part_with_the_full_sums_numbers(n: int, block: int) -> None:
    """Adding only on and below the diagonal gives the numbers of adding the whole causal
    patterns head by head into a float64 copy of the first, bit for bit."""
    gen = torch.Generator().manual_seed(n)
    above = torch.ones(n, n, dtype=torch.bool).triu(1)
    scores = torch.randn(2, 9, n, n, generator=gen) * 4
    pattern = scores.masked_fill(above, float("-inf")).softmax(-1)  # zero above: causal
    expected = pattern[:, 0].to(F64, copy=True)
    for h in range(1, 9):
        expected.add_(pattern[:, h])
    garbage = torch.full((2, n, n), float("nan"), dtype=F64)
    del garbage  # the allocator hands this block out next: nothing may be left unwritten
    assert torch.equal(_causal_head_sum(pattern, block=block), expected)
    assert torch.equal(reduce_heads(pattern, "mean"), expected.div_(9))


@pytest.mark.parametrize("n,block", [(1, 4), (7, 3), (16, 4), (33, 8), (40, 64)])
def test_causal_matmul_matches_dense_product(n: int, block: int) -> None:
    gen = torch.Generator().manual_seed(n)
    left = torch.rand(3, n, n, generator=gen, dtype=F64).tril()
    right = torch.rand(3, n, n, generator=gen, dtype=F64).tril()
    expected = left @ right
    assert_close(causal_matmul_(left.clone(), right, block=block), expected)


def test_streamed_product_matches_dense_reference_for_every_method() -> None:
    gen = torch.Generator().manual_seed(0)
    n, n_layers, n_heads = 23, 5, 3
    patterns = [random_causal(n, gen, n_heads)[None] for _ in range(n_layers)]
    beta1 = [0.5, 1.0, 2.0, 3.0, 0.25]
    for method in ("bound", "rollout", "context"):
        result = stream(AttentionPaths(method=method, heads="each", beta1=beta1), patterns)
        product = torch.eye(n, dtype=F64)
        for layer, pattern in enumerate(patterns):
            a, b = transition_coefficients(method, beta1[layer])
            heads = a * pattern[0] + b * torch.eye(n, dtype=F64)
            per_head = heads[:, -1, :] @ product
            product = heads.mean(0) @ product
            assert_close(result.weights[0, layer], product[-1])
            assert_close(result.head_weights[0, layer], per_head)


# ---------------------------------------------------------------- float32 product, rounding bound
# The float64 product's own bound (about 1e-14 relative here) is added to the float32 one:
# the two routes then each lie within their bound of the same exact product.
@pytest.mark.parametrize(
    ("method", "heads"),
    [("bound", "mean"), ("rollout", "max"), ("context", "mean"), ("bound", [0.5, 2.0, 1.5])],
)
def test_float32_product_stays_within_its_rounding_bound(method: str, heads) -> None:
    gen = torch.Generator().manual_seed(7)
    n, n_layers = 300, 6  # more than one block of 256 rows and columns
    patterns = [random_causal(n, gen, 3)[None] for _ in range(n_layers)]
    beta1 = [0.5, 1.0, 2.0, 1.0, 0.75, 1.5]
    runs = {
        dtype: stream(
            AttentionPaths(method=method, heads=heads, beta1=beta1, product_dtype=dtype), patterns
        )
        for dtype in ("float64", "float32")
    }
    low, high = runs["float32"], runs["float64"]
    assert (low.product_dtype, high.product_dtype) == ("float32", "float64")
    error = (low.weights - high.weights).abs()
    assert bool((error <= low.rounding_error + high.rounding_error).all())
    assert float(error.max()) > 0  # the float32 route really multiplied in float32
    assert float(high.rounding_relative[-1]) < 1e-12 < float(low.rounding_relative[-1]) < 1e-3


def test_float32_underflow_is_inside_the_absolute_part_of_the_bound() -> None:
    """Attention far below float32's range (context paths, no residual) underflows:
    relative accuracy is lost there, and only the bound's absolute part covers it."""
    gen = torch.Generator().manual_seed(3)
    n, n_layers = 40, 4
    scores = [torch.randn(1, n, n, generator=gen, dtype=F64) * 30 for _ in range(n_layers)]
    mask = torch.ones(n, n, dtype=torch.bool).tril()
    patterns = [s.masked_fill(~mask, -math.inf).softmax(-1)[None] for s in scores]
    low = stream(AttentionPaths(method="context", product_dtype="float32"), patterns)
    high = stream(AttentionPaths(method="context", product_dtype="float64"), patterns)
    error = (low.weights - high.weights).abs()
    assert bool((error <= low.rounding_error + high.rounding_error).all())
    c = low.rounding_relative[None, :, None]
    relative_only = c * low.weights / (1 - c) + high.rounding_error
    assert bool((error > relative_only).any())  # the absolute part is needed, not decoration
    assert float(high.weights.min()) < 1e-45  # below float32's smallest subnormal


def test_rounding_bound_matches_its_closed_form() -> None:
    """c_ℓ and t_ℓ against the recursion evaluated in exact rational arithmetic."""
    n, heads, scale, rows = 1000, 4, 2.0, [1.0, 1.5, 0.5, 2.0, 1.0]
    bound = RoundingBound(torch.float32, n, heads, scale)
    for r in rows:
        bound.push(r)
    relative, absolute = bound.bounds()
    u, u64 = Fraction(1, 2**24), Fraction(1, 2**53)
    eta, eta64 = Fraction(1, 2**149), Fraction(1, 2**1074)
    gamma = n * u / (1 - n * u)
    g64 = n * u64 / (1 - n * u64)
    steps = heads + 6
    phi = (1 + u64) ** steps * (1 + u) - 1
    xi = steps * eta64 * Fraction(scale) + eta
    widen = (1 + u64) ** steps * (1 + g64) ** 2
    c, t, largest = phi, xi, Fraction(1)
    expected_c, expected_t = [c], [t]
    for r in rows[1:]:
        largest *= Fraction(rows[len(expected_c) - 1]) * widen
        t = (1 + gamma) * (
            t * ((1 + phi) * Fraction(r) * widen + n * xi) + n * xi * (1 + c) * largest
        )
        t += n * eta * (1 + gamma)
        c = (1 + gamma) * (1 + phi) * (1 + c) - 1
        expected_c.append(c)
        expected_t.append(t)
    for got, want in zip(
        relative.tolist() + absolute.tolist(), expected_c + expected_t, strict=True
    ):
        assert want <= Fraction(got) <= want * (1 + Fraction(1, 10**9))  # rounded up, barely


def test_product_dtype_choice() -> None:
    assert product_dtype("auto", _path_math.FLOAT32_FROM - 1) == F64
    assert product_dtype("auto", _path_math.FLOAT32_FROM) == torch.float32
    assert product_dtype("float64", 10**6) == F64
    with pytest.raises(ValueError, match="grow past float32's range"):
        product_dtype("float32", 10, [2.0**60, 2.0**60])
    assert product_dtype("auto", 10**5, [2.0**60, 2.0**60]) == F64
    with pytest.raises(ValueError, match="product_dtype must be one of"):
        product_dtype("half", 10)
    torch.set_float32_matmul_precision("medium")  # oneDNN bfloat16, CUDA TF32
    try:
        assert product_dtype("auto", 10**5) == F64
        with pytest.raises(ValueError, match=r"set_float32_matmul_precision\('highest'\)"):
            product_dtype("float32", 10)
    finally:
        torch.set_float32_matmul_precision("highest")


# ---------------------------------------------------------------- uniform worked example
def test_uniform_attention_n20_worked_example() -> None:
    """½(Λ+I), uniform causal Λ, n = 20: U-shaped at L = 4, first token at L = 16."""
    n = 20
    streamed = stream(AttentionPaths(method="rollout"), [uniform_causal(n)[None, None]] * 16)
    closed = uniform_path_weights(n, [transition_coefficients("rollout")] * 16)
    assert_close(streamed.weights[0], closed)
    assert_close(streamed.attenuation[0], torch.ones(16, n, dtype=F64))
    weights = closed
    assert weights[0, -1].item() == pytest.approx(0.525, abs=1e-12)
    four = weights[3]  # L = 4
    assert four[0].item() == pytest.approx(0.205, abs=5e-4)
    assert four[-1].item() == pytest.approx(0.076, abs=5e-4)
    middle = four[7:14]  # the middle third, positions 8..14 of 20
    assert 0.02 < middle.min() and middle.max() < 0.04  # "~0.02 middle"
    stats = path_summary(four)
    # U-shape: high first token, low interior, a rise at the last token
    assert 0 < stats["argmin"].item() < n - 1
    assert four[-1] > 4 * stats["min"] and four[0] > 10 * stats["min"]
    assert weights[15, 0].item() == pytest.approx(0.90, abs=5e-3)  # L = 16


def test_depth_limit_prop_b8() -> None:
    """(½(Λ+I))^L → 1·e_1ᵀ when every row after the first has ≥ 2 non-zeros."""
    gen = torch.Generator().manual_seed(1)
    n = 12
    pattern = random_causal(n, gen)[None]
    # the slowest mode decays like max_i ½(1 + Λ_ii) over i ≥ 2 (Λ is triangular)
    rate = (0.5 * (1 + pattern[0, 0].diagonal()[1:])).max().item()
    depth = math.ceil(math.log(1e-13) / math.log(rate))
    result = stream(AttentionPaths(method="rollout"), [pattern] * depth)
    e1 = torch.zeros(n, dtype=F64)
    e1[0] = 1.0
    distance = (result.weights[0] - e1).abs().sum(-1)
    assert distance[0] > 0.1 and distance[-1] < 1e-9
    assert bool((distance[1:] <= distance[:-1] + 1e-15).all())  # monotone approach
    # the condition matters: a row with one non-zero (Λ = I) never moves its mass
    stuck = stream(AttentionPaths(method="rollout"), [torch.eye(n, dtype=F64)[None, None]] * 50)
    assert stuck.weights[0, -1, -1] == 1.0


# ---------------------------------------------------------------- Thm 5.1 exactness
def linear_model(lambdas, beta1, beta2, beta3, sigma_psi, psi=None):
    """v(ℓ+1) = ψ(norm2(z)) + z, z = Λ(ℓ)·norm1(v)/… with norms acting as constants β."""

    def forward(v0: torch.Tensor, layers: int) -> torch.Tensor:
        v = v0
        for ell in range(layers):
            z = lambdas[ell] @ v / beta1[ell] + v
            mlp = sigma_psi * (z / beta2[ell]) if psi is None else psi(z / beta2[ell])
            v = mlp + z
        return v[-1] / beta3

    return forward


def test_bound_is_exact_on_linear_attention_model() -> None:
    """With frozen attention, linear norms and a linear σ_ψ-Lipschitz MLP, every Jacobian
    block ∂y_n/∂v_i(0) is C·(Ā⋯Ā)_{n,i}·I, so Thm 5.1 holds with equality."""
    gen = torch.Generator().manual_seed(2)
    n, d, n_layers = 7, 3, 4
    lambdas = [random_causal(n, gen)[0] for _ in range(n_layers)]
    beta1, beta2, beta3, sigma = [2.0, 0.5, 1.0, 3.0], [1.5, 0.5, 3.0, 1.0], 0.7, 0.8
    result = stream(
        AttentionPaths(beta1=beta1, beta2=beta2, beta3=beta3, sigma_psi=sigma),
        [lam[None, None] for lam in lambdas],
    )
    forward = linear_model(lambdas, beta1, beta2, beta3, sigma)
    v0 = torch.randn(n, d, generator=gen, dtype=F64)
    for layers in range(1, n_layers + 1):
        jac = torch.autograd.functional.jacobian(partial(forward, layers=layers), v0)  # [d,n,d]
        norms = torch.linalg.matrix_norm(jac.permute(1, 0, 2), ord=2)
        assert_close(result.sensitivity_bound[0, layers - 1], norms)
    assert result.constant[-1].item() == pytest.approx(
        math.prod(sigma / b + 1 for b in beta2) / beta3
    )


def test_bound_holds_with_nonlinear_mlp() -> None:
    gen = torch.Generator().manual_seed(3)
    n, d, n_layers, sigma = 6, 4, 3, 1.7
    lambdas = [random_causal(n, gen)[0] for _ in range(n_layers)]
    w = torch.randn(d, d, generator=gen, dtype=F64)
    w = w / torch.linalg.matrix_norm(w, ord=2)  # ‖W‖ = 1: ψ = σ·tanh(W·) is σ-Lipschitz
    forward = linear_model(
        lambdas, [1.0] * 3, [1.0] * 3, 1.0, sigma, lambda x: sigma * (x @ w.T).tanh()
    )
    result = stream(AttentionPaths(sigma_psi=sigma), [lam[None, None] for lam in lambdas])
    v0 = torch.randn(n, d, generator=gen, dtype=F64)
    jac = torch.autograd.functional.jacobian(lambda v: forward(v, n_layers), v0)
    norms = torch.linalg.matrix_norm(jac.permute(1, 0, 2), ord=2)
    bound = result.sensitivity_bound[0, -1]
    assert bool((norms <= bound * (1 + 1e-12)).all())
    assert bool((norms < 0.999 * bound).any())  # tanh saturates: the bound is not tight here


def test_bound_constants_and_coefficients() -> None:
    assert_close(
        bound_constants([2.0, 4.0], beta3=0.5, sigma_psi=2.0),
        torch.tensor([4.0, 6.0], dtype=F64),
    )
    assert bound_constants([1.0], 1.0, 0.0).item() == 1.0  # no MLP: C = 1/β3
    with pytest.raises(ValueError, match="positive"):
        bound_constants([0.0], 1.0, 1.0)
    with pytest.raises(ValueError, match="unknown path method"):
        transition_coefficients("flow")


def test_summary_statistics() -> None:
    weights = torch.tensor([[4.0, 1.0, 0.0, 1.0, 2.0, 2.0]], dtype=F64)
    stats = path_summary(weights)
    assert stats["first"].item() == pytest.approx(0.4)
    assert (stats["early"].item(), stats["middle"].item(), stats["late"].item()) == (
        pytest.approx(0.5),
        pytest.approx(0.1),
        pytest.approx(0.4),
    )
    assert stats["argmin"].item() == 2 and stats["min"].item() == 0.0
    shares = torch.tensor([0.4, 0.1, 0.1, 0.2, 0.2])
    assert stats["entropy"].item() == pytest.approx(-(shares * shares.log()).sum().item())
    flat = path_summary(torch.ones(1, 9, dtype=F64))
    assert flat["entropy_ratio"].item() == pytest.approx(1.0)
