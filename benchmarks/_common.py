"""What every benchmark records about the machine, and how it writes its numbers."""

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch


def machine_facts() -> dict[str, Any]:
    """Load, CPU and versions at the time of measuring (seconds mean little without them)."""
    return {
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }


def finish(numbers: dict[str, Any], out: Path | None) -> None:
    """Print the load the numbers were measured under; write them as JSON to ``out``."""
    print(f"load average {numbers['load_average_1min']:.1f} on {os.cpu_count()} CPUs")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(numbers, indent=2) + "\n")
        print(f"wrote {out}")
