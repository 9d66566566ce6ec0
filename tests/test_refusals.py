"""No silent wrong answers: every ordinary mistake gives a correct result or a clear refusal.

One test (or a small table of them) per way a careful user could get a wrong number
without a warning: checkpoints reused across models, pickled checkpoints, padded
batches, hooks skipped while generating, coerced lengths, no-op precisions, separators
that change the ground truth, logits transformed after the unembedding, bidirectional
models, bad token ids and arguments, models without a tokenizer, non-TransformerLens
objects and misleading hints.
"""

import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

import oversquash_lens as osl
from oversquash_lens import capture, tasks
from oversquash_lens._compat import bridge_class, hooked_transformer_class

from .conftest import BACKENDS
from .helpers import hook_registry, leftover_hooks, state_of

needs_hooked = pytest.mark.skipif(
    hooked_transformer_class() is None, reason="TransformerLens 4.x has no HookedTransformer"
)
ONES = tasks.repeated_last("1")


# ---------------------------------------------------------------- checkpoints
def collapse_with(model: Any, path: Path, **kwargs: Any) -> Any:
    return osl.collapse(model, ONES, [1, 2, 4], ["float32"], progress=False, checkpoint=path)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_collapse_checkpoint_is_refused_for_another_model(backend: str, tmp_path) -> None:
    """Other weights, weight processing, dtype or an outer precision context: refused."""
    path = tmp_path / "sweep.ckpt"
    model = osl.load_model("tiny-gpt2", backend=backend)
    first = collapse_with(model, path)
    assert torch.equal(collapse_with(model, path).distances, first.distances)  # resumes

    others = {
        "weights_sha256": osl.load_model("tiny-llama", backend=backend),
        "dtype": osl.load_model("tiny-gpt2", backend=backend, dtype="bfloat16"),
    }
    if backend == "hooked":
        others["weights_processed"] = osl.load_model("tiny-gpt2", processed=False)
    for field, other in others.items():
        with pytest.raises(osl.CheckpointMismatchError, match=field):
            collapse_with(other, path)
    with osl.emulate_precision(model, "bfloat16"):
        with pytest.raises(osl.CheckpointMismatchError, match="precision"):
            collapse_with(model, path)
    with torch.no_grad():
        model.W_E.mul_(1.5)  # the same object, edited in place
    try:
        with pytest.raises(osl.CheckpointMismatchError, match="weights_sha256"):
            collapse_with(model, path)
    finally:
        with torch.no_grad():
            model.W_E.div_(1.5)


def test_a_behaviour_checkpoint_is_refused_for_another_model(tmp_path) -> None:
    path = tmp_path / "answers.ckpt"
    task = tasks.count_ones(style="compact")
    kwargs = {"samples": 1, "max_new_tokens": 2, "progress": False, "checkpoint": path}
    model = osl.load_model("tiny-gpt2", backend=BACKENDS[0])
    osl.behaviour(model, task, [2, 3], **kwargs)
    other = osl.load_model("tiny-nope", backend=BACKENDS[0])  # same layout, other weights
    with pytest.raises(osl.CheckpointMismatchError, match="weights_sha256"):
        osl.behaviour(other, task, [2, 3], **kwargs)
    with osl.emulate_precision(model, "float16"):
        with pytest.raises(osl.CheckpointMismatchError, match="precision"):
            osl.behaviour(model, task, [2, 3], **kwargs)
    with pytest.raises(osl.CheckpointMismatchError, match="delete it"):
        osl.collapse(model, ONES, [1, 2], progress=False, checkpoint=path)  # another sweep


class Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("sweep", ["collapse", "behaviour"])
def test_checkpoints_never_run_code_and_bad_files_are_clear_errors(sweep: str, tmp_path) -> None:
    model = osl.load_model("tiny-gpt2", backend=BACKENDS[0])
    path, marker = tmp_path / "sweep.ckpt", tmp_path / "code-ran"

    def run() -> Any:
        if sweep == "collapse":
            return osl.collapse(model, ONES, [1, 2], progress=False, checkpoint=path)
        task = tasks.count_ones(style="compact")
        return osl.behaviour(
            model, task, [2], samples=1, max_new_tokens=1, progress=False, checkpoint=path
        )

    torch.save({"signature": {}, "done": Payload(marker)}, path)  # the old format, hostile
    with pytest.raises(osl.CheckpointError, match="not an oversquash_lens checkpoint"):
        run()
    path.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(osl.CheckpointError, match="corrupt or truncated"):
        run()
    assert not marker.exists(), "reading a checkpoint executed code"

    path.unlink()
    run()
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(osl.CheckpointError, match="delete it"):
        run()
    path.write_bytes(b"")
    with pytest.raises(osl.CheckpointError, match="corrupt or truncated"):
        run()


# ---------------------------------------------------------------- padded batches
RAGGED = ["1 1", "1 1 1 1"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_ragged_prompt_lists_are_refused(load, backend: str) -> None:
    model = load("tiny-llama", backend)
    for call in (
        lambda: osl.attention_paths(model, RAGGED),
        lambda: osl.sensitivity(model, RAGGED, method="hutchinson", probes=2),
        lambda: osl.trace(model, RAGGED, probes=2),
    ):
        with pytest.raises(osl.RaggedBatchError, match="different lengths"):
            call()
    same = osl.attention_paths(model, ["1 1", "2 2"])  # equal lengths: a real batch
    assert same.weights.shape[0] == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_padded_runs_inside_attach_are_refused_by_every_analyzer(load, backend: str) -> None:
    model = load("tiny-llama", backend)
    analyzers = [
        osl.AttentionPaths(),
        osl.Sensitivity(method="hutchinson", probes=2),
        osl.CollapseProbe(),
        osl.ResidualNorms(),
    ]
    with osl.attach(model, *analyzers) as rec:
        model(RAGGED)  # TransformerLens pads the shorter prompt on the right
        tokens = model.to_tokens(["1 1", "2 2"])
        model(tokens, attention_mask=torch.tensor([[1, 1, 1], [0, 1, 1]]))
        model(tokens)
    for analyzer in analyzers:
        for run in (0, 1):
            with pytest.raises(osl.RaggedBatchError, match="different lengths"):
                rec.result(analyzer.name, run)
        rec.result(analyzer.name, 2)  # an unpadded batch is measured


# ---------------------------------------------------------------- generation and hooks
def ablate_last_block(activation: torch.Tensor, hook: Any) -> torch.Tensor:
    return activation * 0.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_generation_honours_the_users_hooks(load, backend: str) -> None:
    """Under osl.intervene the tokens are those of the hooked model, on both backends."""
    model = load("tiny-llama", backend)
    prompts = [model.to_tokens("1 1 1")[0], model.to_tokens("1 0")[0]]
    plain = osl.greedy_generate(model, prompts, 4, stop_token_ids=())
    with osl.intervene(model, [("blocks.1.hook_resid_post", ablate_last_block)]):
        hooked = osl.greedy_generate(model, prompts, 4, stop_token_ids=())
        reference = [osl._generate.greedy_continuation(model, p[None], 4)[0] for p in prompts]
        route = osl._behaviour.generation_route(model)
    assert [h.tolist() for h in hooked] == [r.tolist() for r in reference]
    assert [h.tolist() for h in hooked] != [p.tolist() for p in plain]
    if backend == "bridge":
        assert "hooks" in route


# ---------------------------------------------------------------- lengths, precisions
@pytest.mark.parametrize("lengths", [[1.5, 2.7], "123", [True, 2], [2.0]])
def test_lengths_are_never_coerced(load, lengths: Any) -> None:
    model = load("tiny-gpt2", BACKENDS[0])
    with pytest.raises(TypeError, match="lengths"):
        osl.collapse(model, ONES, lengths, progress=False)
    with pytest.raises(TypeError, match="lengths"):
        osl.behaviour(model, tasks.count_ones(style="compact"), lengths, progress=False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_emulating_a_wider_format_than_the_model_runs_in_is_refused(load, backend) -> None:
    model = load("tiny-gpt2", backend)
    with pytest.raises(osl.UnsupportedPrecisionError, match="labelled float64"):
        osl.collapse(model, ONES, [1, 2], ["emulate:float64"], progress=False)
    with pytest.raises(osl.UnsupportedPrecisionError, match="float64"):
        with osl.emulate_precision(model, "float64"):
            pass
    with osl.native_dtype(model, "bfloat16"):
        with pytest.raises(osl.UnsupportedPrecisionError, match="float32"):
            with osl.emulate_precision(model, "e8m10"):  # fp32's range, fp16's mantissa
                pass
    result = osl.collapse(model, ONES, [1, 2], ["emulate:float32"], progress=False)
    assert result.precisions == ("emulate:float32",)  # the model's own format: allowed


def test_separators_that_read_as_items_are_refused() -> None:
    for make in (
        lambda: tasks.count_ones().replace(separator="1", every=3),
        lambda: tasks.copy_last().replace(separator=", 0", every=2),
        lambda: tasks.sum_ones().replace(separator="+1", every=2),
        lambda: tasks.count_word(word="pear").replace(joiner=" pear "),
        lambda: tasks.separated("1", separator="1"),
        lambda: tasks.separated("7", joiner=" 7"),
    ):
        with pytest.raises(ValueError, match="contains"):
            make()
    assert tasks.count_ones().replace(separator=",", every=3).instance(7).value == 7


# ---------------------------------------------------------------- the logits point
def hooked_from(**config: Any) -> Any:
    """A small HookedTransformer built from a config (TransformerLens 3.9 warns that the
    class is deprecated; the warning is not ours to fix)."""
    from transformer_lens import HookedTransformerConfig

    tokenizer = config.pop("tokenizer", None)
    base = dict(n_layers=2, d_model=32, n_ctx=64, d_head=8, n_heads=4, act_fn="gelu")
    cfg = HookedTransformerConfig(**(base | {"normalization_type": "LN", "seed": 0} | config))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return hooked_transformer_class()(cfg, tokenizer=tokenizer)  # type: ignore[misc]


def softcap_hooked() -> Any:
    from oversquash_lens.models._tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    return hooked_from(d_vocab=len(tok), output_logits_soft_cap=2.0, tokenizer=tok)


def softcap_bridge() -> Any:
    """A tiny Gemma-2: final logit soft-cap, attention soft-cap, sliding windows."""
    from transformers import AutoModelForCausalLM, Gemma2Config

    from oversquash_lens.models._tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    config = Gemma2Config(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        max_position_embeddings=256, final_logit_softcapping=2.0, sliding_window=16,
        architectures=["Gemma2ForCausalLM"], bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(0)
        hf = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    bridge = bridge_class().boot_transformers("tiny-gemma2", hf_model=hf, tokenizer=tok)
    bridge.enable_compatibility_mode(disable_warnings=True)
    return bridge


SOFTCAPPED = [pytest.param(softcap_hooked, id="hooked")] if hooked_transformer_class() else []
SOFTCAPPED.append(pytest.param(softcap_bridge, id="bridge"))


@pytest.mark.parametrize("make", SOFTCAPPED)
def test_the_logits_point_is_what_the_model_returns(make) -> None:
    model = make()
    assert capture.logits_transformed(model)
    tokens = torch.tensor([[1, 5, 7, 9]])
    with torch.no_grad():
        returned = model(tokens)
        with osl.attach(model, osl.CollapseProbe(heads=False)) as rec:
            model(tokens)
            model.forward(tokens)  # a pass that bypasses the call: its logits are unknown
    kept = rec.result("CollapseProbe", 0)
    assert isinstance(kept, osl.Representations)
    torch.testing.assert_close(kept.logits[0, 0], returned[0, -1], rtol=0, atol=0)
    with pytest.raises(osl.IncompatibleRunError, match="transforms its logits"):
        rec.result("CollapseProbe", 1)

    pair = tasks.pair([1, 5, 7], [1, 5, 7, 7])  # one pass per side, as below
    result = osl.collapse(model, pair, progress=False, heads=False, mode="independent")
    with torch.no_grad():
        a, b = model(torch.tensor([[1, 5, 7]])), model(torch.tensor([[1, 5, 7, 7]]))
    expected = (a[0, -1].double() - b[0, -1].double()).abs().max()
    linf = result.distances[0, 0, result.points.index("logits"), 2]
    torch.testing.assert_close(linf, expected, rtol=1e-12, atol=0)  # float64 of the same values


# ---------------------------------------------------------------- bidirectional models
def bidirectional_hooked() -> Any:
    from oversquash_lens.models._tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    return hooked_from(d_vocab=len(tok), attention_dir="bidirectional", tokenizer=tok)


def bert_bridge() -> Any:
    from transformers import BertConfig, BertForMaskedLM

    from oversquash_lens.models._tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    config = BertConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=256, architectures=["BertForMaskedLM"],
    )  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(0)
        hf = BertForMaskedLM(config).eval()
    bridge = bridge_class().boot_transformers("tiny-bert", hf_model=hf, tokenizer=tok)
    with pytest.warns(UserWarning, match="fold_ln"):
        bridge.enable_compatibility_mode(disable_warnings=True)
    return bridge


BIDIRECTIONAL = [pytest.param(bert_bridge, id="bert-bridge")]
if hooked_transformer_class() is not None:
    BIDIRECTIONAL.insert(0, pytest.param(bidirectional_hooked, id="hooked"))


@pytest.mark.parametrize("make", BIDIRECTIONAL)
def test_bidirectional_models_are_refused_where_causality_is_assumed(make) -> None:
    model = make()
    assert not osl.ModelAdapter(model).is_causal
    with pytest.raises(osl.UnsupportedArchitectureError, match="mode='independent'"):
        osl.collapse(model, ONES, [1, 2, 3], progress=False, heads=False)
    with pytest.raises(osl.UnsupportedArchitectureError, match="bidirectional"):
        osl.attention_paths(model, "1 1 1")
    result = osl.collapse(model, ONES, [1, 2], progress=False, heads=False, mode="independent")
    assert bool(result.noise.isnan().all())  # no position is shared by two passes
    assert bool((result.distances[0, :, -2, 2] > 0).all())


def test_causal_models_pass_the_causality_probe(load, backend: str) -> None:
    for name in ("tiny-gpt2", "tiny-llama", "tiny-nope"):
        assert osl.ModelAdapter(load(name, backend)).is_causal


# ---------------------------------------------------------------- bad tokens, arguments
BAD_TOKENS = {
    "out of range": (torch.tensor([[1, 2, 10**6]]), "outside the vocabulary"),
    "negative": (torch.tensor([[1, -3, 2]]), "outside the vocabulary"),
    "bool": (torch.tensor([[True, False, True]]), "mask"),
    "uint8": (torch.tensor([[1, 2, 3]], dtype=torch.uint8), "mask"),
    "float": (torch.tensor([[1.0, 2.0]]), "integer"),
    "3-d": (torch.zeros((1, 1, 3), dtype=torch.long), r"\[batch, pos\]"),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_token_ids_are_refused_clearly(load, backend: str, case: str) -> None:
    model = load("tiny-gpt2", backend)
    tokens, message = BAD_TOKENS[case]
    hooks, state = hook_registry(model), state_of(model)
    for call in (
        lambda: osl.attention_paths(model, tokens),
        lambda: osl.sensitivity(model, tokens, method="hutchinson", probes=2),
        lambda: osl.trace(model, tokens, probes=2),
    ):
        with pytest.raises(osl.InvalidTokensError, match=message):
            call()
    if case in ("out of range", "negative"):
        ids = tokens[0].tolist()
        with pytest.raises(osl.InvalidTokensError, match=message):
            osl.collapse(model, tasks.pair(ids, ids + ids[-1:]), progress=False)
        with pytest.raises(osl.InvalidTokensError, match=message):
            with osl.attach(model, osl.ResidualNorms()):
                model(tokens)
    assert leftover_hooks(model, hooks) == [] and state_of(model) == state


WRONG_TYPES = [
    ("osl.Sensitivity(probes=2.5)", "TypeError: probes must be an int, got 2.5 (float)"),
    ("osl.Sensitivity(probes='8')", "TypeError: probes must be an int, got '8' (str)"),
    ("osl.Sensitivity(position=1.0)", "TypeError: position must be an int"),
    ("osl.Sensitivity(position=True)", "TypeError: position must be an int, got True"),
    ("osl.Sensitivity(seed=None)", "TypeError: seed must be an int"),
    ("osl.ResidualNorms(position='last')", "TypeError: position must be an int"),
    ("osl.CollapseProbe(positions=3)", "TypeError: positions must be a list of ints"),
    ("osl.CollapseProbe(positions=[-1.5])", "TypeError: positions must be an int"),
    ("osl.CollapseProbe(heads='all').bind(adapter)", "TypeError: heads must be True, False"),
    ("osl.collapse(model, ones, [1.5, 2.7], progress=False)", "TypeError: lengths must be"),
    ("osl.collapse(model, ones, '123', progress=False)", "TypeError: lengths must be"),
    ("osl.behaviour(model, compact, [2.0], progress=False)", "TypeError: lengths must be"),
]


def test_arguments_of_the_wrong_type_are_refused() -> None:
    """Checked as a user runs them: the test session type-checks every annotated call
    itself (jaxtyping + beartype), which would answer before the package's own checks."""
    lines = [
        "import oversquash_lens as osl",
        "model = osl.load_model('tiny-gpt2')",
        "adapter = osl.ModelAdapter(model)",
        "ones = osl.tasks.repeated_last('1')",
        "compact = osl.tasks.count_ones(style='compact')",
    ]
    for code, _ in WRONG_TYPES:
        lines += [
            "try:",
            f"    {code}",
            "    print('accepted')",
            "except Exception as exc:",
            "    print(f'{type(exc).__name__}: {exc}')",
        ]
    run = subprocess.run(
        [sys.executable, "-c", "\n".join(lines)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    answers = run.stdout.strip().splitlines()
    assert len(answers) == len(WRONG_TYPES), run.stdout
    for (code, expected), answer in zip(WRONG_TYPES, answers, strict=True):
        assert answer.startswith(expected), f"{code}: {answer}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_positions_outside_the_sequence_are_refused(load, backend: str) -> None:
    model = load("tiny-gpt2", backend)
    with pytest.raises(ValueError, match=r"position 9 is outside a sequence of 4 tokens"):
        osl.sensitivity(model, "1 1 1", method="hutchinson", probes=2, position=9)
    with pytest.raises(ValueError, match="outside a sequence"):
        with osl.attach(model, osl.ResidualNorms(position=-7)):
            model(model.to_tokens("1 1 1"))


def test_a_fixed_pair_needs_no_lengths(load, backend: str) -> None:
    model = load("tiny-gpt2", backend)
    result = osl.collapse(model, tasks.pair("10", "110"), progress=False)
    assert result.lengths == (0,)
    with pytest.raises(TypeError, match="needs lengths"):
        osl.collapse(model, ONES, progress=False)


# ---------------------------------------------------------------- models without tokenizer
def untokenized(backend: str) -> Any:
    if backend == "hooked":
        return hooked_from(d_vocab=50)
    from oversquash_lens.models._tiny import tiny_source

    src = tiny_source("tiny-llama")
    bridge = bridge_class().boot_transformers(
        "untokenized", hf_model=src.hf_model, tokenizer=src.tokenizer
    )
    bridge.enable_compatibility_mode(disable_warnings=True)
    bridge.tokenizer = None  # trained from scratch: ids only
    return bridge


@pytest.mark.parametrize("backend", BACKENDS)
def test_token_ids_work_end_to_end_without_a_tokenizer(backend: str) -> None:
    model = untokenized(backend)
    ids = torch.tensor([[3, 5, 7, 9, 11]])
    assert osl.attention_paths(model, ids).str_tokens == ("#3", "#5", "#7", "#9", "#11")
    flow = osl.trace(model, ids, probes=2)
    assert flow.str_tokens[0] == "#3"
    assert "#11" in osl.render.flow_tokens(flow).fragment()
    result = osl.collapse(model, tasks.pair([3, 5, 7], [3, 5, 7, 7]), progress=False)
    assert result.lengths == (0,)
    with osl.attach(model, osl.ResidualNorms(), osl.CollapseProbe()) as rec:
        model(ids)
    assert rec.result("ResidualNorms").norms.shape == (1, 3)
    with pytest.raises(ValueError, match="no tokenizer; pass token ids"):
        osl.attention_paths(model, "1 1 1")


# ---------------------------------------------------------------- not a model, hints
@pytest.mark.parametrize(
    "call",
    [
        lambda m: osl.record(m, ["hook_embed"]).__enter__(),
        lambda m: osl.intervene(m, [("hook_embed", ablate_last_block)]).__enter__(),
        lambda m: capture.hooks(m, []).__enter__(),
        lambda m: osl.native_dtype(m, "bfloat16").__enter__(),
        lambda m: osl.emulate_precision(m, "bfloat16").__enter__(),
        lambda m: osl.preserve_state(m).__enter__(),
        lambda m: capture.frozen_parameters(m).__enter__(),
        lambda m: capture.fired_hooks(m, ["hook_embed"], torch.zeros((1, 2), dtype=torch.long)),
        lambda m: capture.run_boundaries(m, print, print).__enter__(),
        lambda m: osl.attach(m, osl.ResidualNorms()).__enter__(),
    ],
)
@pytest.mark.parametrize("obj", [torch.nn.Linear(2, 2), "gpt2", None])
def test_capture_refuses_objects_that_are_not_transformerlens_models(call, obj) -> None:
    with pytest.raises(osl.UnsupportedModelError, match="HookedTransformer or TransformerBridge"):
        call(obj)


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_hooks_say_what_to_do_only_where_it_applies(backend: str, monkeypatch) -> None:
    model = osl.load_model("tiny-gpt2", backend=backend)
    from oversquash_lens import _adapter

    def without_heads(model: Any) -> dict[str, Any]:  # an architecture with no hook_z
        return {k: v for k, v in capture.hook_dict(model).items() if "hook_z" not in k}

    monkeypatch.setattr(_adapter, "hook_dict", without_heads)
    with pytest.raises(osl.MissingHookError, match="heads=False") as caught:
        osl.collapse(model, ONES, [1, 2], progress=False)
    assert "enable_compatibility_mode" not in str(caught.value)
    osl.collapse(model, ONES, [1, 2], progress=False, heads=False)  # the advice works


def test_the_compatibility_hint_is_shown_when_it_is_the_cause(monkeypatch) -> None:
    model = osl.load_model("tiny-gpt2", backend="bridge")
    monkeypatch.setattr(model, "compatibility_mode", False)
    with pytest.raises(osl.MissingHookError, match="enable_compatibility_mode"):
        osl.ModelAdapter(model).require_hooks(["blocks.0.hook_nothing"])
