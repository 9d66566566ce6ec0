"""Tutorial 02: representational collapse, Theorem 4.2 and Fig 5 (percent-cell notebook)."""

# %% [markdown]
# # 02 — Representational collapse (paper §4, Theorem 4.2)
#
# Theorem 4.2 of Barbero et al. (2024): take a sequence `v = [u, a]` and the same
# sequence with its last token repeated, `v* = [u, a, a]`. If positional information
# decays with distance, the last-token representations of the two become arbitrarily
# close as the sequence grows. Once their difference is below the working precision,
# the model *must* give both sequences the same answer, so one of "how many ones in
# 1^n" and "… in 1^(n+1)" is answered wrongly.
#
# This tutorial shows the theorem in pictures, in two halves:
#
# 1. **Theory, no model.** The ingredients on plain tensors (`osl.theory`): one token's
#    softmax weight is O(1/n) (Lemma B.1), a repeated last token makes an untrained
#    single attention layer collapse at rate 1/n (Fig 8 / Fig 10), and without
#    positional decay two patterns never merge (Prop. B.4).
# 2. **A real model.** The paper's Fig 5 (a)–(d) on a language model with `osl.collapse`:
#    the last layer's per-head outputs for the two sequences of each family, per
#    precision, with the noise floor.
#
# Run it as a script (`python tutorials/02_representational_collapse.py --fast --model
# tiny-llama`) or open it as a notebook.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from _common import Timer, options, save

import oversquash_lens as osl
from oversquash_lens import tasks, theory

opts = options("02_representational_collapse")
clock = Timer()
print(f"model={opts.model} fast={opts.fast} out={opts.out}")

# %% [markdown]
# ## 1. Lemma B.1: one token's weight is O(1/n)
#
# With bounded logits, the last token's softmax weight in `[a, c]` is larger than in
# `[a, b, c]`, and both shrink like 1/n. So the repeated token's own contribution to the
# last position fades with length: `n × weight` stays roughly constant.

# %%
generator = torch.Generator().manual_seed(0)
print("     n   softmax([a,c])_n   softmax([a,b,c])_n+1   n * first")
for n in [10, 100, 1000, 10_000]:
    a = torch.rand(n - 1, generator=generator, dtype=torch.float64) * 2 - 1  # logits in [-1, 1]
    short, long = theory.lemma_b1(a, -1.0, 1.0)
    print(f"{n:6d}   {short:.3e}          {long:.3e}             {n * short:.3f}")

# %% [markdown]
# ## 2. One untrained attention layer: the 1/n law (Fig 8 and Fig 10)
#
# `theory.SyntheticLayer` is a single attention head of width 64 with random Gaussian
# weights and tokens (see `oversquash_lens/theory/_synthetic.py` for the exact setup).
# `synthetic_collapse_curve` returns the distance between the last-token outputs of
# `[u, a]` and `[u, a, a]` for every length and seed. The paper's Fig 10 plots the L1
# distance for four positional encodings; its Fig 8 the L∞ distance with sinusoidal
# positions. The dashed line is 2^-7, bf16's machine epsilon: where a curve crosses it,
# a bf16 model could no longer tell the two sequences apart.
#
# Without positions (NoPE) the difference is exactly `α*_{n+1,n+1}·(W_V a − output)`,
# which is Θ(1/n) (softmax gives the repeated token a weight of order 1/n, the paper's
# §4): on a log-log plot, a line of slope −1.

# %%
seeds = 10 if opts.fast else 100
max_length = 1000 if opts.fast else 10_000
grid = sorted({int(round(x)) for x in np.geomspace(5, max_length, 12 if opts.fast else 40)})
encodings = {
    "nope": theory.SyntheticLayer("nope"),
    "sinusoidal": theory.SyntheticLayer("sinusoidal"),
    "rope": theory.SyntheticLayer("rope"),
    "alibi": theory.SyntheticLayer("alibi"),
}
curves = {
    name: theory.synthetic_collapse_curve(layer, grid, seeds) for name, layer in encodings.items()
}

bf16 = osl.machine_epsilon("bfloat16")
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
for name, curve in curves.items():
    left.loglog(grid, curve.mean("l1").numpy(), label=name)
nope_l1 = curves["nope"].mean("l1")
fit = theory.fit_inverse_law(grid, nope_l1.numpy())
left.loglog(
    grid, [fit.coefficient / n for n in grid], ":", c="grey", label=f"{fit.coefficient:.1f}/n"
)
right.loglog(grid, curves["sinusoidal"].mean("linf").numpy(), label="sinusoidal")
for ax, title in ((left, "Fig 10: mean L1 after one layer"), (right, "Fig 8: mean L∞, sinusoidal")):
    ax.axhline(bf16, ls="--", c="k", lw=0.8, label="2^-7 (bf16 ε)")
    ax.set_xlabel("n (length of [u, a])")
    ax.set_title(f"{title}, {seeds} seeds", fontsize=10)
    ax.legend(fontsize=8)
left.set_ylabel("distance")
fig.tight_layout()
save(fig, opts.out, "synthetic_collapse.png")

print("PE           L1@first  L1@last   free slope  L1 crosses 2^-7 at n ≈")
for name, curve in curves.items():
    l1 = curve.mean("l1")
    slope = theory.fit_inverse_law(grid, l1.numpy()).slope
    crossing = theory.crossing_length(grid, l1.numpy(), bf16)
    print(f"{name:11s}  {l1[0]:.3f}     {l1[-1]:.2e}  {slope:+.2f}       {crossing:.0f}")

# %% [markdown]
# NoPE and RoPE follow the 1/n line (slope −1) and cross 2^-7 near n ≈ 800, as in the
# paper's Fig 10 (0.95 at n = 5, 0.065 at 100, 0.0065 at 1000). Sinusoidal and ALiBi
# decay more slowly here than in the paper: this implementation adds the sinusoidal
# table to queries and keys only, and ALiBi's bias is unbounded, so the last token keeps
# a weight of about `1 − e^{−slope}` and the curve levels off (see docs/theory/).
#
# ## 3. Prop. B.4: decay is needed
#
# Without positional decay, two patterns can stay apart for ever: the softmaxes of
# (1, 0, 1, 0, …) and (0, 1, 0, 1, …) keep a total variation of 2(e − 1)/(e + 1) ≈ 0.9242
# at every even length.

# %%
for n in [2, 10, 100, 10_000]:
    print(f"n = {n:6d}: TV = {theory.alternating_tv(n):.6f}")
print(f"limit 2(e-1)/(e+1) = {theory.ALTERNATING_TV_LIMIT:.6f}")

# %% [markdown]
# ## 4. The real model: Fig 5 (a)–(d)
#
# `osl.collapse(model, family, lengths, precisions)` runs each pair of a *sequence
# family* (`osl.tasks`) through the model and compares the two last-token
# representations at every residual point and, with `heads=-1`, the last layer's
# per-head outputs (`hook_z`), which is what the paper's Fig 5 plots:
#
# - (a) "How many ones are in the following sequences?" + "1"×k vs "1"×(k+1);
# - (b) the same prompt + k − 1 random digits ending in "1" vs "11";
# - (c) "Can you copy the following number?" + ones;
# - (d) as (c) with a comma every third digit (grouped from the left: the paper does not
#   say which way; docs/collapse.md shows that right grouping *does* collapse).
#
# Each precision is a separate run: `"float32"` and `"bfloat16"` run the model natively
# in that dtype, `"emulate:float8_e4m3"` rounds the residual stream and the head outputs
# to fp8 while the model computes in float32. Families whose sequences are prefixes of
# each other cost one forward pass for all lengths (the causal mask: position p of the
# longer sequence *is* the shorter sequence's last position), plus one pass for the
# **noise floor**: the same positions recomputed by a pass one token shorter, which
# differ only by kernel rounding. The hatched area in each panel is that floor.

# %%
model = osl.load_model(opts.model)
lengths = [1, 2, 6, 11, 51] if opts.fast else [1, 2, 6, 11, 51, 101, 501, 1001, 2001]
precisions = ["float32", "bfloat16", "emulate:float8_e4m3"]
families = {
    "(a) count ones": tasks.repeated_last("1", prefix=tasks.COUNT_ONES, bos=True),
    "(b) random digits": tasks.random_prefix(prefix=tasks.COUNT_ONES, bos=True, seed=0),
    "(c) copy ones": tasks.repeated_last("1", prefix=tasks.COPY_NUMBER, bos=True),
    "(d) copy, commas": tasks.separated(
        "1", every=3, separator=",", group="left", prefix=tasks.COPY_NUMBER, bos=True
    ),
}
results = {}
for name, family in families.items():
    results[name] = osl.collapse(model, family, lengths, precisions, heads=-1, progress=False)
    results[name].save(opts.out / f"fig5_{name[1]}.npz")
    print(f"{name}: {results[name].passes} passes per precision ({results[name].mode} mode)")

fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
for ax, (name, result) in zip(axes, results.items(), strict=True):
    result.plot(ax=ax)
    ax.set_title(name, fontsize=10)
fig.tight_layout()
save(fig, opts.out, "fig5.png")

# %% [markdown]
# The table below is the float32 curve of each panel (mean over the last layer's heads
# of the L∞ distance), then the noise floor and whether bf16 still tells the pair apart.
# The paper's Gemma 7B went (a) 0.93 → 0.005, (b) 0.33 → 0.07, (c) 0.47 → 0.005 and
# (d) 0.48 → 1.45 (growing) from k = 1 to 2001.

# %%
LINF = 2  # metric axis: l1, l2, linf, cosine
print("k      " + "  ".join(f"{name:>18s}" for name in results))
for i, k in enumerate(lengths):
    row = [float(r.head_distances[0, i, -1, :, LINF].mean()) for r in results.values()]
    print(f"{k:<6d} " + "  ".join(f"{v:18.4f}" for v in row))

for name, result in results.items():
    y = result.point_index()  # y_n, the final norm's output: what next-token prediction sees
    noise = torch.nan_to_num(result.noise[0, :, y, LINF], nan=0.0).max()
    bf = result.precision_index("bfloat16")
    equal = [k for i, k in enumerate(lengths) if bool(result.bitwise_equal[bf, i, y])]
    same_argmax = int((result.argmax_a[bf] == result.argmax_b[bf]).sum())
    print(
        f"{name}: y_n noise floor (float32) ≤ {float(noise):.1e}; bf16 y_n bit-identical at "
        f"k = {equal or 'none'}; same bf16 next token at {same_argmax}/{len(lengths)} lengths"
    )

# %% [markdown]
# ## 5. When does the pair collapse, and what did 1/k predict?
#
# `CollapseResult.collapse_length(precision, criterion)` returns the first length from
# which the pair stays collapsed (`"bits"`: identical after rounding to the format;
# `"epsilon"`: L∞ below the format's ε; `"argmax"`: same next token) and the prediction
# of a c/k law fitted to the float32 curve (a c/k distance crosses ε at k ≈ c/ε, so the
# collapse length ∝ 1/ε).
# Tutorial 03 follows this across many formats.

# %%
result = results["(a) count ones"]
print("precision              first collapsed k by bits / epsilon / argmax   c/k predicts")
for precision in precisions:
    found = {c: result.collapse_length(precision, c) for c in ("bits", "epsilon", "argmax")}
    measured = " / ".join(str(found[c].measured) for c in found)
    predicted = found["epsilon"].predicted
    print(f"{precision:22s} {measured:44s} {predicted if predicted is None else round(predicted)}")
fit = result.collapse_length("float32", "epsilon").fit
if fit is not None:
    print(f"free log-log slope of the float32 y_n curve: {fit.slope:+.2f} (−1 is the 1/k law)")
print(f"done in {clock}")
