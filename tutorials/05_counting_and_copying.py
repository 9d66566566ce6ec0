"""Tutorial 05: counting and copying, behaviour and the glasses (percent-cell notebook)."""

# %% [markdown]
# # 05 — Counting, copying, and the "glasses" (paper §6, Fig 2–4, Fig 11)
#
# Tutorials 02–04 measured representations. This one looks at *answers*:
#
# 1. **Copying** (Fig 2 / Fig 11): "What is the last digit in this sequence?" on
#    `1…10` should fail from some length on, because the final 0 is the one token whose
#    information has a single path to the last position (Theorem 5.1), while the first
#    digit of `01…1` has the most paths. **Counting** (Fig 3 / Fig 4): the error in
#    counting the ones in `1…1` grows with length, since `1^k` and `1^(k+1)` collapse
#    (Theorem 4.2, Cor. 6.2).
# 2. The same tasks on **toy models** trained on them (`toy-copy`, `toy-count`, 3 layers,
#    trained on sequences of up to 32 items): where does a model that has *learned*
#    the task stop answering right?
# 3. **The glasses** (Fig 2, 5d, 11): the paper's mitigations — separators, a hint, higher
#    precision — side by side with `osl.compare_glasses`: collapse of k vs k + 1, the
#    sensitivity of y_n to the answer-relevant token, and accuracy.
#
# `osl.behaviour(model, task, lengths)` generates greedy answers to a task from
# `osl.tasks` (the paper's prompts from Appendix C.1, or a compact `"L:1110="` format for
# the toy models), parses and scores them.

# %%
import matplotlib.pyplot as plt
from _common import Timer, options, save

import oversquash_lens as osl
from oversquash_lens import tasks

opts = options("05_counting_and_copying")
clock = Timer()
print(f"model={opts.model} fast={opts.fast} out={opts.out}")

# %% [markdown]
# ## 1. The language model: copying the last vs the first digit, counting ones
#
# Deterministic tasks give the same prompt for every sample, so one greedy sample per
# length is enough. `BehaviourResult.accuracy()` is a table per length;
# `failure_length()` is N*, the shortest length from which every longer one scores below
# one half (a dip that later lengths recover from does not count). The prompts
# go through the tokenizer's chat template where it has one (SmolLM2-Instruct does).

# %%
model = osl.load_model(opts.model)
new_tokens = 4 if opts.fast else None  # None: the task's own answer budget
copy_lengths = [2, 4] if opts.fast else [5, 10, 25, 50, 100, 200, 400]
count_lengths = [2, 4] if opts.fast else [5, 15, 25, 35, 55, 75, 95]
copy_last = osl.behaviour(
    model, tasks.copy_last(), copy_lengths, samples=1, progress=False, max_new_tokens=new_tokens
)
copy_first = osl.behaviour(
    model, tasks.copy_first(), copy_lengths, samples=1, progress=False, max_new_tokens=new_tokens
)
count = osl.behaviour(
    model, tasks.count_ones(), count_lengths, samples=1, progress=False, max_new_tokens=new_tokens
)
for name, result in (("copy last", copy_last), ("copy first", copy_first), ("count", count)):
    result.save(opts.out / f"lm_{name.replace(' ', '_')}.npz")
    table = result.accuracy()[["k", "accuracy", "mean_abs_error", "unparsed"]]
    print(f"{name}: failure length {result.failure_length()}\n{table.to_string(index=False)}")
print("example answers (copy last):", [o.strip()[:40] for o in copy_last.output[:3]])

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
for name, result in (
    ("copy last digit of 1…10", copy_last),
    ("copy first digit of 01…1", copy_first),
):
    acc = result.accuracy()
    left.plot(acc["k"], acc["accuracy"], marker="o", label=name)
left.set_xscale("log")
left.set_ylim(-0.05, 1.05)
left.set_xlabel("k (ones in the sequence)")
left.set_ylabel("accuracy")
left.set_title(f"Copying (Fig 2), {opts.model}", fontsize=10)
left.legend(fontsize=8)
rows = count.to_dataframe()
right.plot(rows["k"], rows["parsed"], marker="o", label="answer")
right.plot(rows["k"], rows["k"], ls="--", c="grey", label="truth (k)")
right.set_xscale("log")
right.set_yscale("log")  # a model that echoes the ones answers 111…1, far off any linear scale
right.set_xlabel("k (ones to count)")
right.set_ylabel("parsed answer")
right.set_title("Counting ones (Fig 3/4)", fontsize=10)
right.legend(fontsize=8)
fig.tight_layout()
save(fig, opts.out, "lm_behaviour.png")

# %% [markdown]
# ## 2. Toy models trained on the tasks
#
# `toy-copy` was trained to answer `F:<digits>=` (first digit) and `L:<digits>=` (last
# digit), `toy-count` to answer `C:<0/1 digits>=` with the number of ones, on sequences
# of 1 to 32 items (see docs/toy_models.md). We test them far beyond that length. The
# compact tasks are `tasks.copy_last(style="compact")` etc.; counting a random 0/1
# sequence (`count_bernoulli`, Fig 6) draws a new sequence per sample.

# %%
toy_lengths = [4, 16, 64] if opts.fast else [4, 8, 16, 32, 48, 64, 128, 256, 512]
toy_samples = 2 if opts.fast else 8
toys = {}
toy_copy = osl.load_model("toy-copy")
toys["toy-copy: last digit"] = osl.behaviour(
    toy_copy, tasks.copy_last(style="compact"), toy_lengths, samples=1, progress=False
)
toys["toy-copy: first digit"] = osl.behaviour(
    toy_copy, tasks.copy_first(style="compact"), toy_lengths, samples=1, progress=False
)
toy_count = osl.load_model("toy-count")
toys["toy-count: ones in 1…1"] = osl.behaviour(
    toy_count, tasks.count_ones(style="compact"), toy_lengths, samples=1, progress=False
)
toys["toy-count: Bernoulli(0.7)"] = osl.behaviour(
    toy_count,
    tasks.count_bernoulli(style="compact"),
    toy_lengths,
    samples=toy_samples,
    progress=False,
)
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
for name, result in toys.items():
    result.save(opts.out / f"{''.join(c if c.isalnum() else '_' for c in name)}.npz")
    acc = result.accuracy()
    print(f"{name}: failure length {result.failure_length()}")
    print(acc[["k", "n", "accuracy", "mean_abs_error"]].to_string(index=False))
    left.plot(acc["k"], acc["accuracy"], marker="o", label=name)
    if name.startswith("toy-count"):
        right.plot(acc["k"], acc["mean_abs_error"], marker="o", label=name)
for ax in (left, right):
    ax.axvline(32, ls=":", c="grey", label="longest training sequence")
    ax.set_xscale("log")
    ax.set_xlabel("k (items)")
    ax.legend(fontsize=7)
left.set_ylabel("accuracy")
left.set_title("Toy models: accuracy", fontsize=10)
right.set_yscale("symlog", linthresh=1)  # 0 (right) and 10^4 (far off) on one axis
right.set_ylabel("mean |answer − truth|")
right.set_title("Toy counting: error grows with length", fontsize=10)
fig.tight_layout()
save(fig, opts.out, "toy_behaviour.png")

# %% [markdown]
# ## 3. The glasses (Fig 2, 5d, 11)
#
# `osl.compare_glasses(model, task, lengths, variants)` runs each mitigation through the
# same three measurements. Variants are `osl.Variant` objects or shorthands:
# `"baseline"`, `"hint"` (Fig 2b: "it's not necessarily a 1, check carefully"),
# `"sep:3"` (a comma every third digit, Fig 5d), `"precision:float32"` (run in float32
# instead of the default bfloat16), `"no_bos"`, … For copy-last the answer-relevant
# token is the final 0: its share of y_n's total sensitivity is the over-squashing side;
# the L∞ distance between the y_n of k and k + 1 ones is the collapse side (below the
# dashed ε line the two prompts are the same number in that precision).

# %%
glasses_lengths = [2, 4] if opts.fast else [10, 50, 100, 200]
variants = (
    ["baseline", "sep:3"] if opts.fast else ["baseline", "hint", "sep:3", "precision:float32"]
)
glasses = osl.compare_glasses(
    model,
    tasks.copy_last(),
    glasses_lengths,
    variants,
    samples=1,
    probes=4 if opts.fast else 16,
    behaviour=not opts.fast,
    progress=False,
)
glasses.save(opts.out / "glasses.npz")
columns = ["variant", "length", "linf", "eps_ratio", "relevant_share", "accuracy"]
print(glasses.to_dataframe()[columns].to_string(index=False))
figure = glasses.plot()
save(figure, opts.out, "glasses.png")
print(f"done in {clock}")
