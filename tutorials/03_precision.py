"""Tutorial 03: collapse length against floating-point format (percent-cell notebook)."""

# %% [markdown]
# # 03 — Collapse length against floating-point format (paper §4, Theorem 4.2)
#
# Representational collapse (tutorial 02) becomes a *wrong answer* only once the two
# last-token representations are equal **in the working precision**. If the distance
# falls like c/n (Theorem 4.2's rate without positional information), it crosses a
# precision ε at n ≈ c/ε: the collapse length scales as 1/ε. So bf16 (ε = 2^-7) :
# fp16 (2^-10) : fp32 (2^-23) collapse lengths should be about 1 : 8 : 65536. The paper
# argues this from theory only ("higher precision" is one of its glasses).
#
# This tutorial checks the law twice:
#
# 1. on the exact 1/n curve of one untrained attention layer (`osl.theory`), for the
#    standard formats and for custom mantissa widths;
# 2. on a real model, run natively in float64 / float32 / float16 / bfloat16 and with
#    the residual stream rounded to emulated formats (`"emulate:float8_e4m3"`,
#    `"emulate:e5m3"`: 5 exponent bits, 3 mantissa bits, …), measuring the collapse
#    length with `CollapseResult.collapse_length` and comparing it with c/ε.

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import Timer, options, save

import oversquash_lens as osl
from oversquash_lens import tasks, theory

opts = options("03_precision")
clock = Timer()
print(f"model={opts.model} fast={opts.fast} out={opts.out}")

# %% [markdown]
# ## 1. Formats and their machine epsilon
#
# `osl.get_format` knows the IEEE / OCP formats by name and any `eXmY` (X exponent bits,
# Y mantissa bits). Machine epsilon is 2^-Y: only the mantissa width matters for the
# collapse length (the exponent range matters only for overflow and subnormals).

# %%
standard = ["float64", "float32", "float16", "bfloat16", "float8_e4m3", "float8_e5m2"]
custom = ["e8m10", "e8m5", "e5m6", "e5m4", "e5m3", "e4m2"]
for name in standard + custom:
    fmt = osl.get_format(name)
    print(
        f"{fmt.name:12s} exponent {fmt.exponent_bits:2d} bits, "
        f"mantissa {fmt.mantissa_bits:2d} bits, "
        f"ε = 2^-{fmt.mantissa_bits} = {osl.machine_epsilon(fmt):.3g}"
    )

# %% [markdown]
# ## 2. The law on the exact curve: one untrained layer without positions
#
# The NoPE layer of `theory.SyntheticLayer` collapses exactly as Θ(1/n). Fit `D(n) ≈ c/n`
# on the mean L1 distance (`theory.fit_inverse_law`), predict `c/ε` for every format
# (`theory.predicted_collapse_length`) and read the real crossing off the curve
# (`theory.crossing_length`, interpolated in log-log space; `first_length_below` gives
# the first grid point).

# %%
seeds = 10 if opts.fast else 100
max_length = 2_000 if opts.fast else 50_000
grid = sorted({int(round(x)) for x in np.geomspace(5, max_length, 15 if opts.fast else 50)})
curve = theory.synthetic_collapse_curve("nope", grid, seeds)
l1 = curve.mean("l1").numpy()
fit_range = [i for i, n in enumerate(grid) if n >= 50]
fit = theory.fit_inverse_law([grid[i] for i in fit_range], l1[fit_range])
print(f"fit on n ≥ 50: D(n) ≈ {fit.coefficient:.2f}/n, free slope {fit.slope:+.3f}")

formats = [
    "float8_e5m2",
    "float8_e4m3",
    "e5m4",
    "e5m5",
    "e5m6",
    "bfloat16",
    "e5m8",
    "e5m9",
    "float16",
]
rows = []
print("format        ε          predicted c/ε   crossing of the curve   ratio")
for name in formats:
    eps = osl.machine_epsilon(name)
    predicted = fit.collapse_length(eps)
    crossing = theory.crossing_length(grid, l1, eps)
    rows.append((name, eps, predicted, crossing))
    print(f"{name:12s}  {eps:.3e}  {predicted:12.0f}    {crossing:12.0f}", end="")
    print(f"          {crossing / predicted:.2f}")
by_name = {name: (predicted, crossing) for name, _, predicted, crossing in rows}
if all(np.isfinite(by_name[n][1]) for n in ("bfloat16", "float16")):
    ratio = by_name["float16"][1] / by_name["bfloat16"][1]
    print(f"fp16 : bf16 collapse-length ratio on the curve: {ratio:.2f} (theory: 8)")
print(f"float32 would need n ≈ {fit.collapse_length(osl.machine_epsilon('float32')):.2e} tokens")

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
left.loglog(grid, l1, label=f"NoPE, mean L1 over {seeds} seeds")
left.loglog(
    grid, [fit.coefficient / n for n in grid], ":", c="grey", label=f"{fit.coefficient:.2f}/n"
)
for name, eps, _, _ in rows:
    left.axhline(eps, lw=0.6, ls="--", c="k")
    left.text(grid[0], eps, name, fontsize=7, va="bottom")
left.set_xlabel("n")
left.set_ylabel("distance")
left.set_title("One untrained layer: the 1/n curve and each format's ε", fontsize=10)
left.legend(fontsize=8, loc="upper right")
eps_values = np.array([eps for _, eps, _, _ in rows])
right.loglog(eps_values, [p for _, _, p, _ in rows], "-", c="grey", label="predicted c/ε")
finite = [(eps, c) for _, eps, _, c in rows if np.isfinite(c)]
right.loglog(*zip(*finite, strict=True), "o", label="crossing of the curve")
right.set_xlabel("machine epsilon ε")
right.set_ylabel("collapse length n")
right.set_title("Collapse length ∝ 1/ε", fontsize=10)
right.legend(fontsize=8)
fig.tight_layout()
save(fig, opts.out, "synthetic_precision.png")

# %% [markdown]
# Formats whose crossing lies beyond the grid (`inf` above) would need longer sequences
# than computed; the fit still predicts where they cross.
#
# ## 3. The real model, run in each format
#
# Now the paper's Fig 5 (a) family, "How many ones are in the following sequences?" +
# "1"×k vs "1"×(k+1), on a language model. Native precisions load the weights in that
# dtype for the run; `"emulate:<format>"` keeps the model in float32 and rounds the
# residual stream and every head output to the format (round to nearest even), which is
# how formats without a torch dtype (or without CPU kernels) are studied.
#
# What is compared: y_n, the final norm's output at the last position (what the
# unembedding sees), in L∞ after rounding both vectors to the run's format. A pair
# counts as collapsed by
# - `"bits"`: the two y_n are bit-identical in the format;
# - `"epsilon"`: their L∞ distance is below the format's ε (the paper's dashed line);
# - `"argmax"`: the same next token.
# `collapse_length` returns the first k from which that stays true, and the c/ε
# prediction from a c/k fit to the most precise run (float64).

# %%
model = osl.load_model(opts.model)
if opts.fast:
    lengths = [1, 2, 4, 8, 16, 32]
    precisions = ["float64", "float32", "bfloat16", "emulate:float8_e4m3", "emulate:e5m3"]
else:
    lengths = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    precisions = [
        "float64",
        "float32",
        "float16",
        "bfloat16",
        "emulate:e5m6",
        "emulate:e5m4",
        "emulate:e5m3",
        "emulate:float8_e4m3",
    ]
family = tasks.repeated_last("1", prefix=tasks.COUNT_ONES, bos=True)
result = osl.collapse(model, family, lengths, precisions, heads=False, progress=False)
result.save(opts.out / "collapse_by_format.npz")
y = result.point_index()

print("precision             ε          L∞(y_n) at k=1 / k=max   bits  eps  argmax  c/ε predicts")
summary = []
for precision in precisions:
    p = result.precision_index(precision)
    eps = osl.machine_epsilon(result.formats[p])
    found = {
        c: result.collapse_length(precision, c).measured for c in ("bits", "epsilon", "argmax")
    }
    predicted = result.collapse_length(precision, "epsilon").predicted
    first, last = result.curve(precision)[[0, -1]].tolist()
    summary.append((precision, eps, found, predicted))
    print(
        f"{precision:20s}  {eps:.2e}  {first:.3g} / {last:.3g}".ljust(58)
        + f"{found['bits']!s:>5s} {found['epsilon']!s:>5s} {found['argmax']!s:>6s}   "
        + (f"{predicted:.3g}" if predicted is not None else "n/a")
    )
reference_fit = result.collapse_length("float64", "epsilon").fit
if reference_fit is not None:
    print(f"float64 y_n curve: free log-log slope {reference_fit.slope:+.2f} (1/k law: −1)")

# %% [markdown]
# Left: the distance curve of each run with its format's ε (same colour, dashed) and the
# noise floor (hatched). Right: measured collapse lengths (`"epsilon"` criterion) against
# the c/ε prediction; a format that never collapses within the measured lengths is drawn
# as an open triangle at the top (the longest length measured). Only formats with
# ε ≥ 2^-12 are drawn: float32 and float64 are predicted to collapse only after
# ~10^7 and ~10^16 tokens.

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
result.plot(ax=left, layer=None)
for line, precision in zip(left.get_lines(), precisions, strict=False):
    eps = osl.machine_epsilon(result.formats[result.precision_index(precision)])
    left.axhline(eps, ls="--", lw=0.7, color=line.get_color())
left.set_title(f"{result.family}: y_n, per format", fontsize=10)
left.legend(fontsize=6)
low = [row for row in summary if row[1] >= 2.0**-12]  # float32/64 predictions are astronomic
predicted_low = sorted((eps, pr) for _, eps, _, pr in low if pr is not None)
if predicted_low:
    right.loglog(*zip(*predicted_low, strict=True), c="grey", label="c/ε (fit on float64)")
for precision, eps, found, _ in low:
    if found["epsilon"] is not None:
        right.loglog([eps], [found["epsilon"]], "o", label=precision)
    else:
        right.loglog([eps], [max(lengths)], "^", mfc="none", label=f"{precision}: > {max(lengths)}")
right.set_xlabel("machine epsilon ε of the run's format")
right.set_ylabel("collapse length k (L∞ < ε)")
right.set_title(f"{opts.model}: measured vs c/ε", fontsize=10)
right.legend(fontsize=6)
fig.tight_layout()
save(fig, opts.out, "model_precision.png")
print(f"done in {clock}")
