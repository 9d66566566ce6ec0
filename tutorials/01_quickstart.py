"""Tutorial 01: analyzers on both backends, one trace, offline views (percent-cell notebook)."""

# %% [markdown]
# # 01 — Quickstart
#
# `oversquash_lens` measures, on TransformerLens models, how information about each
# input token reaches the last token: the two failure modes of Barbero et al. (2024),
# *representational collapse* (§4, tutorials 02–03) and *over-squashing* (§5,
# tutorial 04). Every measurement has the same shape:
#
#     model + prompt → hooks (osl.capture) → analyzer (pure math) → Result → plot / HTML / .npz
#
# This tutorial shows the plumbing once:
#
# 1. load a model on each TransformerLens backend that is installed — `HookedTransformer`
#    (TransformerLens 3.x only) and `TransformerBridge` (3.x and 4.x);
# 2. attach analyzers with `osl.attach`, run forward passes, read and save results;
# 3. trace one prompt with `osl.trace` (Jacobian sensitivity beside the attention-path
#    bound of Theorem 5.1);
# 4. render it as offline HTML with `oversquash_lens.render`.

# %%
import matplotlib.pyplot as plt
import torch
from _common import Timer, in_notebook, options, save

import oversquash_lens as osl
from oversquash_lens import render, tasks
from oversquash_lens.models import available_backends, tl_version

opts = options("01_quickstart")
clock = Timer()
print(f"model={opts.model} fast={opts.fast} out={opts.out}")

# %% [markdown]
# ## 1. One model, every installed backend
#
# `osl.load_model(name, backend=...)` loads the built-in offline models (`tiny-llama`,
# `smollm2-135m`, …, see `osl.list_models()`) or any TransformerLens name.
# TransformerLens 4.x removed `HookedTransformer`, so ask which backends exist instead of
# assuming one: on 3.9 both load, on 4.x only the bridge (in compatibility mode, where its
# hooks have HookedTransformer's names and values).

# %%
backends = available_backends()
print(f"TransformerLens {tl_version()}: backends {backends}")
print("built-in models:", ", ".join(osl.list_models()))
models = {backend: osl.load_model(opts.model, backend=backend) for backend in backends}
for backend, model in models.items():
    print(f"{backend:7s}: {type(model).__name__}, {model.cfg.n_layers} layers")

# %% [markdown]
# ## 2. Attach analyzers
#
# `osl.attach(model, *analyzers)` is a context manager: every forward pass inside it is
# one *run*, and `rec.results[name][i]` is the result of analyzer `name` for run `i`.
# Only the activations an analyzer asks for are kept (detached copies), and every hook
# is removed on exit, even after an exception.
#
# - `ResidualNorms` — ‖v_n(ℓ)‖ of the last token at every residual point, and y_n;
# - `AttentionPaths(method="rollout")` — attention rollout from every position to the
#   last token (the paper's §5).
#
# The prompt is the paper's counting question followed by ones, built by `osl.tasks`
# (which checks that every "1" is its own token).

# %%
k = 12 if opts.fast else 60
tokens = tasks.repeated_last("1", prefix=tasks.COUNT_ONES, bos=True).pair(models[backends[0]], k).a
tokens = tokens[None]  # [batch, pos]
print(f"{tokens.shape[1]} tokens")

norms: dict[str, osl.ResidualNormsResult] = {}
for backend, model in models.items():
    residual, rollout = osl.ResidualNorms(include_final_norm=True), osl.AttentionPaths()
    with osl.attach(model, residual, rollout) as rec:
        with torch.no_grad():
            model(tokens)
    # Given the analyzer object, rec.result(...) has the analyzer's result type (by name,
    # rec.result("ResidualNorms") or rec.results["ResidualNorms"][0], the base Result).
    norms[backend] = rec.result(residual, 0)
    first = rec.result(rollout, 0).summary()["first"].iloc[-1]
    print(f"{backend:7s}: rollout share of the first token after the last layer = {first:.3f}")

fig, ax = plt.subplots(figsize=(6, 3.5))
for backend, result in norms.items():
    ax.plot(result.norms[0].numpy(), marker="o", label=backend)
ax.set_xlabel("residual point (v(0) … v(L), then y_n)")
ax.set_ylabel("‖last token‖₂")
ax.set_title(f"ResidualNorms on {opts.model}", fontsize=10)
ax.legend()
fig.tight_layout()
save(fig, opts.out, "residual_norms.png")

if len(norms) == 2:
    a, b = (r.norms for r in norms.values())
    print(f"largest relative difference between the backends: {((a - b).abs() / a).max():.1e}")

# %% [markdown]
# Results are dataclasses of CPU tensors with provenance (model, TransformerLens version,
# dtype, hooks, seed). `save` writes an `.npz` plus JSON metadata atomically; `load`
# brings it back.

# %%
result = norms[backends[0]]
path = result.save(opts.out / "residual_norms.npz")
again = type(result).load(path)
print(f"saved and reloaded {path}: equal = {torch.equal(again.norms, result.norms)}")
print(
    result.provenance.model_name,
    result.provenance.transformer_lens_version,
    result.provenance.dtype,
)

# %% [markdown]
# ## 3. Trace one prompt
#
# `osl.trace` puts the two sides of Theorem 5.1 next to each other: the attention-path
# bound (`"bound"` weights of (Λ/β1 + I)⋯, one pass without gradients) and the measured
# sensitivity ‖∂h_n(ℓ)/∂v_i(0)‖ of the last token's output to every input token (exact
# Jacobian on tiny models, Hutchinson's estimator with k probes on larger ones).
# Tutorial 04 studies what the profiles mean; here we just make one.

# %%
model = models[backends[0]]
method = "exact" if opts.fast else "hutchinson"
flow = osl.trace(model, tokens, method=method, probes=16, layers=[0, "final"])
print(flow.agreement().round(3).to_string())
fig, ax = plt.subplots(figsize=(7, 3.5))
flow.plot_profile(ax)
fig.tight_layout()
save(fig, opts.out, "trace_profile.png")

# %% [markdown]
# ## 4. Render it
#
# `render.flow_tokens(flow)` colours each token by its sensitivity, one selectable row
# per output point; `render.attention_heads(model, prompt)` shows chosen layers'
# attention patterns (circuitsvis) with the rollout weights underneath. Both return a
# view with `_repr_html_` (it displays in a notebook) and `save_html(path)`: a complete
# page with the circuitsvis bundle inlined, so it opens without a network.

# %%
tokens_view = render.flow_tokens(flow, title="Sensitivity of the last token, per input token")
heads_view = render.attention_heads(model, tokens, max_tokens=40)
for name, view in (("flow_tokens.html", tokens_view), ("attention_heads.html", heads_view)):
    saved = view.save_html(opts.out / name)
    print(f"saved {saved} ({saved.stat().st_size / 1e6:.1f} MB)")
if in_notebook():  # the first view inlines the circuitsvis bundle, the second reuses it
    from IPython.display import display  # pyright: ignore[reportMissingImports]

    display(tokens_view, heads_view)

# %%
print(f"done in {clock}")
