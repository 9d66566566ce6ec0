"""Provenance: enough to know what produced a number and to reproduce it."""

import datetime as _dt
import platform
from dataclasses import asdict, dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Provenance:
    """Where a result came from.

    Attributes:
        model_name: Registry or model name.
        backend: ``"hooked"`` or ``"bridge"``.
        weights_processed: TransformerLens weight processing (fold_ln, centering) applied;
            None when unknown (a user-supplied model).
        dtype: The dtype the model ran in.
        device: Device of the embedding.
        attn_implementation: Attention kernel (``"eager"`` materializes patterns).
        prepend_bos: Whether a BOS token was prepended.
        source: Where the weights came from.
        hook_names: Hook points the result was computed from.
        precision: The precision under study (native dtype or emulated format), if any.
        seed: Random seed, if any.
        package_version: oversquash-lens version.
        transformer_lens_version: TransformerLens version.
        torch_version: torch version.
        python_version: Python version.
        created: ISO-8601 UTC timestamp.
        extra: Anything else worth keeping (JSON-serializable).
    """

    model_name: str
    backend: str
    weights_processed: bool | None
    dtype: str
    device: str
    attn_implementation: str
    prepend_bos: bool | None
    source: str
    hook_names: tuple[str, ...] = ()
    precision: str | None = None
    seed: int | None = None
    package_version: str = ""
    transformer_lens_version: str = ""
    torch_version: str = field(default_factory=lambda: torch.__version__)
    python_version: str = field(default_factory=platform.python_version)
    created: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        out = asdict(self)
        out["hook_names"] = list(self.hook_names)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Provenance":
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        data["hook_names"] = tuple(data.get("hook_names", ()))
        return cls(**data)

    def describe(self) -> str:
        """One line for printing."""
        processed = {True: "processed", False: "raw", None: "unknown"}[self.weights_processed]
        return (
            f"{self.model_name} [{self.backend}, {self.dtype}, {self.device}, weights "
            f"{processed}, attention {self.attn_implementation}, "
            f"prepend_bos={self.prepend_bos}]"
        )
