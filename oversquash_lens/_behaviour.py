"""``osl.behaviour``: greedy answers of a task over lengths, parsed and scored (paper §5-6).

For every length k the task gives ``samples`` prompts; each is tokenized by the task (chat
template included when the tokenizer has one), continued greedily by
:func:`~oversquash_lens._generate.greedy_generate` (batched, KV cache), decoded without
special tokens, parsed and scored. With ``checkpoint=path`` the rows so far are written
atomically after every length, and a rerun with the same arguments skips finished ones.
"""

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ._adapter import ModelAdapter
from ._behaviour_result import BehaviourResult
from ._checks import require_int
from ._compat import backend_of
from ._errors import CheckpointError
from ._generate import greedy_generate, hf_view, hooks_active
from ._progress import progress_bar
from .capture import preserve_state
from .results import Provenance
from .results._checkpoint import Checkpoint
from .tasks import Task
from .tasks._base import check_lengths

RECIPE = "recipe"  # the checkpoint entry of a shard's plan


def generation_route(model: Any) -> str:
    """How :func:`greedy_generate` decodes on this model (recorded in provenance).

    Example:
        >>> import oversquash_lens as osl
        >>> generation_route(osl.load_model("tiny-gpt2", backend="bridge"))
        'Hugging Face KV cache on the wrapped model'
    """
    if backend_of(model) == "hooked":
        return "TransformerLens KV cache"
    if hooks_active(model):
        return "uncached, through the bridge's hooks (hooks are active)"
    if hf_view(model) is not None:
        return "Hugging Face KV cache on the wrapped model"
    return "uncached"


def behaviour(
    model: Any,
    task: Task,
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
        checkpoint: A file for the rows so far (data only, written atomically after each
            length); a rerun with the same model and arguments resumes after the last
            finished length. A file written for another model, dtype, precision context
            or sweep is refused.

    Returns:
        A :class:`~oversquash_lens.BehaviourResult`, rows ordered by k then sample.

    Raises:
        EmptySequenceError: If ``lengths`` is empty.
        TypeError: For lengths that are not ints (``1.5``, ``"12"``).
        ValueError: For ``samples`` < 1.
        CheckpointMismatchError: For a checkpoint written for another model or sweep.
        CheckpointError: For a corrupt or truncated checkpoint.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-gpt2")
        >>> result = behaviour(model, osl.tasks.count_ones(style="compact"), [2, 4],
        ...                    samples=2, progress=False)
        >>> result.accuracy()[["k", "n"]].values.tolist()
        [[2, 2], [4, 2]]
    """
    recipe, done, _ = sweep(
        model,
        task,
        lengths,
        samples=samples,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        chat=chat,
        prepend_bos=prepend_bos,
        progress=progress,
        checkpoint=checkpoint,
    )
    return assemble(recipe, done)


def sweep(
    model: Any,
    task: Task,
    lengths: Iterable[int],
    *,
    samples: int,
    max_new_tokens: int | None,
    batch_size: int,
    chat: bool | None,
    prepend_bos: bool | None,
    progress: bool,
    checkpoint: str | Path | None,
    only: Callable[[list[int], list[int]], set[int]] | None = None,
) -> tuple[dict[str, Any], dict[int, list[Any]], Checkpoint | None]:
    """Run :func:`behaviour`'s lengths; return its plan, the rows per length, the checkpoint.

    ``only`` picks the lengths to run from all of them and a cost per length (its prompt
    tokens, for a shard of the sweep, see ``oversquash_lens._shards``); None runs all.
    The plan is JSON-able and, with the rows, all :func:`assemble` needs.
    """
    adapter = ModelAdapter(model)
    ordered = sorted(set(check_lengths(lengths, 0)))
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an int >= 1, got {samples!r}")
    new_tokens = task.max_new_tokens
    if max_new_tokens is not None:
        new_tokens = require_int("max_new_tokens", max_new_tokens, minimum=0)
    batch_size = require_int("batch_size", batch_size, minimum=1)
    signature = {
        "task": task.describe(),
        "lengths": ordered,
        "samples": samples,
        "max_new_tokens": new_tokens,
        "chat": chat,
        "prepend_bos": prepend_bos,
    }
    ckpt = None
    if checkpoint is not None:
        key = {"sweep": signature, "model": adapter.fingerprint()}
        ckpt = Checkpoint.open(checkpoint, "behaviour", key)
    done = finished_lengths(ckpt)
    wanted = set(ordered) if only is None else only(ordered, [k + 1 for k in ordered])
    instances = task.instances(ordered, samples)
    tokenizer = adapter.tokenizer
    todo = [k for k in ordered if k in wanted]
    bar = progress_bar(todo, disable=not progress, desc=f"behaviour {task.name}", unit="length")
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
            if ckpt is not None:
                ckpt.put(str(k), rows)
                ckpt.save()
    bar.close()
    provenance = adapter.provenance(
        task=task.describe(),
        samples=samples,
        batch_size=batch_size,
        generation=generation_route(model),
        decoding="greedy (argmax), special tokens skipped when decoding",
    )
    recipe = {
        "lengths": ordered,
        "task": task.name,
        "task_description": task.describe(),
        "max_new_tokens": new_tokens,
        "chat": chat,
        "prepend_bos": prepend_bos,
        "provenance": provenance.to_dict(),
    }
    return recipe, done, ckpt


def assemble(recipe: dict[str, Any], done: dict[int, list[Any]]) -> BehaviourResult:
    """The :class:`BehaviourResult` of a sweep's plan and its rows (no model needed)."""
    return BehaviourResult.from_rows(
        [row for k in recipe["lengths"] for row in done[k]],
        task=recipe["task"],
        task_description=recipe["task_description"],
        max_new_tokens=recipe["max_new_tokens"],
        chat=recipe["chat"],
        prepend_bos=recipe["prepend_bos"],
        provenance=Provenance.from_dict(recipe["provenance"]),
    )


def finished_lengths(ckpt: Checkpoint | None) -> dict[int, list[Any]]:
    """The rows of every length the checkpoint already holds."""
    if ckpt is None:
        return {}
    done = {}
    for name in ckpt.names():
        if name == RECIPE:  # a shard's plan (oversquash_lens._shards)
            continue
        entry = ckpt.get(name)
        if not name.isdigit() or entry is None or not isinstance(entry[0], list):
            raise CheckpointError(f"checkpoint {ckpt.path} holds an unknown entry {name!r}")
        done[int(name)] = entry[0]
    return done
