"""``osl.behaviour``: greedy answers of a task over lengths, parsed and scored (paper §5-6).

For every length k the task gives ``samples`` prompts; each is tokenized by the task (chat
template included when the tokenizer has one), continued greedily by
:func:`~oversquash_lens._generate.greedy_generate` (batched, KV cache), decoded without
special tokens, parsed and scored. With ``checkpoint=path`` the rows so far are written
atomically after every length, and a rerun with the same arguments skips finished ones.
"""

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ._adapter import ModelAdapter
from ._behaviour_result import BehaviourResult
from ._compat import backend_of
from ._errors import EmptySequenceError
from ._generate import greedy_generate, hf_view
from .capture import active_precision, preserve_state
from .results import atomic_write_bytes

CHECKPOINT_VERSION = 1


def generation_route(model: Any) -> str:
    """How :func:`greedy_generate` decodes on this model (recorded in provenance).

    Example:
        >>> import oversquash_lens as osl
        >>> generation_route(osl.load_model("tiny-gpt2", backend="bridge"))
        'Hugging Face KV cache on the wrapped model'
    """
    if backend_of(model) == "hooked":
        return "TransformerLens KV cache"
    if "emulated" in (active_precision(model) or ""):
        return "uncached (precision emulation hooks on the bridge)"
    if hf_view(model) is not None:
        return "Hugging Face KV cache on the wrapped model"
    return "uncached"


def behaviour(
    model: Any,
    task: Any,
    lengths: Iterable[int],
    *,
    samples: int = 8,
    max_new_tokens: int | None = None,
    batch_size: int = 16,
    chat: bool | None = None,
    prepend_bos: bool | None = None,
    progress: bool = True,
    checkpoint: str | Path | None = None,
) -> BehaviourResult:
    """Generate a task's answers at every length and score them.

    Args:
        model: HookedTransformer or TransformerBridge with a tokenizer.
        task: A task from :mod:`oversquash_lens.tasks` (``tasks.count_ones()``, …).
        lengths: The lengths k to measure.
        samples: Prompts per length (random tasks draw a new sequence per sample;
            deterministic ones repeat the same prompt, so greedy answers repeat too).
        max_new_tokens: Most tokens per answer; None: ``task.max_new_tokens``.
        batch_size: Prompts per forward pass.
        chat: None applies the tokenizer's chat template when it has one; True / False
            to force (see ``task.tokens``).
        prepend_bos: None: the task's default; True / False to force.
        progress: Show a progress bar over lengths.
        checkpoint: A JSON file for the rows so far; a rerun with the same arguments
            resumes after the last finished length.

    Returns:
        A :class:`~oversquash_lens.BehaviourResult`, rows ordered by k then sample.

    Raises:
        EmptySequenceError: If ``lengths`` is empty.
        ValueError: For ``samples`` < 1 or a checkpoint written by another sweep.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-gpt2")
        >>> result = behaviour(model, osl.tasks.count_ones(style="compact"), [2, 4],
        ...                    samples=2, progress=False)
        >>> result.accuracy()[["k", "n"]].values.tolist()
        [[2, 2], [4, 2]]
    """
    from tqdm.auto import tqdm

    adapter = ModelAdapter(model)
    ordered = sorted({int(k) for k in lengths})
    if not ordered:
        raise EmptySequenceError("lengths is empty: give at least one length, e.g. [5, 15, 25]")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an int >= 1, got {samples!r}")
    new_tokens = task.max_new_tokens if max_new_tokens is None else int(max_new_tokens)
    signature = {
        "version": CHECKPOINT_VERSION,
        "model": adapter.info.name,
        "backend": adapter.backend,
        "dtype": str(adapter.dtype),
        "task": task.describe(),
        "lengths": ordered,
        "samples": samples,
        "max_new_tokens": new_tokens,
        "chat": chat,
        "prepend_bos": prepend_bos,
    }
    done = _load_checkpoint(checkpoint, signature)
    instances = task.instances(ordered, samples)
    tokenizer = adapter.tokenizer
    bar = tqdm(ordered, disable=not progress, desc=f"behaviour {task.name}", unit="length")
    with preserve_state(model):
        for k in bar:
            if k in done:
                continue
            batch = [inst for inst in instances if inst.k == k]
            prompts = [task.tokens(model, i, chat=chat, prepend_bos=prepend_bos) for i in batch]
            outputs = greedy_generate(model, prompts, new_tokens, batch_size=batch_size)
            rows = []
            for inst, prompt, ids in zip(batch, prompts, outputs, strict=True):
                text = tokenizer.decode(ids.tolist(), skip_special_tokens=True)
                score = task.score(inst, text)
                rows.append(
                    {
                        "task": task.name,
                        "k": inst.k,
                        "sample": inst.sample,
                        "n_prompt_tokens": int(prompt.shape[0]),
                        "output": text,
                        "parsed": score.parsed,
                        "answer": inst.answer,
                        "correct": bool(score.correct),
                        "abs_error": score.abs_error,
                    }
                )
            done[k] = rows
            if checkpoint is not None:
                _save_checkpoint(checkpoint, signature, done)
    bar.close()
    return BehaviourResult.from_rows(
        [row for k in ordered for row in done[k]],
        task=task.name,
        task_description=task.describe(),
        max_new_tokens=new_tokens,
        chat=chat,
        prepend_bos=prepend_bos,
        provenance=adapter.provenance(
            task=task.describe(),
            samples=samples,
            batch_size=batch_size,
            generation=generation_route(model),
            decoding="greedy (argmax), special tokens skipped when decoding",
        ),
    )


def _load_checkpoint(path: str | Path | None, signature: dict[str, Any]) -> dict[int, list[Any]]:
    if path is None or not Path(path).exists():
        return {}
    saved = json.loads(Path(path).read_text())
    if saved.get("signature") != signature:
        raise ValueError(
            f"checkpoint {path} was written by a different sweep ({saved.get('signature')}); "
            "delete it or pass another checkpoint path"
        )
    return {int(k): rows for k, rows in saved["rows"].items()}


def _save_checkpoint(
    path: str | Path, signature: dict[str, Any], done: dict[int, list[Any]]
) -> None:
    payload = {"signature": signature, "rows": {str(k): rows for k, rows in sorted(done.items())}}
    atomic_write_bytes(Path(path), json.dumps(payload, indent=1).encode())
