"""``attach``: the context manager every analyzer plugs into.

Inside the block the user runs the model however they like (``model(tokens)``,
``run_with_cache``, ``run_with_hooks`` with their own hooks, ``generate``); each forward
pass becomes one run, and each analyzer keeps what it needs from it.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from . import _capture as capture
from ._adapter import ModelAdapter
from .analyzers import Analyzer, RunRecord
from .results import Result


class Recording:
    """Runs seen inside an :func:`attach` block, and the analyzers' results for them.

    Attributes:
        adapter: The model's adapter.
        analyzers: ``{name: analyzer}`` in attach order.
    """

    def __init__(self, adapter: ModelAdapter, analyzers: dict[str, Analyzer]) -> None:
        self.adapter = adapter
        self.analyzers = analyzers
        self._runs: list[dict[str, RunRecord]] = []
        self._current: dict[str, RunRecord] | None = None
        self._needs: dict[str, list[str]] = {}
        self._provenance = {
            key: adapter.provenance(hook_names=a.hook_names(adapter))
            for key, a in analyzers.items()
        }
        self._cache: dict[tuple[str, int], Result] = {}

    # -------------------------------------------------------------- recording side
    def _start_run(self, tokens: Tensor | None) -> None:
        index = len(self._runs)
        str_tokens = self.adapter.to_str_tokens(tokens[0]) if tokens is not None else []
        self._current = {
            key: RunRecord(
                index=index,
                tokens=tokens,
                grad_enabled=torch.is_grad_enabled(),
                provenance=self._provenance[key],
                str_tokens=str_tokens,
            )
            for key in self.analyzers
        }
        self._runs.append(self._current)

    def _dispatch(self, name: str) -> capture.HookFn:
        keys = [key for key, hooks in self._needs.items() if name in hooks]

        def hook(activation: Tensor, hook: Any) -> None:
            if self._current is None:  # a pass that did not start at the embedding
                self._start_run(None)
            assert self._current is not None
            for key in keys:
                kept = self.analyzers[key].keep(name, activation)
                self._current[key].activations[name] = kept

        return hook

    # -------------------------------------------------------------- user side
    @property
    def n_runs(self) -> int:
        """Number of forward passes seen."""
        return len(self._runs)

    def run(self, analyzer: str, index: int = -1) -> RunRecord:
        """What ``analyzer`` kept from run ``index``."""
        return self._runs[index][analyzer]

    def result(self, analyzer: str | Analyzer, index: int = -1) -> Result:
        """One analyzer's result for one run (computed once, then cached).

        Args:
            analyzer: Its name (``"ResidualNorms"``) or the analyzer object.
            index: Run number (negative counts from the end).
        """
        key = analyzer if isinstance(analyzer, str) else self._key_of(analyzer)
        if key not in self.analyzers:
            raise KeyError(f"no analyzer {key!r} attached; attached: {list(self.analyzers)}")
        if not self._runs:
            raise IndexError("no forward pass ran inside the attach block")
        index = range(len(self._runs))[index]
        if (key, index) not in self._cache:
            self._cache[key, index] = self.analyzers[key].compute(self._runs[index][key])
        return self._cache[key, index]

    @property
    def results(self) -> dict[str, list[Result]]:
        """``{analyzer name: [result of run 0, result of run 1, ...]}``."""
        return {
            key: [self.result(key, i) for i in range(len(self._runs))] for key in self.analyzers
        }

    def _key_of(self, analyzer: Analyzer) -> str:
        for key, value in self.analyzers.items():
            if value is analyzer:
                return key
        raise KeyError(f"{analyzer!r} is not attached here")


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

    Every hook is removed when the block ends, also if it raises. The user's own hooks
    (added before, or through ``run_with_hooks`` inside) keep working alongside.

    Args:
        model: HookedTransformer or TransformerBridge.
        *analyzers: Analyzer objects, e.g. ``osl.ResidualNorms()``.

    Yields:
        A :class:`Recording`; ``rec.results`` holds one result per run per analyzer.

    Raises:
        MissingHookError: If a needed hook point does not exist or never fires.

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
    rec._needs = {key: a.hook_names(adapter) for key, a in keyed.items()}
    needed = sorted({name for names in rec._needs.values() for name in names})
    with (
        capture.run_boundaries(model, rec._start_run),
        capture.hooks(model, [(name, rec._dispatch(name)) for name in needed]),
    ):
        yield rec
    rec._current = None
