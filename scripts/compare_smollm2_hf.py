"""Print how closely each backend's SmolLM2-135M matches Hugging Face's own GGUF loader.

    .venv/bin/python scripts/compare_smollm2_hf.py

For each backend and weight processing: max |Δlogit| after removing each row's mean
(processing centres the unembedding, which shifts logits by a per-row constant), whether
the argmax agrees everywhere, and the greedy continuation of "The capital of France is".
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

import oversquash_lens as osl  # noqa: E402
from oversquash_lens._compat import available_backends  # noqa: E402
from oversquash_lens._generate import greedy_continuation  # noqa: E402
from oversquash_lens.models import smollm2_gguf_path  # noqa: E402

PROMPTS = [
    "The capital of France is",
    "How many ones are in the following sequence? " + "1 " * 40,
]


def centred(logits: torch.Tensor) -> torch.Tensor:
    return logits - logits.mean(-1, keepdim=True)


def main() -> None:
    path = smollm2_gguf_path()
    reference = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, attn_implementation="eager"
    ).eval()
    print(f"{'backend':<8} {'weights':<10} {'max |Δ| (centred)':>18} {'argmax':>7}  greedy")
    for backend in available_backends():
        for processed in (True, False):
            model = osl.load_model("smollm2-135m", backend=backend, processed=processed)
            worst, same = 0.0, True
            for prompt in PROMPTS:
                tokens = model.to_tokens(prompt)
                with torch.no_grad():
                    ours, theirs = model(tokens), reference(tokens).logits
                worst = max(worst, float((centred(ours) - centred(theirs)).abs().max()))
                same &= bool(torch.equal(ours.argmax(-1), theirs.argmax(-1)))
            tokens = model.to_tokens(PROMPTS[0])
            text = model.to_string(greedy_continuation(model, tokens, 6)[0])
            label = "processed" if processed else "raw"
            print(f"{backend:<8} {label:<10} {worst:>18.2e} {str(same):>7}  {text!r}")


if __name__ == "__main__":
    main()
