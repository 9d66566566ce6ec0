"""Tutorial 04: over-squashing, Theorem 5.1, path counts and sensitivity (percent-cell notebook)."""

# %% [markdown]
# # 04 — Over-squashing (paper §5, Theorem 5.1)
#
# Theorem 5.1 bounds how much the final token's output `y_n` can change when input token
# `i` changes, by a weighted sum over the causal attention paths from `i` to `n`
# (in matrix form; `docs/theory.md` derives it):
#
#     ‖∂y_n / ∂v_i(0)‖ ≤ C · ( Ā(L−1) ⋯ Ā(0) )_{n,i},   Ā(ℓ) = Λ(ℓ)/β1 + I
#
# with Λ(ℓ) the layer's (head-averaged) attention matrix. Two things decide a token's
# reach: its **position** (how many paths leave it) and the **attention weights** along
# those paths. This tutorial goes from the pure combinatorics to a real model:
#
# 1. path counts in the causal graph, closed form (`osl.path_counts`);
# 2. the depth limit (Prop. 5.2 / B.8) and the U-shape under uniform attention;
# 3. the model's own attention: first-token mass by depth (`osl.attention_paths`);
# 4. the bound against measured Jacobian sensitivity (`osl.trace` → `FlowResult`), with
#    the rank agreement between the two;
# 5. the U-shape of the measured sensitivity;
# 6. why a token is lost: sensitivity with attention frozen (the theorem's own setting),
#    the part that flows through the attention scores, and which path proxy explains
#    the measurement, including a bound that certifiably holds on this model.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from _common import Timer, in_notebook, options, save

import oversquash_lens as osl
from oversquash_lens import tasks

opts = options("04_oversquashing")
clock = Timer()
print(f"model={opts.model} fast={opts.fast} out={opts.out}")

# %% [markdown]
# ## 1. Counting paths
#
# In the causal graph with self-loops, the number of length-L paths from token i to
# token n is C(n − i + L − 1, L − 1): the first token has by far the most, the last token
# exactly one (its self-loop at every layer). A worked example: n = 8, L = 3
# gives 36, 28, 21, 15, 10, 6, 3, 1. We check the closed form against the matrix power
# M^L of the all-ones lower-triangular matrix, then plot log counts for longer sequences
# (`osl.log_path_counts` works in log space: the counts overflow quickly).

# %%
counts = osl.path_counts(8, 3)
ones_lower = torch.tril(torch.ones(8, 8, dtype=torch.float64))
by_matrix = torch.linalg.matrix_power(ones_lower, 3)[-1]
print("closed form :", counts)
print("M^3 last row:", tuple(int(v) for v in by_matrix))
print("with the residual as its own edge ((M + I)^3):", osl.path_counts(8, 3, residual=True))

n_count = 64 if opts.fast else 256
fig, ax = plt.subplots(figsize=(6, 3.6))
for depth in [1, 2, 4, 8, 30]:
    log_counts = osl.log_path_counts(n_count, depth)
    ax.plot(range(1, n_count + 1), (log_counts / np.log(10)).numpy(), label=f"L = {depth}")
ax.set_xlabel("input position i")
ax.set_ylabel("log10 #paths to the last token")
ax.set_title(f"Causal paths to token n = {n_count}", fontsize=10)
ax.legend(fontsize=8)
fig.tight_layout()
save(fig, opts.out, "path_counts.png")

# %% [markdown]
# ## 2. The depth limit and the U-shape (Prop. 5.2 / B.8)
#
# Give every layer the same attention Λ. Attention rollout (Abnar & Zuidema 2020) is the
# bound's product with Ā = ½(Λ + I). If every row after the first has at least two
# non-zeros, (½(Λ + I))^L → 1·e_1ᵀ: with depth, all the mass moves to the first token.
# With uniform causal attention (Λ_ij = 1/i) and n = 20 (a worked example):
# one layer puts 0.525 on the last token; four layers give a U-shape (≈ 0.205 first,
# ≈ 0.02 in the middle, ≈ 0.076 last); sixteen layers put ≈ 0.90 on the first token.

# %%
n_uniform = 20
uniform = torch.tril(torch.ones(n_uniform, n_uniform, dtype=torch.float64))
uniform = uniform / uniform.sum(-1, keepdim=True)
rollout_step = 0.5 * (uniform + torch.eye(n_uniform, dtype=torch.float64))
fig, ax = plt.subplots(figsize=(6, 3.6))
for depth in [1, 4, 16, 64]:
    row = torch.linalg.matrix_power(rollout_step, depth)[-1]
    ax.plot(range(1, n_uniform + 1), row.numpy(), marker=".", label=f"L = {depth}")
    middle = row[n_uniform // 2 - 1].item()
    print(
        f"L = {depth:2d}: first {row[0]:.3f}, middle (i = 10) {middle:.3f}, "
        f"minimum {row.min():.3f} at i = {int(row.argmin()) + 1}, last {row[-1]:.3f}"
    )
ax.set_yscale("log")
ax.set_xlabel("input position i")
ax.set_ylabel("rollout weight to token n")
ax.set_title("Uniform causal attention, n = 20: U-shape, then the first token", fontsize=10)
ax.legend(fontsize=8)
fig.tight_layout()
save(fig, opts.out, "depth_limit_uniform.png")

# %% [markdown]
# ## 3. The model's own attention: where does the path mass go?
#
# `osl.attention_paths(model, prompt, method=...)` runs one forward pass, reads every
# layer's attention pattern (eager attention), averages the heads and multiplies the
# Ā(ℓ) layer by layer, keeping only the last row. `PathResult.weights[b, ℓ, i]` is the
# path weight from i to the last token through layers 0..ℓ; `PathResult.uniform` is the
# same product had every head attended uniformly, the topology-only reference of
# section 2. `summary()` reports per layer the share of the first token, the last
# token, and each third of the sequence.
#
# The prompt is the paper's counting question, "How many ones are in the following
# sequences?" followed by ones (built by `osl.tasks`, which checks the tokenization).

# %%
model = osl.load_model(opts.model)
n_layers = model.cfg.n_layers
k = 16 if opts.fast else 200
tokens = tasks.repeated_last("1", prefix=tasks.COUNT_ONES, bos=True).pair(model, k).a[None]
print(f"prompt: {tokens.shape[1]} tokens")

rollout = osl.attention_paths(model, tokens, method="rollout")
table = rollout.summary()
print(table[["layer", "first", "early", "middle", "late", "last", "argmin"]].round(3).to_string())
shares = rollout.weights[0] / rollout.weights[0].sum(-1, keepdim=True)
uniform_shares = rollout.uniform / rollout.uniform.sum(-1, keepdim=True)

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
layers_axis = range(1, n_layers + 1)
left.plot(layers_axis, shares[:, 0].numpy(), marker="o", label="model: first token")
left.plot(layers_axis, uniform_shares[:, 0].numpy(), ls="--", label="uniform attention: first")
left.plot(layers_axis, shares[:, -1].numpy(), marker="s", label="model: last token")
left.plot(layers_axis, uniform_shares[:, -1].numpy(), ls="--", label="uniform attention: last")
left.set_xlabel("layers multiplied (depth)")
left.set_ylabel("share of rollout mass")
left.set_yscale("log")
left.set_title("First-token mass grows with depth (Prop. 5.2)", fontsize=10)
left.legend(fontsize=7)
for layer in sorted({0, (n_layers - 1) // 2, n_layers - 1}):
    right.plot(shares[layer].numpy(), label=f"after layer {layer}")
right.set_yscale("log")
right.set_xlabel("input position i")
right.set_ylabel("share of rollout mass")
right.set_title(f"Rollout profiles, {opts.model}", fontsize=10)
right.legend(fontsize=7)
fig.tight_layout()
save(fig, opts.out, "rollout_depth.png")

# %% [markdown]
# ## 4. Bound versus measured sensitivity
#
# `osl.trace(model, prompt)` makes two passes: one without gradients for the path
# weights (`"bound"`: Ā = Λ/β1 + I with β = σ_ψ = 1 by default), and one with gradients
# for the Jacobian norms ‖∂h_n(ℓ)/∂v_i(0)‖_F at the chosen output points (block outputs
# and y_n). The full Jacobian at the last position costs d_model backward passes per
# point, so long prompts use Hutchinson's estimator with k random probes (standard
# errors are kept in `sensitivity_stderr`); tiny models use the exact Jacobian.
#
# `FlowResult.agreement()` gives the Spearman and Kendall rank correlation between the
# two profiles at each point: does the bound order the positions as the real
# sensitivity does?

# %%
points = [*sorted({0, (n_layers - 1) // 2, n_layers - 1}), "final"]
method = "exact" if opts.fast else "hutchinson"
flow = osl.trace(model, tokens, method=method, probes=16, layers=points)
flow.save(opts.out / "flow.npz")
print(flow.agreement().round(3).to_string())
figure = flow.plot()
save(figure, opts.out, "flow.png")

# %% [markdown]
# ## 5. The U-shape of the measured sensitivity (paper §5)
#
# The paper predicts that sensitivity is largest for early tokens (many paths), lowest
# in the middle, and rises again at the end (the last token's direct path, plus learned
# recency). We split the measured profile of y_n into the first token, the three thirds
# and the last token, as shares of the total.

# %%
y = flow.point_index()
profile = flow.sensitivity[0, y]
share = profile / profile.sum()
third = max(len(share) // 3, 1)
print(
    f"y_n sensitivity shares: first token {share[0]:.3f}, early third "
    f"{share[:third].sum():.3f}, middle third {share[third:-third].sum():.3f}, late third "
    f"{share[-third:].sum():.3f}, last token {share[-1]:.3f}; minimum at position "
    f"{int(share.argmin())} of {len(share)}"
)
bound_share = flow.paths[0, y] / flow.paths[0, y].sum()
print(f"bound: first token {bound_share[0]:.3f}, last token {bound_share[-1]:.2e}")

# %% [markdown]
# ## 6. Why a token is lost: which proxy explains the measurement
#
# Thm 5.1 assumes attention that does not depend on the input. `osl.trace` therefore
# measures the sensitivity twice in one pass: with full attention, and with every
# attention pattern held constant (the value path only: the theorem's own setting), and
# also the part that flows through the attention scores, ‖J_full − J_frozen‖. Beside them
# sit the path proxies: the bound with unit constants (which ranks positions exactly like
# rollout), value-weighted rollout (attention times the norm of what each position
# writes), attention flow (max-flow through the layered attention graph) and the
# **certified** bound, whose constants (norm Jacobians, value-output norms, MLP factors)
# are measured on this run, so it must hold at every position (`docs/theory.md`).
#
# `flow.agreement()` says, per point and proxy, how well each ranks the positions like
# each measurement, how much each puts on the first token, and where the certified bound
# holds and how loose it is. Attention flow solves n·L max-flow problems on a graph of
# L·n²/2 edges; on SmolLM2 its default budget stops it at about 70 tokens (a
# `PathBudgetError`, raised before any pass), so it joins only the short prompts here.

# %%
methods = ["bound", "rollout", "value", "certified"]
if tokens.shape[-1] * n_layers <= 2000:  # within attention flow's default budget
    methods.insert(3, "flow")
flow = osl.trace(model, tokens, method=method, probes=16, layers=points, path_methods=methods)
table = flow.agreement()
at_y = table[table.point == flow.points[y]]
print(at_y[["proxy", "measure", "spearman", "proxy_first", "measured_first"]].round(3).to_string())
certificate = at_y[(at_y.proxy == "certified") & (at_y.measure == "frozen")].iloc[0]
frozen_share = (flow.measure("frozen")[0, y].sum() / flow.sensitivity[0, y].sum()).item()
print(
    f"certified bound holds at {certificate.holds:.0%} of positions (slack median "
    f"{certificate.slack_median:.3g}); frozen attention carries {frozen_share:.0%} of the "
    "total sensitivity (norms summed over positions)"
)
fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
flow.plot_agreement(axes[0], measure="full")
flow.plot_agreement(axes[1], measure="frozen")
fig.tight_layout()
save(fig, opts.out, "proxies.png")
proxies_view = osl.render.proxy_tokens(flow)
proxies_view.save_html(opts.out / "proxies.html")
if in_notebook():
    from IPython.display import display  # pyright: ignore[reportMissingImports]

    display(proxies_view)
print(f"done in {clock}")
