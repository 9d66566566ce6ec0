"""Sweeps split across processes (``--shard I/N``) merge into the unsharded result, exactly."""

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import oversquash_lens as osl
from oversquash_lens import _shards
from oversquash_lens._errors import CheckpointError, CheckpointMismatchError
from oversquash_lens.results._checkpoint import Checkpoint

from .conftest import BACKENDS

CLI = [sys.executable, "-m", "oversquash_lens"]


def same_result(merged: Any, unsharded: Any) -> None:
    """Every field equal (NaN where NaN); provenance equal but for its creation time."""
    assert type(merged) is type(unsharded)
    for field in dataclasses.fields(merged):
        a, b = getattr(merged, field.name), getattr(unsharded, field.name)
        if isinstance(a, torch.Tensor):
            assert a.dtype == b.dtype and a.shape == b.shape, field.name
            equal = (a == b) | (a.isnan() & b.isnan()) if a.is_floating_point() else a == b
            assert bool(equal.all()), f"{field.name} differs"
        elif field.name == "provenance":
            pa, pb = a.to_dict(), b.to_dict()
            pa.pop("created"), pb.pop("created")
            assert pa == pb
        else:
            assert a == b, field.name


def run_all(commands: list[list[str]]) -> list[subprocess.CompletedProcess[str]]:
    """Start every command at once (local stand-ins for a job array), wait for all."""
    started = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    done = []
    for command, process in zip(commands, started, strict=True):
        out, err = process.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(command, process.returncode, out, err))
        assert process.returncode == 0, f"{' '.join(command)} failed:\n{err[-3000:]}"
    return done


def merge_cli(files: list[str], out: Path) -> None:
    """`oversquash-lens merge FILES --out OUT --json`, which must succeed."""
    merged = subprocess.run(
        [*CLI, "merge", *files, "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert merged.returncode == 0, merged.stderr


SWEEPS = {
    "collapse": [
        "collapse",
        "--model",
        "tiny-llama",
        "--lengths",
        "1:24",
        "--precision",
        "float32,emulate:bfloat16",
        "--mode",
        "independent",
    ],
    "behaviour": [
        "behaviour",
        "--model",
        "tiny-gpt2",
        "--task",
        "count_ones",
        "--lengths",
        "1:9",
        "--samples",
        "2",
    ],
}


@pytest.mark.parametrize("sweep", sorted(SWEEPS))
def test_three_shard_processes_merge_into_the_unsharded_run(sweep: str, tmp_path: Path) -> None:
    argv = [*CLI, *SWEEPS[sweep], "--json"]
    shards = [[*argv, "--shard", f"{i}/3", "--out", str(tmp_path / f"node{i}")] for i in (1, 2, 3)]
    outputs = run_all([*shards, [*argv, "--out", str(tmp_path / "unsharded")]])
    files = [json.loads(o.stdout)["shard_file"] for o in outputs[:3]]
    assert [Path(f).name for f in files] == [f"{sweep}.shard-{i}-of-3.ckpt" for i in (1, 2, 3)]
    # every shard did a part of the work, none all of it
    held = [len(Checkpoint.read(f).names()) - 1 for f in files]
    assert all(h > 0 for h in held) and sum(held) > max(held)

    merge_cli(files, tmp_path / "merged")
    load = osl.CollapseResult.load if sweep == "collapse" else osl.BehaviourResult.load
    same_result(
        load(tmp_path / "merged" / f"{sweep}.npz"), load(tmp_path / "unsharded" / f"{sweep}.npz")
    )
    summaries = [
        json.loads((tmp_path / d / "summary.json").read_text()) for d in ("merged", "unsharded")
    ]
    for summary in summaries:
        summary.pop("files")
    assert summaries[0] == summaries[1]


@pytest.mark.parametrize("mode", ["shared", "independent"])
def test_shards_in_process_equal_the_sweep(load: Any, mode: str, tmp_path: Path) -> None:
    model = load("tiny-llama", BACKENDS[0])
    family, lengths = osl.tasks.repeated_last("1"), [1, 3, 5, 8]
    precisions = ["float32", "emulate:bfloat16", "emulate:float8_e4m3"]
    files = [
        _shards.collapse_shard(
            model,
            family,
            lengths,
            precisions,
            _shards.Shard(i, 4),
            tmp_path,
            mode=mode,
            progress=False,
        )
        for i in (1, 2, 3, 4)
    ]  # shared mode: 3 items for 4 shards, so one shard is empty, and that is fine
    unsharded = osl.collapse(model, family, lengths, precisions, mode=mode, progress=False)
    same_result(_shards.merge(reversed(files)), unsharded)


def test_merge_refuses_what_does_not_belong(load: Any, tmp_path: Path) -> None:
    model = load("tiny-gpt2", BACKENDS[0])
    family = osl.tasks.repeated_last("1")

    def shard(i: int, n: int, lengths: list[int], folder: str) -> Path:
        return _shards.collapse_shard(
            model,
            family,
            lengths,
            ["float32", "emulate:bfloat16"],
            _shards.Shard(i, n),
            tmp_path / folder,
            mode="independent",
            progress=False,
        )

    one, two = shard(1, 2, [1, 2, 3], "a"), shard(2, 2, [1, 2, 3], "a")
    with pytest.raises(CheckpointError, match=r"shards 2/2 are missing"):
        _shards.merge([one])
    with pytest.raises(CheckpointError, match="given twice"):
        _shards.merge([one, one, two])
    other = shard(2, 2, [1, 2, 4], "b")  # another sweep: other lengths
    with pytest.raises(CheckpointMismatchError, match="lengths"):
        _shards.merge([one, other])
    three = shard(1, 3, [1, 2, 3], "c")
    with pytest.raises(CheckpointMismatchError, match="split differently"):
        _shards.merge([one, three])
    plain = tmp_path / "plain.ckpt"
    osl.collapse(model, family, [1, 2], progress=False, checkpoint=plain)
    with pytest.raises(CheckpointError, match="not a shard file"):
        _shards.merge([plain])
    # an interrupted shard: drop one of its finished entries
    ckpt = Checkpoint.read(two)
    dropped = next(n for n in ckpt.names() if n != "recipe")
    ckpt._meta.pop(dropped), ckpt._arrays.pop(dropped, None)
    ckpt.save()
    with pytest.raises(CheckpointError, match=r"shard 2/2 .* is unfinished"):
        _shards.merge([one, two])


def test_cli_shard_arguments_are_checked_before_loading(tmp_path: Path) -> None:
    for spec, message in [("0/3", "counts from 1"), ("4/3", "counts from 1"), ("x", "I/N")]:
        done = subprocess.run(
            [*CLI, "collapse", "--shard", spec, "--out", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2 and message in done.stderr, done.stderr
    done = subprocess.run(
        [*CLI, "behaviour", "--model", "tiny-gpt2", "--shard", "1/2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "--shard 1/2 needs --out" in done.stderr, done.stderr


def test_the_deal_is_balanced_and_covers_every_item() -> None:
    costs = [k + 1 for k in range(1, 101)]
    owner = _shards.deal(costs, 3)
    loads = [sum(c for c, o in zip(costs, owner, strict=True) if o == s) for s in range(3)]
    assert sorted(set(owner)) == [0, 1, 2]
    assert max(loads) - min(loads) <= max(costs)  # greedy largest-first bound
    assert _shards.deal(costs, 3) == owner  # the same deal in every process
    assert _shards.deal([4], 3) == [0]


def test_the_readme_slurm_example_parses() -> None:
    from oversquash_lens._cli_args import build_parser

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    (script,) = [b for b in readme.split("```sh\n")[1:] if "#SBATCH --array" in b]
    script = script.split("```")[0].replace("\\\n", " ")
    commands = [line for line in script.splitlines() if line.startswith("oversquash-lens")]
    assert commands
    for index in range(4):  # SLURM_ARRAY_TASK_ID = 0..3
        line = commands[0].replace("$((SLURM_ARRAY_TASK_ID + 1))", str(index + 1))
        args = build_parser().parse_args(line.split()[1:])
        assert (args.shard.index, args.shard.count) == (index + 1, 4) and args.out


def _without_timings(page: str) -> str:
    """The report page with its timing numbers blanked (they differ between any two runs)."""
    page = re.sub(r"\d+ s in all \(model load \d+ s\)", "T s in all", page)
    start = page.index('id="timings"')
    return page[:start]  # the timings table closes the page


@pytest.mark.slow  # four report processes on two cores: about a minute
def test_three_report_shard_processes_merge_into_the_unsharded_report(tmp_path: Path) -> None:
    """`report --shard I/3` in three processes, then `merge`: the same page (timings
    apart), the same summary.json numbers, and every result file bit for bit."""
    argv = [*CLI, "report", "--model", "tiny-nope", "--suite", "smoke", "--json"]
    shards = [[*argv, "--shard", f"{i}/3", "--out", str(tmp_path / f"node{i}")] for i in (1, 2, 3)]
    outputs = run_all([*shards, [*argv, "--out", str(tmp_path / "unsharded")]])
    files = [json.loads(o.stdout)["shard_file"] for o in outputs[:3]]
    assert [Path(f).name for f in files] == [f"report.shard-{i}-of-3.json" for i in (1, 2, 3)]
    steps = [json.loads(Path(f).read_text())["steps"] for f in files]
    assert all(steps) and len({s for step in steps for s in step}) == sum(map(len, steps))
    merge_cli(files, tmp_path / "merged")
    pages = [(tmp_path / d / "report.html").read_text() for d in ("merged", "unsharded")]
    assert _without_timings(pages[0]) == _without_timings(pages[1])
    summaries = [
        json.loads((tmp_path / d / "summary.json").read_text()) for d in ("merged", "unsharded")
    ]
    for summary in summaries:
        summary.pop("seconds")
        summary["provenance"].pop("created")
    assert summaries[0] == summaries[1]
    results = sorted((tmp_path / "unsharded" / "results").iterdir())
    assert results
    for path in results:
        other = tmp_path / "merged" / "results" / path.name
        if path.suffix == ".npz":
            with np.load(path) as a, np.load(other) as b:
                assert sorted(a.files) == sorted(b.files)
                for key in a.files:
                    if key != "__meta__":
                        assert np.array_equal(a[key], b[key], equal_nan=True), key


def test_merge_report_refuses_what_does_not_belong(tmp_path: Path) -> None:
    from oversquash_lens.reporting import merge_report, report_shard

    def shard(i: int, n: int, folder: str, model: str = "tiny-nope") -> Path:
        return report_shard(
            model,
            "smoke",
            tmp_path / folder,
            _shards.Shard(i, n),
            progress=False,
            figure_formats=["png"],
        )

    one, two = shard(1, 2, "a"), shard(2, 2, "b")
    with pytest.raises(CheckpointError, match=r"each of the 2 shards once; got shards \[1\]"):
        merge_report([one], tmp_path / "m")
    with pytest.raises(CheckpointError, match="each of the 2 shards once"):
        merge_report([one, one], tmp_path / "m")
    with pytest.raises(CheckpointMismatchError, match="another fingerprint"):
        merge_report([one, shard(2, 2, "c", model="tiny-llama")], tmp_path / "m")
    unfinished = json.loads(two.read_text()) | {"finished": False}
    two.write_text(json.dumps(unfinished))
    with pytest.raises(CheckpointError, match="did not finish"):
        merge_report([one, two], tmp_path / "m")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(CheckpointError, match="not a report shard"):
        merge_report([one, tmp_path / "x.json"], tmp_path / "m")
