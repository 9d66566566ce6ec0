"""Regenerate the byte-level BPE tokenizer shipped for the tiny models.

The tokenizer is trained on a fixed word list (no digit pairs), so every digit, every
space-prefixed digit and every listed word is a single token, and any other text still
tokenizes byte by byte. Its files are committed under
oversquash_lens/models/data/tiny_tokenizer/; run this only to change the vocabulary
(which invalidates shipped toy-model weights).

    python scripts/build_tiny_tokenizer.py
"""

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

WORDS = """
the a an of is are and to in on for with that this it be as at by or from not but
how many what which who where when why can you your please answer question number numbers
digit digits count counting copy sum add first last following sequence sequences word words
sentence letter one ones zero zeros two three four five six seven eight nine ten hundred
yes no true false final result output input hint check carefully necessarily think step
capital France Paris city
The How What Please Can Count Copy Answer Question Let Here Sum Is Are Yes No
""".split()
PUNCTUATION = list(".,:;?!+=-()")
SPECIALS = ["<|endoftext|>", "<|pad|>"]
OUT = Path(__file__).resolve().parents[1] / "oversquash_lens/models/data/tiny_tokenizer"


def corpus() -> list[str]:
    items = []
    for word in WORDS + list("0123456789") + PUNCTUATION:
        items += [word, " " + word]
    return items


def main() -> None:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=4096,
        min_frequency=1,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus(), trainer)
    not_single = [w for w in corpus() if len(tokenizer.encode(w).ids) != 1]
    if not_single:
        raise SystemExit(f"these items are not single tokens: {not_single}")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|pad|>",
        model_max_length=1024,
    )
    OUT.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(OUT)
    print(f"wrote {OUT} ({tokenizer.get_vocab_size()} tokens)")


if __name__ == "__main__":
    main()
