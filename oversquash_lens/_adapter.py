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
    InvalidTokensError,
    MissingHookError,
    PatternsUnavailableError,
    RaggedBatchError,
)
from ._probes import probe_causal
from ._tensors import weights_digest
from ._types import Tokens, TokensAnyBatch
from .capture import active_precision, fired_hooks, hook_dict
from .capture._hooks import probe_ids
from .capture._kernel import attention_kernel, eager_kernel
from .models import ModelInfo, model_info
from .models._tokens import check_token_ids, prompt_texts
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
            prompt: A string, a list of strings of equal token length (a batch) or token
                ids ``[pos]`` / ``[batch, pos]`` (any integer dtype but bool and uint8).
            prepend_bos: Override the model's default.

        Returns:
            Token ids ``[batch, pos]`` (int64).

        Raises:
            EmptySequenceError: For empty strings or zero-length token tensors.
            PromptTooLongError: When a sequence exceeds ``n_ctx``.
            RaggedBatchError: For prompts of different token lengths (padding would be
                measured as if it were the last token).
            InvalidTokensError: For ids outside the vocabulary or of a non-integer dtype.
            TypeError: For anything that is not a string, a list of strings or a tensor.
        """
        if isinstance(prompt, Tensor):
            tokens = prompt.unsqueeze(0) if prompt.ndim == 1 else prompt
            if tokens.ndim != 2:
                raise InvalidTokensError(
                    f"token ids must be a tensor [pos] or [batch, pos], got shape "
                    f"{tuple(prompt.shape)}"
                )
            return self.check_tokens(tokens).to(self.device)
        else:
            texts = self._texts(prompt)
            bos = self.prepend_bos if prepend_bos is None else prepend_bos
            lengths = sorted({self.n_text_tokens(t) for t in texts})
            if len(lengths) > 1:
                raise RaggedBatchError(
                    f"the prompts tokenize to different lengths ({lengths[0]} to "
                    f"{lengths[-1]} tokens): a padded batch would be measured at padding "
                    "for the shorter ones. Measure each prompt on its own, or give prompts "
                    "of equal length"
                )
            # truncate=False: TransformerLens would otherwise cut long prompts silently
            tokens = self.model.to_tokens(
                texts if len(texts) > 1 else texts[0], prepend_bos=bos, truncate=False
            )
        return self.check_tokens(tokens)

    def _texts(self, prompt: Any) -> list[str]:
        texts = prompt_texts(prompt)
        self.tokenizer  # noqa: B018 - raises with advice when the model has none
        return texts

    def n_text_tokens(self, text: str) -> int:
        """Tokens of ``text`` without special tokens (no BOS)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def check_tokens(self, tokens: Tensor) -> Tokens:
        """Validate a token batch: integer ids inside the vocabulary, within the context.

        Returns:
            The same ids as int64.

        Raises:
            EmptySequenceError: If there are no tokens.
            PromptTooLongError: If there are more than ``n_ctx``.
            InvalidTokensError: For bool, uint8 or floating tensors (TransformerLens would
                index with them as masks), and ids below 0 or beyond the vocabulary.
        """
        return check_token_ids(tokens, n_ctx=self.n_ctx, d_vocab=self.d_vocab, name=self.info.name)

    def to_str_tokens(self, tokens: TokensAnyBatch) -> list[str]:
        """Token strings for one sequence of ids (``"#id"`` for a model without tokenizer)."""
        ids = tokens.reshape(-1)
        if getattr(self.model, "tokenizer", None) is None:
            return [f"#{int(i)}" for i in ids.tolist()]
        return [str(s) for s in self.model.to_str_tokens(ids)]

    def to_string(self, tokens: TokensAnyBatch | int) -> str:
        """Decode ids to text."""
        self.tokenizer  # noqa: B018 - raises with advice when the model has none
        return str(self.model.to_string(tokens))

    @property
    def is_causal(self) -> bool:
        """Whether each position sees only itself and earlier positions (a causal mask).

        Read from the config when it says (``attention_dir``, Hugging Face ``is_causal``),
        and otherwise checked once by a probe pass (see :func:`probe_causal`).

        Example:
            >>> import oversquash_lens as osl
            >>> osl.ModelAdapter(osl.load_model("tiny-gpt2")).is_causal
            True
        """
        if str(getattr(self.cfg, "attention_dir", "causal")) == "bidirectional":
            return False
        hf_config = getattr(getattr(self.model, "original_model", None), "config", None)
        if getattr(hf_config, "is_causal", None) is False:
            return False
        return probe_causal(self.model)

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
                names.v(layer),
                names.ln1_normalized(layer),
                *names.mlp_points(layer),
            ]
        fired = fired_hooks(self.model, candidates, probe_ids(self.model, 2))
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
                f"{self.info.name} ({self.backend}) has no hook points {missing[:4]}"
                + self._missing_hint(missing)
            )

    def _missing_hint(self, missing: Sequence[str]) -> str:
        """What to do about missing hook points, said only where it is the cause."""
        if self.backend == "bridge" and not getattr(self.model, "compatibility_mode", True):
            return "; call enable_compatibility_mode() on the TransformerBridge first"
        if any(name.endswith("attn.hook_z") for name in missing):
            return (
                "; this architecture has no per-head outputs (hook_z): pass heads=False to "
                "skip the per-head distances"
            )
        if any(name.endswith("hook_pattern") for name in missing):
            return "; this architecture has no attention patterns to read"
        return ""

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
        return "eager" if self.backend == "hooked" else attention_kernel(self.model)

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
        with eager_kernel(self.model, self.info.name, previous):
            yield

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
    def fingerprint(self) -> dict[str, Any]:
        """Everything about the model, as it is now, that changes a measured number.

        A hash of every weight, the dtype, weight processing, backend, device type,
        attention kernel, active precision contexts and the versions of this package and
        TransformerLens: the key under which checkpoints are saved and reused.

        Example:
            >>> import oversquash_lens as osl
            >>> model = osl.load_model("tiny-gpt2")
            >>> adapter = osl.ModelAdapter(model)
            >>> with osl.emulate_precision(model, "bfloat16"):
            ...     emulated = adapter.fingerprint()
            >>> emulated == adapter.fingerprint(), emulated["precision"]
            (False, 'bfloat16 emulated at residual')
        """
        info = self.info
        return {
            "model_name": info.name,
            "backend": self.backend,
            "weights_sha256": weights_digest(self.model),
            "dtype": str(self.dtype).removeprefix("torch."),
            "weights_processed": info.weights_processed,
            "device": self.device.type,
            "attn_implementation": self.attention_implementation,
            "precision": active_precision(self.model),
            "package_version": package_version(),
            "transformer_lens_version": tl_version(),
        }

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
