"""greedy_generate: batched, left-padded, KV-cached greedy decoding vs the uncached reference."""

import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import oversquash_lens as osl
from oversquash_lens import _generate
from oversquash_lens._generate import (
    additive_mask,
    default_stop_ids,
    greedy_continuation,
    greedy_generate,
    hf_view,
    left_pad,
    length_batches,
    trim_at_stop,
)

from .conftest import BACKENDS
from .helpers import hook_registry, leftover_hooks, state_of

# Mixed lengths (1 to 31 tokens with BOS) so that one batch holds heavily padded rows.
TEXTS = [
    "1 1 1",
    "1 2 3 4 5 6 7 8 9 1 1",
    "7",
    "3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3",
    "2 5",
    "9 8 7 6 5",
]
NEW = 12


def reference(model, prompts, n=NEW):
    return [greedy_continuation(model, p[None], n)[0].cpu() for p in prompts]


# ---------------------------------------------------------------- pure helpers


@given(st.lists(st.integers(1, 50), min_size=0, max_size=40), st.integers(1, 9))
def test_length_batches_partition_sorted(lengths, batch_size) -> None:
    batches = length_batches(lengths, batch_size)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(1 <= len(b) <= batch_size for b in batches)
    assert [lengths[i] for i in flat] == sorted(lengths)


def test_length_batches_rejects_zero() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        length_batches([1, 2], 0)


@given(st.lists(st.lists(st.integers(1, 99), min_size=1, max_size=8), min_size=1, max_size=6))
def test_left_pad_keeps_each_prompt_at_the_right(rows) -> None:
    ids, mask = left_pad([torch.tensor(r) for r in rows], pad_id=0)
    assert ids.shape == mask.shape == (len(rows), max(map(len, rows)))
    for r, row in enumerate(rows):
        assert ids[r, mask[r].bool()].tolist() == row
        assert mask[r].tolist() == [0] * (ids.shape[1] - len(row)) + [1] * len(row)


@given(st.lists(st.integers(0, 5), max_size=12), st.lists(st.integers(0, 5), max_size=2))
def test_trim_at_stop_matches_a_loop(ids, stops) -> None:
    expected = []
    for token in ids:
        expected.append(token)
        if token in stops:
            break
    assert trim_at_stop(torch.tensor(ids, dtype=torch.long), stops).tolist() == expected


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_additive_mask_closed_form(dtype) -> None:
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    for n_queries in (1, 3, 5):
        got = additive_mask(mask, n_queries, dtype)
        assert got.shape == (2, 1, n_queries, 5) and got.dtype == dtype
        for b in range(2):
            for i in range(n_queries):
                query_pos = 5 - n_queries + i
                for j in range(5):
                    allowed = j <= query_pos and mask[b, j] == 1
                    assert (got[b, 0, i, j] == 0) == allowed
        # finite everywhere, also after the float32 cast HF's Llama softmax makes
        assert torch.isfinite(got.float()).all()


# ---------------------------------------------------------------- against the reference


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_batched_cached_equals_uncached(load, backend: str, name: str) -> None:
    # float64: rounding differences between padded/cached and plain passes (~1e-15) cannot
    # flip an argmax unless two logits tie to ~1e-15; in float32 a near-tie could.
    model = load(name, backend, dtype="float64")
    prompts = [model.to_tokens(t)[0] for t in TEXTS]
    expected = reference(model, prompts)
    for batch_size in (len(TEXTS), 4, 1):  # one padded batch, two batches, no batching
        got = greedy_generate(model, prompts, NEW, batch_size=batch_size, stop_token_ids=())
        assert [g.tolist() for g in got] == [e.tolist() for e in expected], batch_size


def test_float32_matches_on_these_prompts(load, backend: str) -> None:
    model = load("tiny-llama", backend)
    prompts = [model.to_tokens(t)[0] for t in TEXTS]
    got = greedy_generate(model, prompts, NEW, stop_token_ids=())
    assert [g.tolist() for g in got] == [e.tolist() for e in reference(model, prompts)]


def test_uncached_fallback_for_bridges_without_a_wrapped_model(load, monkeypatch) -> None:
    model = load("tiny-llama", "bridge", dtype="float64")
    monkeypatch.setattr(_generate, "hf_view", lambda bridge: None)
    prompts = [model.to_tokens(t)[0] for t in TEXTS[:3]]
    got = greedy_generate(model, prompts, 5, stop_token_ids=())
    assert [g.tolist() for g in got] == [e.tolist() for e in reference(model, prompts, 5)]


def test_emulated_precision_is_honoured(load, backend: str) -> None:
    """Rounding hooks run while generating (the bridge then decodes without a cache)."""
    model = load("tiny-llama", backend)
    prompts = [model.to_tokens(t)[0] for t in TEXTS]
    with osl.emulate_precision(model, "float8_e4m3"):
        got = greedy_generate(model, prompts, NEW, stop_token_ids=())
        expected = reference(model, prompts)
    plain = reference(model, prompts)
    assert [g.tolist() for g in got] == [e.tolist() for e in expected]
    assert [e.tolist() for e in expected] != [p.tolist() for p in plain]  # fp8 has teeth


def test_stop_token_trims_only_its_row(load, backend: str) -> None:
    model = load("tiny-gpt2", backend, dtype="float64")
    prompts = [model.to_tokens(t)[0] for t in TEXTS]
    expected = reference(model, prompts)
    stop = int(expected[1][4])  # the 5th token of prompt 1
    got = greedy_generate(model, prompts, NEW, stop_token_ids=[stop])
    for g, e in zip(got, expected, strict=True):
        assert g.tolist() == trim_at_stop(e, [stop]).tolist()
    assert got[1].shape[0] <= 5 and int(got[1][-1]) == stop


def test_default_stop_is_the_tokenizer_eos(load) -> None:
    class NoEos:
        eos_token_id = None

    class Eos:
        eos_token_id = 7

    assert default_stop_ids(NoEos()) == () and default_stop_ids(Eos()) == (7,)
    model = load("tiny-gpt2", BACKENDS[0], dtype="float64")
    prompts = [model.to_tokens(t)[0] for t in TEXTS]
    eos = default_stop_ids(model.tokenizer)
    expected = greedy_generate(model, prompts, NEW, stop_token_ids=eos)
    assert [g.tolist() for g in greedy_generate(model, prompts, NEW)] == [
        e.tolist() for e in expected
    ]


def test_zero_new_tokens_and_no_prompts(load) -> None:
    model = load("tiny-gpt2", BACKENDS[0])
    out = greedy_generate(model, [model.to_tokens("1 2")[0]], 0)
    assert out[0].shape == (0,)
    assert greedy_generate(model, [], 4) == []


def test_bad_input_raises_with_advice(load) -> None:
    model = load("tiny-gpt2", BACKENDS[0])
    with pytest.raises(ValueError, match="empty prompt"):
        greedy_generate(model, [torch.tensor([], dtype=torch.long)], 2)
    with pytest.raises(ValueError, match="max_new_tokens"):
        greedy_generate(model, [model.to_tokens("1")[0]], -1)
    with pytest.raises(ValueError, match="context"):
        greedy_generate(model, [torch.zeros(model.cfg.n_ctx, dtype=torch.long)], 1)


# ---------------------------------------------------------------- hygiene


def test_leaves_no_hooks_and_restores_state(load, backend: str) -> None:
    model = load("tiny-llama", backend)
    before_hooks, before_state = hook_registry(model), state_of(model)
    model.train()
    greedy_generate(model, [model.to_tokens(t)[0] for t in TEXTS], 3)
    assert model.training  # preserve_state put the train flag back
    model.eval()
    with pytest.raises(IndexError):  # an id outside the vocabulary fails inside the pass
        greedy_generate(model, [torch.tensor([10**6])], 2)
    assert leftover_hooks(model, before_hooks) == []
    assert state_of(model) == before_state


def test_hf_view_shares_the_bridge_weights() -> None:
    bridge = osl.load_model("tiny-llama", backend="bridge")
    view = hf_view(bridge)
    assert view is not None
    ours = {p.data_ptr() for p in bridge.original_model.parameters()}
    assert {p.data_ptr() for p in view.parameters()} <= ours
    assert not any(p.is_meta for p in [*view.parameters(), *view.buffers()])
    tokens = bridge.to_tokens("1 2 3 4")
    with torch.no_grad():
        theirs = torch.log_softmax(view(tokens).logits, -1)
        ours_logits = torch.log_softmax(bridge(tokens), -1)
    torch.testing.assert_close(theirs, ours_logits, rtol=1e-5, atol=1e-5)  # float32 folding


# ---------------------------------------------------------------- SmolLM2 against HF


@pytest.mark.slow
def test_smollm2_matches_hugging_face_generate(load) -> None:
    """Each prompt alone through transformers' generate(do_sample=False) on a fresh HF model."""
    from oversquash_lens.models import smollm2_gguf_path
    from oversquash_lens.models._smollm2 import dequantized_model

    hf_model, _ = dequantized_model(smollm2_gguf_path())
    hf_model.eval()
    prompts_text = [
        "The capital of France is",
        "How many ones are in the following sequence? 1 1 1 1 1 1 1 1 1 1 1 1",
        "Copy the number: 1,111,111",
    ]
    first = load("smollm2-135m", BACKENDS[0])
    # no BOS, as Hugging Face's tokenizer (test_smollm2.py checks the ids are HF's)
    prompts = [first.to_tokens(t, prepend_bos=False)[0].cpu() for t in prompts_text]
    expected = []
    for prompt in prompts:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # generation-config notices of the reference
            theirs = hf_model.generate(
                prompt[None],
                attention_mask=torch.ones_like(prompt[None]),
                do_sample=False,
                max_new_tokens=8,
                min_new_tokens=8,
                pad_token_id=0,
            )
        expected.append(theirs[0, prompt.shape[0] :].tolist())
    for backend in BACKENDS:
        model = load("smollm2-135m", backend)
        got = greedy_generate(model, prompts, 8, stop_token_ids=())
        assert [g.tolist() for g in got] == expected, backend
