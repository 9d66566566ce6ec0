"""One view over HookedTransformer (TL 3.x) and TransformerBridge (TL 3.x / 4.x).

Analyses ask the adapter for hook names, sizes, tokens and provenance; they never
branch on the backend themselves.
"""

import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from . import _hooknames as names
from ._compat import Backend, backend_of, package_version, tl_version
from ._errors import (
    EmptySequenceError,
    MissingHookError,
    PatternsUnavailableError,
    PromptTooLongError,
)
from ._types import Tokens, TokensAnyBatch
from .capture import fired_hooks, hook_dict
from .models import ModelInfo, model_info
from .results import Provenance

Prompt = str | Sequence[str] | Tensor

# Probe results per model: (attention implementation, hook names that fired).
_FIRED: "weakref.WeakKeyDictionary[Any, tuple[str, set[str]]]" = weakref.WeakKeyDictionary()


class ModelAdapter:
    """Backend-independent access to a TransformerLens model.

    Args:
        model: A ``HookedTransformer`` or a ``TransformerBridge`` (in compatibility mode).

    Raises:
        UnsupportedModelError: For any other object (with a hint for raw HF models).

    Example:
        >>> import oversquash_lens as osl
        >>> adapter = osl.ModelAdapter(osl.load_model("tiny-llama"))
        >>> adapter.n_layers, adapter.n_heads, adapter.n_key_value_heads
        (2, 4, 2)
        >>> adapter.resid_post(1)
        'blocks.1.hook_resid_post'
    """

    embed = names.EMBED
    final_norm = names.FINAL_NORM
    resid_pre = staticmethod(names.resid_pre)
    resid_mid = staticmethod(names.resid_mid)
    resid_post = staticmethod(names.resid_post)
    pattern = staticmethod(names.pattern)
    z = staticmethod(names.z)
    attn_out = staticmethod(names.attn_out)

    def __init__(self, model: Any) -> None:
        self.backend: Backend = backend_of(model)
        self.model = model

    # ------------------------------------------------------------------ sizes
    @property
    def cfg(self) -> Any:
        """The model's TransformerLens config."""
        return self.model.cfg

    @property
    def n_layers(self) -> int:
        """Number of transformer blocks."""
        return int(self.cfg.n_layers)

    @property
    def n_heads(self) -> int:
        """Query heads per layer."""
        return int(self.cfg.n_heads)

    @property
    def n_key_value_heads(self) -> int:
        """Key/value heads per layer (fewer than ``n_heads`` with grouped-query attention)."""
        return int(getattr(self.cfg, "n_key_value_heads", None) or self.n_heads)

    @property
    def d_model(self) -> int:
        """Residual stream width."""
        return int(self.cfg.d_model)

    @property
    def d_head(self) -> int:
        """Per-head width."""
        return int(self.cfg.d_head)

    @property
    def n_ctx(self) -> int:
        """Context window (maximum tokens per sequence)."""
        return int(self.cfg.n_ctx)

    @property
    def d_vocab(self) -> int:
        """Vocabulary size."""
        return int(self.cfg.d_vocab)

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the model's weights right now."""
        return self.model.W_E.dtype

    @property
    def device(self) -> torch.device:
        """Device of the token embedding (other layers may sit elsewhere)."""
        return self.model.W_E.device

    @property
    def info(self) -> ModelInfo:
        """How the model was loaded."""
        return model_info(self.model)

    @property
    def residual_points(self) -> list[str]:
        """v(0) .. v(L): input to block 0, then each block's output."""
        return names.residual_points(self.n_layers)

    # ------------------------------------------------------------------ tokens
    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer.

        Raises:
            ValueError: If the model has none.
        """
        tok = getattr(self.model, "tokenizer", None)
        if tok is None:
            raise ValueError("this model has no tokenizer; pass token ids instead of strings")
        return tok

    @property
    def prepend_bos(self) -> bool:
        """Default BOS behaviour for prompts."""
        return bool(getattr(self.cfg, "default_prepend_bos", True))

    def to_tokens(self, prompt: Prompt, *, prepend_bos: bool | None = None) -> Tokens:
        """Tokenize (or validate) a prompt, on the model's device.

        Args:
            prompt: A string, a list of strings (padded batch) or token ids
                ``[pos]`` / ``[batch, pos]``.
            prepend_bos: Override the model's default.

        Returns:
            Token ids ``[batch, pos]``.

        Raises:
            EmptySequenceError: For empty strings or zero-length token tensors.
            PromptTooLongError: When a sequence exceeds ``n_ctx``.
        """
        if isinstance(prompt, Tensor):
            tokens = prompt.unsqueeze(0) if prompt.ndim == 1 else prompt
            if tokens.ndim != 2 or tokens.is_floating_point():
                raise ValueError("token ids must be an integer tensor [pos] or [batch, pos]")
            tokens = tokens.to(self.device)
        else:
            texts = [prompt] if isinstance(prompt, str) else list(prompt)
            if not texts or any(t == "" for t in texts):
                raise EmptySequenceError("empty prompt: give at least one token of text")
            bos = self.prepend_bos if prepend_bos is None else prepend_bos
            # truncate=False: TransformerLens would otherwise cut long prompts silently
            tokens = self.model.to_tokens(
                texts if len(texts) > 1 else texts[0], prepend_bos=bos, truncate=False
            )
        return self.check_tokens(tokens)

    def check_tokens(self, tokens: Tokens) -> Tokens:
        """Validate a token batch against the context window.

        Raises:
            EmptySequenceError: If there are no tokens.
            PromptTooLongError: If there are more than ``n_ctx``.
        """
        if tokens.numel() == 0 or tokens.shape[-1] == 0:
            raise EmptySequenceError("empty sequence: the prompt has no tokens")
        if tokens.shape[-1] > self.n_ctx:
            raise PromptTooLongError(
                f"the prompt has {tokens.shape[-1]} tokens but {self.info.name} has a context "
                f"window of n_ctx={self.n_ctx}; shorten it (or choose shorter lengths)"
            )
        return tokens

    def to_str_tokens(self, tokens: TokensAnyBatch) -> list[str]:
        """Token strings for one sequence of ids."""
        return [str(s) for s in self.model.to_str_tokens(tokens.reshape(-1))]

    def to_string(self, tokens: TokensAnyBatch | int) -> str:
        """Decode ids to text."""
        return str(self.model.to_string(tokens))

    # ------------------------------------------------------------------ hooks
    def has_hook(self, name: str) -> bool:
        """Whether a hook point of this name exists (it may still never fire)."""
        return name in hook_dict(self.model)

    def fired_hooks(self) -> set[str]:
        """Standard hook names that actually fire in a forward pass.

        The bridge lists hooks that never fire (``hook_pos_embed`` on rotary models), so
        this runs a 2-token probe pass (once per model and attention kernel; the user's
        own hooks on the model see it, ours do not).
        """
        key = self.attention_implementation
        cached = _FIRED.get(self.model)
        if cached is not None and cached[0] == key:
            return cached[1]
        candidates = [self.embed, names.POS_EMBED, self.final_norm]
        for layer in range(self.n_layers):
            candidates += [
                self.resid_pre(layer),
                self.resid_mid(layer),
                self.resid_post(layer),
                self.pattern(layer),
                self.z(layer),
                self.attn_out(layer),
            ]
        probe = torch.zeros((1, 2), dtype=torch.long, device=self.device)
        fired = fired_hooks(self.model, candidates, probe)
        _FIRED[self.model] = (key, fired)
        return fired

    def require_hooks(self, hook_names: Sequence[str]) -> None:
        """Check that every name exists (without running the model).

        Whether each one fires is checked on the runs themselves: an analyzer whose hook
        did not fire refuses that run with :class:`IncompatibleRunError`.

        Raises:
            MissingHookError: For names this model does not have.
        """
        points = hook_dict(self.model)
        missing = [n for n in hook_names if n not in points and not self._serves(n)]
        if missing:
            raise MissingHookError(
                f"{self.info.name} ({self.backend}) has no hook points {missing[:4]}; for a "
                "TransformerBridge call enable_compatibility_mode() first"
            )

    def _serves(self, name: str) -> bool:
        """Pseudo hook points served without a HookPoint (the logits)."""
        return name == names.LOGITS and isinstance(
            getattr(self.model, "unembed", None), torch.nn.Module
        )

    @property
    def attention_implementation(self) -> str:
        """The attention kernel: ``"eager"`` computes patterns explicitly.

        A bridge reports its Hugging Face model's setting.
        """
        if self.backend == "hooked":
            return "eager"
        config = getattr(getattr(self.model, "original_model", None), "config", None)
        return str(getattr(config, "_attn_implementation", None) or "unknown")

    @contextmanager
    def eager_attention(self) -> Iterator[None]:
        """Inside the block, attention materializes its patterns; restored afterwards.

        HookedTransformer always computes patterns. A TransformerBridge over a Hugging
        Face model using SDPA / flash attention is switched to eager attention for the
        block and switched back on exit (gradients are cheaper through SDPA).

        Raises:
            PatternsUnavailableError: If the model cannot be switched.

        Example:
            >>> import oversquash_lens as osl
            >>> adapter = osl.ModelAdapter(osl.load_model("tiny-gpt2"))
            >>> with adapter.eager_attention():
            ...     adapter.attention_implementation
            'eager'
        """
        previous = self.attention_implementation
        if self.backend == "hooked" or previous == "eager":
            yield
            return
        hf_model = getattr(self.model, "original_model", None)
        try:
            hf_model.set_attn_implementation("eager")  # type: ignore[union-attr]
        except (AttributeError, ValueError) as exc:
            raise PatternsUnavailableError(
                f"{self.info.name} uses {previous} attention, which never materializes "
                f"attention patterns, and switching it to eager failed ({exc}); reload the "
                "Hugging Face model with attn_implementation='eager'"
            ) from exc
        try:
            yield
        finally:
            hf_model.set_attn_implementation(previous)  # type: ignore[union-attr]

    def ensure_patterns(self) -> None:
        """Check by a probe pass that attention patterns fire right now.

        Raises:
            PatternsUnavailableError: With what to do instead.
        """
        if self.pattern(0) not in self.fired_hooks():
            raise PatternsUnavailableError(
                f"attention patterns do not fire on {self.info.name} ({self.backend}, "
                f"attention {self.attention_implementation}); run inside "
                "adapter.eager_attention(), or load the model with attn_implementation='eager'"
            )

    # ------------------------------------------------------------------ provenance
    def provenance(
        self,
        *,
        hook_names: Sequence[str] = (),
        precision: str | None = None,
        seed: int | None = None,
        **extra: Any,
    ) -> Provenance:
        """Provenance record for a result computed from this model."""
        info = self.info
        return Provenance(
            model_name=info.name,
            backend=self.backend,
            weights_processed=info.weights_processed,
            dtype=str(self.dtype).removeprefix("torch."),
            device=str(self.device),
            attn_implementation=self.attention_implementation,
            prepend_bos=info.prepend_bos,
            source=info.source,
            hook_names=tuple(hook_names),
            precision=precision,
            seed=seed,
            package_version=package_version(),
            transformer_lens_version=tl_version(),
            extra=dict(extra),
        )
