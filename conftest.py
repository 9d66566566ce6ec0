"""Test-session settings that must exist before any library is imported.

Tests never touch the network: Hugging Face libraries are put in offline mode, so a
test that would download something fails at once instead of retrying for minutes.
Derived files (dequantized SmolLM2 weights, saved tokenizers) go to a cache shared by
test runs, under the project unless OVERSQUASH_LENS_CACHE says otherwise.
"""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OVERSQUASH_LENS_CACHE", str(Path(__file__).parent / ".cache"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
