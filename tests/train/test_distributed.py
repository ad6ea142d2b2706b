"""Training on several processes (torchrun, gloo, CPU): tests/train/dist_worker.py does the work
in two processes and reports; the tests compare with one process run here.

Each torchrun job takes about 10 s on a quiet machine (two processes importing torch).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from psetae.train import distributed
from psetae.train.fit import (
    _local_batch,
    epoch_seed,
    evaluate_distributed,
    evaluate_model,
)
from tests.test_predict import write_crops
from tests.tiny import TINY_MODEL
from tests.train import dist_worker

REPO = Path(__file__).resolve().parents[2]


def torchrun(mode: str, root: Path, out: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = str(REPO)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [str(REPO / "tests" / "train" / "dist_worker.py"), mode, str(root), str(out)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_crops(tmp_path_factory.mktemp("dist") / "data", n=50)


@pytest.fixture(scope="module")
def job(data, tmp_path_factory):
    """One torchrun job of 2 processes running every check; the reports of both ranks."""
    out = tmp_path_factory.mktemp("job")
    done = torchrun("checks", data, out)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [json.loads((out / f"report_{r}.json").read_text()) for r in (0, 1)]
    return out, reports


def test_the_ranks_form_one_group_and_hold_the_same_weights_after_every_step(job):
    _, reports = job
    assert [r["world_size"] for r in reports] == [2, 2]
    # 2 epochs of 24 parcels in global batches of 8: 6 steps, weights compared after each.
    diffs = reports[0]["rank_diffs"]
    assert len(diffs) == 6 and max(diffs) == 0.0
    assert min(reports[0]["moved"][1:]) > 0  # the weights did change at every step


def test_the_ranks_batches_together_are_the_global_batch_of_one_process(job):
    _, reports = job
    ids = np.array(dist_worker.TRAIN_IDS)
    for epoch in (1, 2):
        # The order of one process: a permutation seeded by (seed, epoch), cut in batches of 8
        # (torch's DistributedSampler seeds its permutation with seed + epoch).
        g = torch.Generator().manual_seed(epoch_seed(0, 0, "order") + epoch)
        order = ids[torch.randperm(len(ids), generator=g).numpy()]
        for j in range(3):
            step = 3 * (epoch - 1) + j
            union = reports[0]["seen"][step] + reports[1]["seen"][step]
            assert sorted(union) == sorted(order[8 * j : 8 * j + 8].tolist())
            assert not set(reports[0]["seen"][step]) & set(reports[1]["seen"][step])


def test_one_step_of_two_processes_equals_one_step_of_one(job, data, tmp_path, monkeypatch):
    """BatchNorm in eval mode (running statistics, so each parcel's output does not depend on
    the others of its batch) and no dropout; one Adam step. Adam's first step is
    lr * g / (|g| + eps), which turns float-order noise on a near-zero gradient into a full
    step: the gradients are compared everywhere, the weights where |g| > 1e-5."""
    out, _ = job
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    alone = dist_worker.one_step(data, tmp_path)
    ddp = torch.load(out / "one_step_ddp.pt", weights_only=True)
    torch.testing.assert_close(ddp["grad"], alone["grad"], rtol=1e-4, atol=1e-6)
    assert float(alone["grad"].abs().max()) > 1e-3
    clear = alone["grad"].abs() > 1e-5
    assert clear.float().mean() > 0.5
    torch.testing.assert_close(ddp["weights"][clear], alone["weights"][clear], rtol=0, atol=1e-6)


def test_only_rank_0_writes(job):
    out, reports = job
    assert reports[1]["writes"] == []
    names = {Path(p).name for p in reports[0]["writes"]}
    assert names == {"best.pt", "last.pt", "history.json"}
    assert sorted(p.name for p in (out / "full").iterdir()) == [
        "best.pt",
        "history.json",
        "last.pt",
    ]


def test_validation_metrics_equal_one_process_on_an_uneven_split(job):
    _, reports = job
    for r in reports:
        v = r["val"]
        assert np.sum(v["shared_cm"]) == len(dist_worker.VAL_IDS) == 13  # 7 + 6, none twice
        assert v["shared_cm"] == v["alone_cm"]
        assert v["shared_loss"] == pytest.approx(v["alone_loss"], rel=1e-6)
    assert reports[0]["val"]["history_last"] == {
        **reports[1]["val"]["history_last"],
        "seconds": reports[0]["val"]["history_last"]["seconds"],
    }


def test_a_resumed_distributed_run_equals_an_uninterrupted_one(job):
    _, reports = job
    assert reports[0]["resumed_epochs"] == 2
    assert reports[0]["resume_max_diff"] == 0.0
    assert reports[0]["resume_history_equal"]


def test_a_rank_that_stops_answering_fails_the_job_on_the_timeout(data, tmp_path):
    t0 = time.monotonic()
    done = torchrun("hang", data, tmp_path, timeout=250)
    elapsed = time.monotonic() - t0
    assert done.returncode != 0
    # Rank 0 gives up after the 5 s timeout of its collective, long before rank 1's 300 s
    # (about 15 s in all on a quiet machine; the bound leaves room for a loaded one).
    assert elapsed < 150
    assert "timed out" in done.stderr.lower() or "timeout" in done.stderr.lower()
    assert "rank      : 0" in done.stderr  # torchrun names the rank that failed first


# ----------------------------------------------------------------------------- one process


def test_the_batch_must_split_evenly_over_the_ranks():
    two = distributed.Distributed(rank=1, world_size=2, local_world_size=2)
    assert _local_batch(two, 8) == 4
    with pytest.raises(distributed.DistributedError, match="not divisible by the 2 processes"):
        _local_batch(two, 7)
    with pytest.raises(distributed.DistributedError, match="1 parcel per process"):
        _local_batch(two, 2)
    assert _local_batch(distributed.Distributed(), 7) == 7


def test_alone_the_distributed_evaluation_is_the_plain_one(data):
    from psetae.train.fit import init_model

    train, val = dist_worker.datasets(data, dist_worker.TRAIN_IDS)
    cfg = dist_worker.config()
    model = init_model(train, cfg).eval()
    a = evaluate_distributed(model, val, cfg, torch.device("cpu"))
    b = evaluate_model(model, val, cfg, torch.device("cpu"))
    assert a["cm"].tolist() == b["cm"].tolist() and a["loss"] == b["loss"]
    assert a["cm"].sum() == len(val)


def test_each_rank_takes_its_share_of_the_cores(monkeypatch):
    """The CLI sets torch's threads to the cores divided by torchrun's LOCAL_WORLD_SIZE."""
    import psetae.cli as cli

    got = []
    monkeypatch.setattr(torch, "set_num_threads", got.append)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(cli, "_cmd_predict", lambda args: 0)
    argv = ["predict", ".", "--checkpoint", "x.pt", "--out", "p.csv"]
    for ranks in ("1", "2", "3"):
        monkeypatch.setenv("LOCAL_WORLD_SIZE", ranks)
        assert cli.main(argv) == 0
    assert cli.main([*argv, "--threads", "3"]) == 0
    assert got == [8, 4, 2, 3]


def test_the_cli_passes_compile_and_the_distributed_options_down(data, monkeypatch, tmp_path):
    import psetae.cli as cli
    import psetae.predict as predict_module
    import psetae.train.crossval as crossval

    calls = {}

    def record(name, value):
        def fake(*args, **kwargs):
            calls[name] = kwargs
            return value

        return fake

    monkeypatch.setattr(predict_module, "predict_csv", record("predict", 0))
    cli.main(["predict", str(data), "--checkpoint", "x.pt", "--out", "p.csv", "--compile"])
    assert calls["predict"]["compile"] is True
    monkeypatch.setattr(crossval, "cross_validate", record("train", None))
    argv = ["train", str(data), "--out", str(tmp_path / "o"), "--nomenclature", "crop"]
    try:
        cli.main([*argv, "--no-sync-batchnorm", "--dist-timeout", "7"])
    except AttributeError:  # the fake returns no result to print
        pass
    assert calls["train"]["sync_batchnorm"] is False and calls["train"]["compile"] is False
    assert calls["train"]["dist_timeout_s"] == 7.0


def test_torchrun_runs_the_train_command_unchanged(data, tmp_path):
    """``torchrun ... -m psetae train`` with the one-process command's options: one job,
    rank 0 alone prints and writes the results."""
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": list(range(10, 34)), "val": list(range(34, 50))}))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = str(REPO)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "psetae", "train", str(data), "--out", str(tmp_path / "run")]
    cmd += ["--split", str(split), "--nomenclature", "crop", "--classes", "all"]
    cmd += ["--epochs", "1", "--batch-size", "8", "--npixel", "12", "--device", "cpu"]
    cmd += ["--model-config", json.dumps(TINY_MODEL), "--no-progress"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("results: ") == 1
    assert done.stdout.count("epoch 1/1: train loss") == 1
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["folds"][0]["n_val"] == 16
    assert (tmp_path / "run" / "fold_1" / "best.pt").is_file()
