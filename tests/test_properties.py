"""Runs the property-based checks of ``property_checks.py`` as a user would see them.

The test session type-checks every annotated call at run time (jaxtyping + beartype), so
a wrongly typed argument would be refused by beartype before the package's own checks
run. The properties are therefore run in a subprocess without that instrumentation.
"""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def test_every_call_succeeds_or_fails_clearly_and_leaves_the_model_intact() -> None:
    command = [
        sys.executable, "-m", "pytest", str(HERE / "property_checks.py"),
        "-o", "addopts=", "-p", "no:cacheprovider", "-q", "-x",
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=1500, cwd=HERE.parent)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-2000:]
