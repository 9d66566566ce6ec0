"""``attach``: the context manager every analyzer plugs into.

Inside the block the user runs the model however they like (``model(tokens)``,
``run_with_cache``, ``run_with_hooks`` with their own hooks, ``generate``); each forward
pass becomes one run, and each analyzer keeps what it needs from it.
"""

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, overload

import torch
from torch import Tensor

from . import _memory as memory
from . import capture
from ._adapter import ModelAdapter
from ._hooknames import LOGITS
from .analyzers import Analyzer, RunRecord
from .analyzers._base import ResultT
from .analyzers._collapse_probe import Representations, compare
from .results import Result


class Recording:
    """Runs seen inside an :func:`attach` block, and the analyzers' results for them.

    Attributes:
        adapter: The model's adapter.
        analyzers: ``{name: analyzer}`` in attach order.
        hook_names: ``{name: the hook points that analyzer reads}``.
    """

    def __init__(self, adapter: ModelAdapter, analyzers: dict[str, Analyzer]) -> None:
        self.adapter = adapter
        self.analyzers = analyzers
        self.hook_names = {key: list(a.hook_names(adapter)) for key, a in analyzers.items()}
        self._runs: list[dict[str, RunRecord]] = []
        self._current: dict[str, RunRecord] | None = None
        self._pending_tokens: Tensor | None = None
        self._pending_padding: str | None = None  # why the next run's batch is padded
        self._fired: set[str] = set()  # hook points that fired in the current run
        self._cache: dict[tuple[str, int], Result] = {}
        self.eager = False  # attach switched attention to eager (patterns are read)
        self._pending_logits = True  # the next call computes logits (not return_type=None)

    # -------------------------------------------------------------- recording side
    def _on_tokens(self, tokens: Tensor | None) -> None:
        """The embedding saw ``tokens``: they belong to the next run that starts."""
        if tokens is not None:
            self.adapter.check_tokens(tokens)  # refuse inputs longer than n_ctx, clearly
            # refuse, before the first block runs, a run that would not fit in memory
            memory.check(
                self.adapter,
                self.analyzers.values(),
                self.hook_names,
                int(tokens.shape[0]),
                int(tokens.shape[-1]),
                grad=torch.is_grad_enabled(),
                logits=self._pending_logits,
                eager=self.eager,
                checkpoint=capture.blocks_checkpointed(self.adapter.model),
            )
        self._pending_tokens = tokens

    def _on_call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """A call of the model: note whether its batch is padded (rows of unequal length)."""
        self._pending_padding = padding_of(self.adapter, args, kwargs)
        hooked = self.adapter.backend == "hooked"  # a bridge computes the logits anyway
        self._pending_logits = not (hooked and kwargs.get("return_type", "logits") is None)

    def _start_run(self) -> dict[str, RunRecord]:
        tokens, self._pending_tokens = self._pending_tokens, None
        padding, self._pending_padding = self._pending_padding, None
        index = len(self._runs)
        str_tokens = self.adapter.to_str_tokens(tokens[0]) if tokens is not None else []
        precision = capture.active_precision(self.adapter.model)
        self._current = {
            key: RunRecord(
                index=index,
                tokens=tokens,
                hook_names=self.hook_names[key],
                grad_enabled=torch.is_grad_enabled(),
                provenance=self.adapter.provenance(
                    hook_names=self.hook_names[key], precision=precision
                ),
                str_tokens=str_tokens,
                padding=padding,
            )
            for key in self.analyzers
        }
        self._fired = set()
        self._runs.append(self._current)
        return self._current

    def _end_run(self) -> None:
        self._current = None

    def _dispatch(self, name: str) -> capture.HookFn:
        keys = [key for key, hooks in self.hook_names.items() if name in hooks]

        def hook(activation: Tensor | None, hook: Any) -> None:
            current = self._current
            # No open run, or this point already fired in it: a new forward pass began.
            if current is None or name in self._fired:
                current = self._start_run()
            self._fired.add(name)
            for key in keys:
                if activation is None:  # known not to be available: say why at compute
                    current[key].notes[name] = _UNAVAILABLE.get(name, "it was not available")
                else:
                    current[key].activations[name] = self.analyzers[key].keep(name, activation)

        return hook

    # -------------------------------------------------------------- user side
    @property
    def n_runs(self) -> int:
        """Number of forward passes seen."""
        return len(self._runs)

    def run(self, analyzer: str, index: int = -1) -> RunRecord:
        """What ``analyzer`` kept from run ``index``."""
        return self._runs[self._index(index)][analyzer]

    @overload
    def result(self, analyzer: Analyzer[ResultT], index: int = -1) -> ResultT: ...
    @overload
    def result(self, analyzer: str, index: int = -1) -> Result: ...
    def result(self, analyzer: str | Analyzer[Any], index: int = -1) -> Result:
        """One analyzer's result for one run (computed once, then cached).

        Given the analyzer object, the result has its type (``ResidualNorms()`` gives a
        ``ResidualNormsResult``) for type checkers and editors; given its name, the
        base :class:`~oversquash_lens.Result`.

        By default the LAST run's: ``rec.result(name)`` is ``rec.results[name][-1]``,
        and ``rec.result(name, 0)`` the first run's (``rec.results[name][0]``).

        Args:
            analyzer: Its name (``"ResidualNorms"``) or the analyzer object.
            index: Run number, 0 for the first pass seen (negative counts from the end;
                the default -1 is the last).

        Example:
            >>> import oversquash_lens as osl
            >>> model = osl.load_model("tiny-gpt2")
            >>> with osl.attach(model, osl.ResidualNorms()) as rec:
            ...     _ = model(model.to_tokens("1 2"))
            >>> rec.result("ResidualNorms").norms.shape
            torch.Size([1, 3])
        """
        key = analyzer if isinstance(analyzer, str) else self._key_of(analyzer)
        if key not in self.analyzers:
            raise KeyError(f"no analyzer {key!r} attached; attached: {list(self.analyzers)}")
        index = self._index(index)
        if (key, index) not in self._cache:
            self._cache[key, index] = self.analyzers[key].compute(self._runs[index][key])
        return self._cache[key, index]

    def compare(
        self,
        run_a: int,
        run_b: int,
        *,
        analyzer: str = "CollapseProbe",
        precision: Any = None,
        **where: int,
    ) -> Any:
        """Compare the last-token representations of two runs (needs a ``CollapseProbe``).

        Args:
            run_a: Index of the first run.
            run_b: Index of the second run.
            analyzer: Name of the attached probe.
            precision: Format for the bitwise/ULP comparison (default: the dtype run
                ``run_a`` ran in).
            **where: ``position_a``, ``position_b``, ``row_a``, ``row_b`` (see
                :func:`oversquash_lens.analyzers.compare`).

        Returns:
            A :class:`~oversquash_lens.PairComparison` with the same metrics as
            :func:`~oversquash_lens.collapse`.
        """
        a, b = self.result(analyzer, run_a), self.result(analyzer, run_b)
        if not isinstance(a, Representations) or not isinstance(b, Representations):
            raise TypeError(f"{analyzer} is not a CollapseProbe: attach osl.CollapseProbe()")
        return compare(a, b, precision=precision, **where)

    def __repr__(self) -> str:
        names = ", ".join(self.analyzers) or "none"
        return (
            f"Recording: {len(self._runs)} run(s) seen; analyzers {names}\n"
            "  rec.result(name) is the last run's result, rec.result(name, i) or "
            "rec.results[name][i] run i's (0: the first)"
        )

    @property
    def results(self) -> dict[str, list[Result]]:
        """``{analyzer name: [result of run 0, result of run 1, ...]}``, in run order.

        ``rec.results[name][0]`` is the first run's; :meth:`result` gives the last.
        """
        return {
            key: [self.result(key, i) for i in range(len(self._runs))] for key in self.analyzers
        }

    def _index(self, index: int) -> int:
        if not self._runs:
            raise IndexError(
                "no forward pass ran inside the attach block: run the model inside "
                "`with osl.attach(...) as rec:`"
            )
        if not -len(self._runs) <= index < len(self._runs):
            raise IndexError(f"run {index} does not exist: {len(self._runs)} runs were seen")
        return range(len(self._runs))[index]

    def _key_of(self, analyzer: Analyzer) -> str:
        for key, value in self.analyzers.items():
            if value is analyzer:
                return key
        raise KeyError(f"{analyzer!r} is not attached here")


_UNAVAILABLE = {
    LOGITS: (
        "this model transforms its logits after the unembedding (e.g. a final soft-cap), "
        "and this pass did not return them (forward() called directly, or "
        "return_type='loss'); call the model itself with return_type='logits', or attach "
        "CollapseProbe(logits=False)"
    )
}


def padding_of(adapter: ModelAdapter, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """Why a call's batch rows differ in length (padding), or None when they do not.

    Seen from the call's arguments: an ``attention_mask`` with zeros, or a list of
    prompts that tokenize to different lengths (TransformerLens pads them).

    Example:
        >>> import oversquash_lens as osl
        >>> adapter = osl.ModelAdapter(osl.load_model("tiny-gpt2"))
        >>> padding_of(adapter, (["1 1", "1 1 1 1"],), {})
        'prompts of 2 and 4 tokens'
        >>> padding_of(adapter, (["1 1", "2 2"],), {}) is None
        True
    """
    mask = kwargs.get("attention_mask")
    if isinstance(mask, Tensor) and bool((mask == 0).any()):
        return "an attention_mask with zeros"
    prompt = args[0] if args else kwargs.get("input")
    if isinstance(prompt, list | tuple) and len(prompt) > 1:
        if all(isinstance(p, str) for p in prompt):
            lengths = sorted({adapter.n_text_tokens(p) for p in prompt})
            if len(lengths) > 1:
                return f"prompts of {lengths[0]} and {lengths[-1]} tokens"
    return None


def _unique_keys(analyzers: tuple[Analyzer, ...]) -> dict[str, Analyzer]:
    out: dict[str, Analyzer] = {}
    for analyzer in analyzers:
        if not isinstance(analyzer, Analyzer):
            raise TypeError(
                f"attach() takes Analyzer objects (e.g. osl.ResidualNorms()), got "
                f"{type(analyzer).__name__}"
            )
        key, n = analyzer.name, 2
        while key in out:
            key, n = f"{analyzer.name}#{n}", n + 1
        out[key] = analyzer
    return out


@contextmanager
def attach(model: Any, *analyzers: Analyzer) -> Iterator[Recording]:
    """Attach analyzers to a model for the runs made inside the block.

    Each forward pass inside the block is one run; analyzers see the values the model
    actually used (after precision emulation and the user's own patching hooks). Every
    hook is removed when the block ends, also if it raises, and the model's state is
    restored (see :func:`~oversquash_lens.preserve_state`). Analyzers that read attention
    patterns get eager attention for the block (a bridge over SDPA is switched back after).

    Args:
        model: HookedTransformer or TransformerBridge.
        *analyzers: Analyzer objects, e.g. ``osl.ResidualNorms()``.

    Yields:
        A :class:`Recording`; ``rec.results`` holds one result per run per analyzer.

    Raises:
        MissingHookError: If a needed hook point does not exist.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-llama")
        >>> with osl.attach(model, osl.ResidualNorms()) as rec:
        ...     _ = model(model.to_tokens("1 1"))
        ...     _, cache = model.run_with_cache(model.to_tokens("2 2 2"))
        >>> rec.n_runs
        2
    """
    adapter = ModelAdapter(model)
    keyed = _unique_keys(analyzers)
    for analyzer in keyed.values():
        analyzer.bind(adapter)
    rec = Recording(adapter, keyed)
    # blocks.0.hook_resid_pre fires in every full pass, so a pass is a run even when none
    # of the analyzers' own hook points fire in it (they then refuse it, saying why).
    marker = adapter.resid_pre(0)
    needed = sorted({marker, *(name for names in rec.hook_names.values() for name in names)})
    wants_logits = LOGITS in needed
    needed = [name for name in needed if name != LOGITS]
    edits = [pair for analyzer in keyed.values() for pair in analyzer.edit_hooks(adapter)]
    on_logits = rec._dispatch(LOGITS) if wants_logits else None
    patterns = any(name.endswith("hook_pattern") for name in needed)
    rec.eager = patterns
    # One with-statement, no ExitStack held in a variable: if an interrupt skips an
    # inner exit, that context's generator is freed with this frame's stack, and its
    # guarded cleanup runs then (see capture._guard).
    with (
        adapter.eager_attention() if patterns else nullcontext(),
        capture.run_boundaries(
            model,
            rec._on_tokens,
            rec._end_run,
            on_logits=(lambda logits: on_logits(logits, None)) if on_logits else None,
            on_call=rec._on_call,
        ),
        capture.hooks(model, edits, order="first") if edits else nullcontext(),
        capture.hooks(model, [(name, rec._dispatch(name)) for name in needed], order="last"),
    ):
        yield rec
    rec._current = None
