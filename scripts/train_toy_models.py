"""Train the two toy models shipped as ``toy-count`` and ``toy-copy``.

Both are small Llama-layout Hugging Face models (RMSNorm, rotary positions, so they run
on prompts longer than the training lengths) trained in plain torch on CPU, with the
shipped tiny tokenizer, on the "compact" task format::

    <bos>{op}:{sequence}={answer}\\n

``op`` is ``C`` (count the ones of a 0/1 sequence, decimal answer), ``L`` (copy the last
digit) or ``F`` (copy the first digit). Half of the training sequences carry a ``,``
every ``m`` items (m in 2..5, grouped from the left or from the right) so separators are
in distribution. The loss is the cross-entropy of the answer tokens (digits and the
closing newline) only.

After training, the weights are rounded to float16 (what ships) and every held-out number
is measured on the rounded weights, with greedy decoding: in-distribution lengths,
lengths up to 4x the training length, the paper's structured instances (copy the last
digit of ``1…10`` vs the first digit of ``01…1``; count the ones of ``1…1`` and of
Bernoulli(0.7) sequences), with and without separators.

    python scripts/train_toy_models.py                 # train both, write the package data
    python scripts/train_toy_models.py --only toy-copy
    python scripts/train_toy_models.py --repro-check   # short run vs the recorded value (~30 s)

Reproducible: fixed seeds, ``torch.use_deterministic_algorithms(True)``, one thread.
"""

import argparse
import json
import math
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "oversquash_lens" / "models" / "data"
sys.path.insert(0, str(ROOT))

from oversquash_lens.models._tiny import tiny_tokenizer  # noqa: E402
from oversquash_lens.models._toy import TOY_SPECS, ToySpec, hf_config  # noqa: E402

SEPARATOR_WIDTHS = (2, 3, 4, 5)
EVAL_LENGTHS = (4, 8, 16, 24, 32, 40, 48, 64, 96, 128)
EVAL_SAMPLES = 100  # random sequences per (length, condition) cell
EVAL_SEED = 12345
REPRO_STEPS = 60


# --------------------------------------------------------------------------- task text


def with_separators(items: list[str], every: int, grouping: str) -> str:
    """Join items, with a comma every ``every`` items counted from the left or the right."""
    if every <= 0:
        return "".join(items)
    n = len(items)
    out = []
    for i, item in enumerate(items):
        if i > 0:
            boundary = i % every == 0 if grouping == "left" else (n - i) % every == 0
            if boundary:
                out.append(",")
        out.append(item)
    return "".join(out)


def prompt_text(op: str, items: list[str], every: int = 0, grouping: str = "left") -> str:
    """``"{op}:{sequence}="`` (the answer follows)."""
    return f"{op}:{with_separators(items, every, grouping)}="


def answer_of(op: str, items: list[str]) -> str:
    """The correct answer digits (without the newline)."""
    if op == "C":
        return str(sum(1 for item in items if item == "1"))
    if op == "L":
        return items[-1]
    if op == "F":
        return items[0]
    raise ValueError(f"unknown op {op!r}")


def _random_separators(rng: random.Random) -> tuple[int, str]:
    if rng.random() < 0.5:
        return 0, "left"
    return rng.choice(SEPARATOR_WIDTHS), rng.choice(("left", "right"))


def sample_example(task: str, rng: random.Random, max_len: int) -> tuple[str, str]:
    """One training example ``(prompt, answer)`` for ``task`` ("count" or "copy")."""
    n = rng.randint(1, max_len)
    if task == "count":
        op = "C"
        r = rng.random()
        if r < 0.1:
            p = 1.0  # all ones: the paper's counting instance
        elif r < 0.15:
            p = 0.0
        else:
            p = rng.random()
        items = ["1" if rng.random() < p else "0" for _ in range(n)]
    else:
        op = rng.choice(("L", "F"))
        if rng.random() < 0.5:
            items = [str(rng.randrange(10)) for _ in range(n)]
        else:  # mostly one background digit: the paper's "1…10" / "01…1" are of this kind
            background, q = str(rng.randrange(10)), rng.random()
            items = [str(rng.randrange(10)) if rng.random() < q else background for _ in range(n)]
    every, grouping = _random_separators(rng)
    return prompt_text(op, items, every, grouping), answer_of(op, items)


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (recorded beside the weights)."""

    steps: int
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 200
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    log_every: int = 100
    seed: int = 0


def encode_batch(
    tokenizer: Any, examples: list[tuple[str, str]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids ``[batch, pos]`` and targets (-100 outside the answer)."""
    rows, targets = [], []
    for prompt, answer in examples:
        p = [tokenizer.bos_token_id, *tokenizer(prompt, add_special_tokens=False)["input_ids"]]
        a = tokenizer(answer + "\n", add_special_tokens=False)["input_ids"]
        ids = p + a
        tgt = [-100] * len(ids)
        for k in range(len(a)):
            tgt[len(p) - 1 + k] = a[k]  # the logit at position t predicts token t+1
        rows.append(ids)
        targets.append(tgt)
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    ids_t = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    tgt_t = torch.tensor([t + [-100] * (width - len(t)) for t in targets])
    return ids_t, tgt_t


def build_model(spec: ToySpec, tokenizer: Any) -> Any:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(spec.seed)
    return AutoModelForCausalLM.from_config(hf_config(spec, tokenizer), attn_implementation="eager")


def train(spec: ToySpec, cfg: TrainConfig, tokenizer: Any) -> tuple[Any, list[dict[str, float]]]:
    """Train one model; returns it and the loss curve (mean loss per ``log_every`` steps)."""
    model = build_model(spec, tokenizer).train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay}],
        lr=cfg.lr,
        betas=(0.9, 0.98),
    )

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))

    rng = random.Random(cfg.seed)
    curve: list[dict[str, float]] = []
    running, count = 0.0, 0
    for step in range(cfg.steps):
        batch = [sample_example(spec.task, rng, spec.train_len) for _ in range(cfg.batch_size)]
        ids, targets = encode_batch(tokenizer, batch)
        hidden = model.model(ids).last_hidden_state
        keep = targets != -100  # only answer positions need logits
        loss = torch.nn.functional.cross_entropy(model.lm_head(hidden[keep]), targets[keep])
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        running += loss.item()
        count += 1
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            curve.append({"step": step + 1, "loss": running / count})
            print(f"  {spec.task} step {step + 1}: loss {running / count:.4f}", flush=True)
            running, count = 0.0, 0
    return model.eval(), curve


def round_to_float16_(model: Any) -> None:
    """Round every weight to float16 in place (what ships), kept as float32."""
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(param.half().float())


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def greedy_answers(model: Any, tokenizer: Any, prompts: list[str], max_new: int = 5) -> list[str]:
    """Greedy continuation of each prompt up to the first newline (no KV cache).

    Prompts are batched by token length, so no padding enters the computation.
    """
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"][0]
    encoded = [
        [tokenizer.bos_token_id, *tokenizer(p, add_special_tokens=False)["input_ids"]]
        for p in prompts
    ]
    by_len: dict[int, list[int]] = {}
    for i, ids in enumerate(encoded):
        by_len.setdefault(len(ids), []).append(i)
    out = [""] * len(prompts)
    for indices in by_len.values():
        for start in range(0, len(indices), 256):
            chunk = indices[start : start + 256]
            ids = torch.tensor([encoded[i] for i in chunk])
            new = []
            for _ in range(max_new):
                nxt = model(ids).logits[:, -1].argmax(-1, keepdim=True)
                new.append(nxt)
                ids = torch.cat([ids, nxt], dim=1)
                if bool((torch.cat(new, dim=1) == newline).any(dim=1).all()):
                    break
            gen = torch.cat(new, dim=1).tolist()
            for i, row in zip(chunk, gen, strict=True):
                cut = row.index(newline) if newline in row else len(row)
                out[i] = tokenizer.decode(row[:cut])
    return out


CONDITIONS = {"none": (0, "left"), "comma3-left": (3, "left"), "comma3-right": (3, "right")}


def _cell(answers: list[str], truths: list[str], numeric: bool) -> dict[str, Any]:
    correct = sum(a == t for a, t in zip(answers, truths, strict=True))
    cell: dict[str, Any] = {"n": len(truths), "accuracy": round(correct / len(truths), 4)}
    if numeric:
        errors = [abs(int(a) - int(t)) for a, t in zip(answers, truths, strict=True) if a.isdigit()]
        cell["invalid"] = len(truths) - len(errors)
        cell["mean_abs_error"] = round(sum(errors) / len(errors), 3) if errors else None
    return cell


def evaluate(spec: ToySpec, model: Any, tokenizer: Any) -> dict[str, Any]:
    """Held-out tables (greedy, fresh seed): random sequences and the paper's instances."""
    rng = random.Random(EVAL_SEED)
    tables: dict[str, Any] = {}
    ops = ("C",) if spec.task == "count" else ("L", "F")
    # random held-out sequences of the training distribution's kind, by length
    for op in ops:
        for cond, (every, grouping) in CONDITIONS.items():
            prompts, truths, lengths = [], [], []
            for n in EVAL_LENGTHS:
                for _ in range(EVAL_SAMPLES):
                    if op == "C":
                        items = ["1" if rng.random() < 0.7 else "0" for _ in range(n)]
                    else:
                        items = [str(rng.randrange(10)) for _ in range(n)]
                    prompts.append(prompt_text(op, items, every, grouping))
                    truths.append(answer_of(op, items))
                    lengths.append(n)
            answers = greedy_answers(model, tokenizer, prompts)
            name = "bernoulli0.7" if op == "C" else "random-digits"
            table = {}
            for n in EVAL_LENGTHS:
                idx = [i for i, length in enumerate(lengths) if length == n]
                table[str(n)] = _cell(
                    [answers[i] for i in idx], [truths[i] for i in idx], op == "C"
                )
            tables[f"{op}/{name}/{cond}"] = table
    # the paper's structured instances, every length 1..4*L_train
    max_n = 4 * spec.train_len
    structured = (
        [("C", "ones", lambda n: ["1"] * n)]
        if spec.task == "count"
        else [
            ("L", "ones-then-0", lambda n: ["1"] * (n - 1) + ["0"]),
            ("F", "0-then-ones", lambda n: ["0"] + ["1"] * (n - 1)),
        ]
    )
    for op, name, make in structured:
        for cond, (every, grouping) in CONDITIONS.items():
            lengths = list(range(2 if op != "C" else 1, max_n + 1))
            items_list = [make(n) for n in lengths]
            prompts = [prompt_text(op, items, every, grouping) for items in items_list]
            truths = [answer_of(op, items) for items in items_list]
            answers = greedy_answers(model, tokenizer, prompts)
            wrong = [n for n, a, t in zip(lengths, answers, truths, strict=True) if a != t]
            tables[f"{op}/{name}/{cond}"] = {
                "lengths": [lengths[0], lengths[-1]],
                "answers": answers,
                "first_wrong_length": wrong[0] if wrong else None,
                "wrong_lengths": wrong,
                "accuracy_in_dist": round(
                    sum(
                        a == t
                        for n, a, t in zip(lengths, answers, truths, strict=True)
                        if n <= spec.train_len
                    )
                    / sum(1 for n in lengths if n <= spec.train_len),
                    4,
                ),
            }
    return tables


def spot_checks(spec: ToySpec, model: Any, tokenizer: Any, k: int = 12) -> list[dict[str, str]]:
    """A few in-distribution prompts with the right answer and the model's answer."""
    rng = random.Random(EVAL_SEED + 1)
    examples = [sample_example(spec.task, rng, spec.train_len) for _ in range(k)]
    answers = greedy_answers(model, tokenizer, [p for p, _ in examples])
    return [
        {"prompt": p, "answer": a, "model_answer": m}
        for (p, a), m in zip(examples, answers, strict=True)
    ]


# --------------------------------------------------------------------------- main


def setup() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def save(spec: ToySpec, model: Any, record: dict[str, Any], out: Path) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    hf_config(spec, tiny_tokenizer()).to_json_file(str(out / "config.json"))
    (out / "training.json").write_text(json.dumps(record, indent=1) + "\n")


def run_one(spec: ToySpec, cfg: TrainConfig, tokenizer: Any, full_eval: bool) -> dict[str, Any]:
    start = time.perf_counter()
    model, curve = train(spec, cfg, tokenizer)
    train_s = time.perf_counter() - start
    round_to_float16_(model)
    record: dict[str, Any] = {
        "name": spec.name,
        "spec": asdict(spec),
        "train": asdict(cfg),
        "curve": curve,
        "train_wall_s": round(train_s, 1),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "n_params": sum(p.numel() for p in model.parameters()),
    }
    if full_eval:
        t0 = time.perf_counter()
        record["spot_checks"] = spot_checks(spec, model, tokenizer)
        record["held_out"] = evaluate(spec, model, tokenizer)
        record["eval_wall_s"] = round(time.perf_counter() - t0, 1)
    else:
        record["spot_checks"] = spot_checks(spec, model, tokenizer, k=4)
    record["_model"] = model
    return record


def repro_check(tokenizer: Any) -> int:
    """Short training runs; compare the loss curves with the ones recorded in training.json."""
    failures = 0
    for spec in TOY_SPECS.values():
        recorded = json.loads((DATA / spec.name / "training.json").read_text())["repro"]
        cfg = TrainConfig(**recorded["train"])
        rec = run_one(spec, cfg, tokenizer, full_eval=False)
        got = [round(p["loss"], 4) for p in rec["curve"]]
        want = [round(p["loss"], 4) for p in recorded["curve"]]
        ok = all(abs(g - w) <= 2e-4 for g, w in zip(got, want, strict=True))
        print(f"{spec.name}: recorded {want}, now {got}: {'OK' if ok else 'MISMATCH'}")
        failures += not ok
    return failures


def _fmt(cell: dict[str, Any], numeric: bool) -> str:
    text = f"{cell['accuracy']:.2f}"
    if numeric:
        mae = cell["mean_abs_error"]
        text += f" / {mae:.2f}" if mae is not None else " / -"
    return text


def report(docs: Path) -> None:
    """Write training-curve and held-out PNGs to ``docs`` and print markdown tables."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    docs.mkdir(parents=True, exist_ok=True)
    records = {name: json.loads((DATA / name / "training.json").read_text()) for name in TOY_SPECS}
    fig, ax = plt.subplots(figsize=(5, 3))
    for name, rec in records.items():
        ax.plot([p["step"] for p in rec["curve"]], [p["loss"] for p in rec["curve"]], label=name)
    ax.set(xlabel="step", ylabel="answer-token loss", yscale="log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(docs / "training_curves.png", dpi=80)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    for cond in CONDITIONS:
        ones = records["toy-count"]["held_out"][f"C/ones/{cond}"]
        lo, _ = ones["lengths"]
        errs = [
            abs(int(a) - (lo + i)) if a.isdigit() else float("nan")
            for i, a in enumerate(ones["answers"])
        ]
        axes[0].plot(range(lo, lo + len(errs)), errs, label=cond)
    axes[0].set(xlabel="number of ones n", ylabel="|answer - n|", title="toy-count on 1…1")
    train_len = records["toy-count"]["spec"]["train_len"]
    axes[0].axvline(train_len, color="grey", ls=":")
    axes[0].legend(fontsize=7)
    held = records["toy-copy"]["held_out"]
    for key, style in (("L/ones-then-0", "-"), ("F/0-then-ones", "--")):
        for cond in CONDITIONS:
            tab = held[f"{key}/{cond}"]
            lo, hi = tab["lengths"]
            wrong = set(tab["wrong_lengths"])
            axes[1].plot(
                range(lo, hi + 1),
                [0.0 if n in wrong else 1.0 for n in range(lo, hi + 1)],
                style,
                label=f"{key[0]} {cond}",
            )
    axes[1].axvline(records["toy-copy"]["spec"]["train_len"], color="grey", ls=":")
    axes[1].set(xlabel="sequence length n", ylabel="correct (1) / wrong (0)", title="toy-copy")
    axes[1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(docs / "held_out.png", dpi=80)
    plt.close(fig)

    for name, rec in records.items():
        print(f"\n### {name}\n")
        numeric = rec["spec"]["task"] == "count"
        rows = [k for k, v in rec["held_out"].items() if "first_wrong_length" not in v]
        header = "| task / separators | " + " | ".join(str(n) for n in EVAL_LENGTHS) + " |"
        print(header + "\n|" + "---|" * (len(EVAL_LENGTHS) + 1))
        for key in rows:
            cells = [_fmt(rec["held_out"][key][str(n)], numeric) for n in EVAL_LENGTHS]
            print(f"| {key} | " + " | ".join(cells) + " |")
        print(
            "\n| structured instance / separators | first wrong n | wrong n (all) |\n|---|---|---|"
        )
        for key, tab in rec["held_out"].items():
            if "first_wrong_length" in tab:
                wrong = tab["wrong_lengths"]
                shown = ", ".join(map(str, wrong[:12])) + (" …" if len(wrong) > 12 else "")
                print(f"| {key} | {tab['first_wrong_length']} | {len(wrong)}: {shown} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(TOY_SPECS), default=None)
    parser.add_argument("--steps", type=int, default=None, help="override the spec's steps")
    parser.add_argument("--out", type=Path, default=DATA, help="parent folder of the outputs")
    parser.add_argument("--repro-check", action="store_true")
    parser.add_argument("--report", type=Path, default=None, help="write PNGs here, print tables")
    args = parser.parse_args()
    setup()
    if args.report is not None:
        report(args.report)
        return
    tokenizer = tiny_tokenizer()
    if args.repro_check:
        raise SystemExit(repro_check(tokenizer))
    for spec in TOY_SPECS.values():
        if args.only and spec.name != args.only:
            continue
        print(f"training {spec.name}", flush=True)
        t0 = time.perf_counter()
        steps = args.steps or spec.steps
        record = run_one(spec, TrainConfig(steps=steps, seed=spec.seed), tokenizer, True)
        model = record.pop("_model")
        repro_cfg = TrainConfig(steps=REPRO_STEPS, log_every=20, seed=spec.seed)
        repro = run_one(spec, repro_cfg, tokenizer, full_eval=False)
        repro.pop("_model")
        record["repro"] = {"train": asdict(repro_cfg), "curve": repro["curve"]}
        record["total_wall_s"] = round(time.perf_counter() - t0, 1)
        save(spec, model, record, args.out / spec.name)
        print(f"{spec.name}: {record['total_wall_s']} s, wrote {args.out / spec.name}")


if __name__ == "__main__":
    main()
