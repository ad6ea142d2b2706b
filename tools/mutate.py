"""Mutation testing by hand-made mutations: do the tests notice when the code is broken?

Each mutation replaces one exact snippet of ``psetae/train`` or ``psetae/models`` with a
plausible bug. The repository (its tracked and untracked, not ignored files) is copied once
into a temporary folder; each mutation is applied there, the tests are run on the copy, and
the snippet is restored, so the working tree is never touched. A mutation is *killed* when
the tests fail, *survived* when they pass; a mutation whose snippet is not found (exactly
once) is *stale*: the code changed, update the list.

For developers, not CI (it runs the test suite once per mutation, minutes in all)::

    python tools/mutate.py                 # all mutations
    python tools/mutate.py --list          # their names
    python tools/mutate.py --only tie_takes_the_last_best --only same_draws_every_epoch

Exit status: 0 when every mutation is killed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TESTS = ("tests/train", "tests/models")


@dataclass(frozen=True)
class Mutation:
    """One hand-made bug: in ``file``, ``original`` (found exactly once) becomes ``replacement``."""

    name: str
    file: str
    original: str
    replacement: str


FIT = "psetae/train/fit.py"
PSE = "psetae/models/pse.py"
TAE = "psetae/models/tae.py"

MUTATIONS: list[Mutation] = [
    # --- psetae/train: the bookkeeping bugs of issue 9, then others.
    Mutation(
        "tie_takes_the_last_best",
        FIT,
        'improved = va["miou"] > best_metric',
        'improved = va["miou"] >= best_metric',
    ),
    Mutation(
        "same_draws_every_epoch",
        FIT,
        'view.seed = epoch_seed(seed, epoch, "data") % 2**63',
        'view.seed = epoch_seed(seed, 1, "data") % 2**63',
    ),
    Mutation(
        "train_loss_not_weighted_by_batch_size",
        FIT,
        "total += float(loss.detach()) * b\n        n += b",
        "total += float(loss.detach())\n        n += 1",
    ),
    Mutation(
        "val_loss_on_the_wrong_scale",
        FIT,
        'criterion = FocalLoss(gamma=config.gamma, reduction="sum")',
        "criterion = FocalLoss(gamma=config.gamma)",
    ),
    Mutation(
        "last_weights_returned_instead_of_best",
        FIT,
        '    model.load_state_dict(best["state_dict"])\n    model.eval()',
        "    model.eval()",
    ),
    Mutation(
        "no_per_epoch_seed",
        FIT,
        'torch.manual_seed(epoch_seed(config.seed, epoch, "torch"))  # dropout',
        "pass  # dropout",
    ),
    Mutation(
        "same_order_every_epoch",
        FIT,
        'torch.Generator().manual_seed(epoch_seed(config.seed, epoch, "order"))',
        "torch.Generator().manual_seed(config.seed)",
    ),
    Mutation(
        "resume_repeats_the_last_epoch",
        FIT,
        'start = int(ckpt["epoch"]) + 1',
        'start = int(ckpt["epoch"])',
    ),
    Mutation(
        "stale_best_kept_when_starting_over",
        FIT,
        "        best_path.unlink(missing_ok=True)\n",
        "        pass\n",
    ),
    Mutation(
        "resume_ignores_a_changed_config",
        FIT,
        "if k not in _RESUMABLE_CHANGES and saved.get(k) != now.get(k)",
        "if False",
    ),
    Mutation(
        "validation_in_training_mode",
        FIT,
        "    device = device or next(model.parameters()).device\n    model.eval()\n",
        "    device = device or next(model.parameters()).device\n",
    ),
    Mutation(
        "last_batch_of_one_kept",
        FIT,
        "drop_last=shuffle and len(dataset) % config.batch_size == 1,",
        "drop_last=False,",
    ),
    Mutation(
        "model_seed_ignored",
        FIT,
        "    torch.manual_seed(config.seed)\n    return build_model(",
        "    return build_model(",
    ),
    Mutation(
        "val_stats_from_the_validation_parcels",
        "psetae/train/crossval.py",
        'shared = {"normalisation": train.normalisation, "extra_stats": train.extra_stats}',
        "shared = {}",
    ),
    Mutation(
        "kfold_val_equals_test",
        "psetae/train/splits.py",
        "v = (i + 1) % folds",
        "v = i",
    ),
    Mutation(
        "old_checkpoint_has_no_model_name",
        "psetae/train/checkpoint.py",
        '    ckpt.setdefault("model_name", DEFAULT_MODEL_NAME)\n',
        "",
    ),
    # --- psetae/models.
    Mutation(
        "mean_pooling_counts_padding",
        PSE,
        "mean = torch.bmm(m, h).squeeze(1) / n  # (N, D)",
        "mean = h.mean(dim=1)  # (N, D)",
    ),
    Mutation(
        "biased_std",
        PSE,
        "std = torch.sqrt(sq / (n - 1).clamp(min=1) + 1e-31)  # (N, D)",
        "std = torch.sqrt(sq / n.clamp(min=1) + 1e-31)  # (N, D)",
    ),
    Mutation(
        "std_gradient_reaches_padding",
        PSE,
        "            out.mul_(vc)  # zero on padded pixels\n",
        "",
    ),
    Mutation(
        "max_pooling_ignores_the_mask",
        PSE,
        'out["max"] = h.masked_fill(invalid, float("-inf")).amax(dim=1)',
        'out["max"] = h.amax(dim=1)',
    ),
    Mutation(
        "attention_not_scaled",
        TAE,
        "attention = F.softmax(scores / math.sqrt(dk), dim=2)",
        "attention = F.softmax(scores, dim=2)",
    ),
    Mutation(
        "sin_cos_swapped",
        TAE,
        "torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1)",
        "torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)",
    ),
    Mutation(
        "no_input_layernorm",
        TAE,
        "x = self.in_norm(x) + self.encoding(B, T, positions).to(x.dtype)",
        "x = x + self.encoding(B, T, positions).to(x.dtype)",
    ),
]


def _repository_files(root: Path) -> list[str]:
    """Tracked and untracked-but-not-ignored files (what a checkout of the work holds)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout
    return [p for p in out.decode().split("\0") if p and (root / p).is_file()]


def _copy_repository(root: Path, dest: Path) -> None:
    for rel in _repository_files(root):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)


def _run_tests(copy: Path, tests: list[str], timeout: float) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", *tests, "-x", "-q", "-p", "no:cacheprovider"]
    try:
        proc = subprocess.run(
            cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return -1, "timeout"
    return proc.returncode, proc.stdout + proc.stderr


def _first_failure(output: str) -> str:
    match = re.search(r"^(FAILED|ERROR) (\S+)", output, flags=re.MULTILINE)
    return match.group(2) if match else output.strip().splitlines()[-1] if output.strip() else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=None, help="run this mutation only")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--tests", nargs="+", default=list(DEFAULT_TESTS), help="what pytest runs")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per test run")
    args = parser.parse_args(argv)

    chosen = [m for m in MUTATIONS if args.only is None or m.name in args.only]
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:45s} {m.file}")
        return 0
    unknown = sorted(set(args.only or []) - {m.name for m in MUTATIONS})
    if unknown:
        parser.error(f"unknown mutations {unknown}")

    with tempfile.TemporaryDirectory(prefix="psetae-mutate-") as tmp:
        copy = Path(tmp) / "repo"
        _copy_repository(ROOT, copy)
        code, output = _run_tests(copy, args.tests, args.timeout)
        if code != 0:
            print(f"the tests fail without any mutation: {_first_failure(output)}")
            return 1
        results = []
        for m in chosen:
            path = copy / m.file
            source = path.read_text()
            if source.count(m.original) != 1:
                print(f"STALE     {m.name}: snippet found {source.count(m.original)} times")
                results.append("stale")
                continue
            path.write_text(source.replace(m.original, m.replacement))
            t0 = time.perf_counter()
            try:
                code, output = _run_tests(copy, args.tests, args.timeout)
            finally:
                path.write_text(source)  # restored whatever happened
            seconds = time.perf_counter() - t0
            status = "survived" if code == 0 else "killed"
            by = f" by {_first_failure(output)}" if code != 0 else ""
            print(f"{status.upper():9s} {m.name} ({seconds:.0f} s){by}", flush=True)
            results.append(status)

    killed, survived, stale = (results.count(s) for s in ("killed", "survived", "stale"))
    scored = killed + survived
    score = 100.0 * killed / scored if scored else 0.0
    print(
        f"mutation score: {killed}/{scored} killed ({score:.0f}%), "
        f"{survived} survived, {stale} stale"
    )
    return 0 if survived == 0 and stale == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
