"""The command line: a simulate -> train -> evaluate -> predict round trip, and bad input."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from psetae.cli import main
from psetae.data.classes import S2AGRI_CLASSES
from psetae.data.format import read_labels

TINY = '{"mlp1": [10, 8, 8], "mlp2": [20, 16], "n_head": 2, "d_k": 4, "mlp3": [32, 16]}'


def run(capsys, *argv):
    code = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    assert main(["simulate", "--preset", "test", "--parcels", "60", "--out", str(base / "a")]) == 0
    assert (
        main(
            [
                "simulate",
                "--preset",
                "test",
                "--parcels",
                "30",
                "--seed",
                "7",
                "--out",
                str(base / "b"),
            ]
        )
        == 0
    )
    return base


def test_round_trip(sim, capsys):
    capsys.readouterr()
    a, b = sim / "a", sim / "b"
    code, out, err = run(capsys, "validate", a)
    assert code == 0 and "OK" in out
    code, out, err = run(
        capsys,
        "train",
        a,
        "--out",
        sim / "cv",
        "--folds",
        "3",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--npixel",
        "8",
        "--model-config",
        TINY,
        "--device",
        "cpu",
        "--no-progress",
    )
    assert code == 0, err
    assert "fold 3: best epoch 1" in out and "overall" in out
    results = json.loads((sim / "cv" / "results.json").read_text())
    assert len(results["folds"]) == 3
    kept_a = [i for i, c in read_labels(a, "label_44class").items() if c in S2AGRI_CLASSES]
    assert results["overall"]["n"] == len(kept_a)

    # Evaluate the 3-fold ensemble on another folder, with its own labels.
    code, out, err = run(
        capsys,
        "evaluate",
        b,
        "--checkpoint",
        sim / "cv",
        "--out",
        sim / "eval.json",
        "--no-progress",
        "--device",
        "cpu",
    )
    assert code == 0, err
    metrics = json.loads((sim / "eval.json").read_text())
    labels_b = read_labels(b, "label_44class")
    kept_b = [i for i, c in labels_b.items() if c in S2AGRI_CLASSES]
    assert metrics["n"] == len(kept_b)
    assert metrics["n_skipped"] == len(labels_b) - len(kept_b)
    assert len(metrics["checkpoints"]) == 3
    assert f"OA {metrics['oa']:.4f}" in out

    # Predict with one fold's checkpoint file.
    code, out, err = run(
        capsys,
        "predict",
        b,
        "--checkpoint",
        sim / "cv" / "fold_1" / "best.pt",
        "--out",
        sim / "pred.csv",
        "--no-progress",
        "--device",
        "cpu",
    )
    assert code == 0, err
    with open(sim / "pred.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(labels_b)  # every parcel, whatever its class
    assert {int(r["class_id"]) for r in rows} <= set(S2AGRI_CLASSES)
    assert len(rows[0]) == 3 + 20
    assert sum(float(v) for k, v in rows[0].items() if k.startswith("prob_")) == pytest.approx(
        1.0, abs=1e-4
    )

    # The packed form of the folder gives the same predictions.
    code, out, err = run(capsys, "pack", b, "--out", sim / "b_packed")
    assert code == 0, err
    code, out, err = run(
        capsys,
        "predict",
        sim / "b_packed",
        "--checkpoint",
        sim / "cv" / "fold_1" / "best.pt",
        "--out",
        sim / "pred_packed.csv",
        "--no-progress",
        "--device",
        "cpu",
    )
    assert code == 0, err
    assert (sim / "pred_packed.csv").read_text() == (sim / "pred.csv").read_text()


def test_python_m_psetae_help():
    proc = subprocess.run(
        [sys.executable, "-m", "psetae", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0
    for cmd in ("simulate", "download", "validate", "pack", "train", "evaluate", "predict"):
        assert cmd in proc.stdout


@pytest.mark.parametrize(
    "cmd", ["simulate", "download", "validate", "pack", "train", "evaluate", "predict"]
)
def test_every_command_has_help(cmd, capsys):
    assert main([cmd, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: psetae {cmd}") and "--help" in out


def _one_line_error(code, err):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", "{tmp}/missing", "--out", "{tmp}/o"], "missing: no such folder"),
        (["train", "{tmp}", "--out", "{tmp}/o", "--epochs", "0"], "expected an integer >= 1"),
        (["train", "{tmp}", "--out", "{tmp}/o", "--model-config", "{{"], "not valid JSON"),
        (["train", "{tmp}", "--out", "{tmp}/o", "--model", "tea"], "invalid choice: 'tea'"),
        (
            ["train", "{tmp}", "--out", "{tmp}/o", "--folds", "3", "--split", "s.json"],
            "not allowed with argument",
        ),
        (["train", "{tmp}"], "required: --out"),
        (["predict", "{tmp}", "--out", "{tmp}/p.csv"], "required: --checkpoint"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_arguments(argv, expected, tmp_path, capsys):
    code, _, err = run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert expected in _one_line_error(code, err)


def test_bad_files_give_one_line(sim, tmp_path, capsys):
    a = sim / "a"
    (tmp_path / "split.json").write_text('{"train": [1], "val": ')
    code, _, err = run(
        capsys,
        "train",
        a,
        "--out",
        tmp_path / "o",
        "--split",
        tmp_path / "split.json",
        "--no-progress",
    )
    assert "split.json: not valid JSON" in _one_line_error(code, err)

    (tmp_path / "c.pt").write_bytes(b"garbage")
    code, _, err = run(
        capsys,
        "predict",
        a,
        "--checkpoint",
        tmp_path / "c.pt",
        "--out",
        tmp_path / "p.csv",
        "--no-progress",
    )
    assert "c.pt: not a readable checkpoint" in _one_line_error(code, err)

    code, _, err = run(capsys, "evaluate", a, "--checkpoint", tmp_path / "none.pt")
    assert "none.pt: no such checkpoint" in _one_line_error(code, err)

    code, _, err = run(capsys, "train", tmp_path, "--out", tmp_path / "o", "--no-progress")
    assert "psetae train: error:" in _one_line_error(code, err)

    code, _, err = run(capsys, "simulate", "--preset", "test", "--out", a)
    assert "exists" in _one_line_error(code, err)


def test_validate_reports_problems(tmp_path, capsys):
    code, out, err = run(capsys, "validate", tmp_path / "nothing")
    assert "nothing: no such folder" in _one_line_error(code, err)
    (tmp_path / "broken" / "META").mkdir(parents=True)
    code, out, err = run(capsys, "validate", tmp_path / "broken")
    assert code == 1 and "INVALID" in out


def test_simulate_twice_is_a_no_op_and_other_parameters_are_refused(tmp_path, capsys):
    out = tmp_path / "sim"
    args = ["simulate", "--preset", "test", "--parcels", "30", "--out", str(out)]
    assert main(args) == 0
    stamp = (out / "META" / "labels.json").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "META" / "labels.json").stat().st_mtime_ns == stamp
    capsys.readouterr()
    assert main(["simulate", "--preset", "test", "--parcels", "31", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "other parameters" in err and "Traceback" not in err


# ------------------------------------------------------------------ input checked before writing


def _break_parcel(root, kind):
    """Replace parcel 12 of the tiny dataset by an array the training would refuse."""
    path = root / "DATA" / "12.npy"
    x = np.load(path)
    if kind == "object":
        np.save(path, np.array(x.tolist(), dtype=object), allow_pickle=True)
    elif kind == "string":
        np.save(path, x.astype(str))
    else:
        bad = x.astype(np.float32)
        bad[0, 0, 0] = np.nan
        np.save(path, bad)
    return path


@pytest.mark.parametrize("kind", ["object", "string", "nan"])
def test_train_refuses_a_bad_array_before_writing_anything(tiny_root, tmp_path, kind, capsys):
    bad = _break_parcel(tiny_root, kind)
    out = tmp_path / "run"
    code, _, err = run(capsys, "train", tiny_root, "--out", out, "--epochs", "1", "--no-progress")
    line = _one_line_error(code, err)
    assert str(bad) in line and line.startswith("psetae train: error:")
    assert not out.exists()


@pytest.mark.parametrize("kind", ["object", "nan"])
def test_predict_and_evaluate_refuse_a_bad_array_before_writing(sim, tmp_path, kind, capsys):
    folder = tmp_path / "b"
    shutil.copytree(sim / "b", folder)
    ids = sorted(int(p.stem) for p in (folder / "DATA").glob("*.npy"))
    bad = folder / "DATA" / f"{ids[0]}.npy"
    x = np.load(bad).astype(np.float32)
    x[0, 0, 0] = np.nan
    np.save(bad, x if kind == "nan" else np.array(x.tolist(), dtype=object), allow_pickle=True)
    ckpt = _a_checkpoint(sim, tmp_path)
    capsys.readouterr()  # what training said
    out = tmp_path / "new" / "pred.csv"
    code, _, err = run(capsys, "predict", folder, "--checkpoint", ckpt, "--out", out)
    assert str(bad) in _one_line_error(code, err)
    assert not out.parent.exists()
    out = tmp_path / "new" / "metrics.json"
    code, _, err = run(capsys, "evaluate", folder, "--checkpoint", ckpt, "--out", out)
    assert str(bad) in _one_line_error(code, err)
    assert not out.parent.exists()


def _a_checkpoint(sim, tmp_path):
    """A one-epoch checkpoint trained on the simulated folder 'a'."""
    from psetae.train.crossval import cross_validate
    from psetae.train.fit import TrainConfig
    from tests.tiny import TINY_MODEL

    model = {**TINY_MODEL, "mlp1": [10, 8, 8]}
    config = TrainConfig(
        epochs=1, batch_size=16, npixel=4, device="cpu", progress=False, model=model
    )
    return cross_validate(sim / "a", tmp_path / "cv", folds=3, config=config).checkpoints[0]


def test_a_bad_normalisation_file_is_refused_before_writing(tiny_root, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run(
        capsys, "train", tiny_root, "--out", out, "--normalisation", tmp_path / "none.json"
    )
    assert "none.json: normalisation file not found" in _one_line_error(code, err)
    assert not out.exists()


# ------------------------------------------------------------------ errors: user's or bugs


def test_a_psetae_error_is_one_line_and_any_other_exception_keeps_its_traceback(
    tiny_root, tmp_path, monkeypatch, capsys
):
    import psetae.train.crossval as crossval
    from psetae.errors import PsetaeError

    def user_error(*args, **kwargs):
        raise PsetaeError("x.json: something the user can fix\nsecond line")

    monkeypatch.setattr(crossval, "cross_validate", user_error)
    code, _, err = run(capsys, "train", tiny_root, "--out", tmp_path / "o")
    assert _one_line_error(code, err) == (
        "psetae train: error: x.json: something the user can fix (and 1 more lines)"
    )
    for bug in (ValueError("a bug"), OSError("a bug"), KeyError("a bug")):

        def raise_bug(*args, bug=bug, **kwargs):
            raise bug

        monkeypatch.setattr(crossval, "cross_validate", raise_bug)
        with pytest.raises(type(bug), match="a bug"):
            main(["train", str(tiny_root), "--out", str(tmp_path / "o")])


# ------------------------------------------------------------------ logs


def test_train_without_progress_prints_one_line_per_epoch(sim, tmp_path, capsys):
    capsys.readouterr()
    code, out, err = run(
        capsys,
        "train",
        sim / "a",
        "--out",
        tmp_path / "cv",
        "--folds",
        "3",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--npixel",
        "4",
        "--model-config",
        TINY,
        "--device",
        "cpu",
        "--no-progress",
    )
    assert code == 0, err
    lines = [line for line in out.splitlines() if re.match(r"fold \d/3 epoch ", line)]
    assert len(lines) == 3 * 2
    history = json.loads((tmp_path / "cv" / "fold_2" / "history.json").read_text())
    r = history[1]
    assert lines[3].startswith(
        f"fold 2/3 epoch 2/2: train loss {r['train_loss']:.4f}, val loss {r['val_loss']:.4f}, "
        f"val OA {r['val_oa']:.4f}, val mIoU {r['val_miou']:.4f} ("
    )
    assert lines[3].endswith(" s)")
    assert "\r" not in err  # no progress bar drawn


def test_sizes_command_writes_what_the_message_for_a_missing_file_names(tiny_root, capsys):
    import json as _json

    from psetae.data.format import SIZES_COMMAND

    sizes = tiny_root / "META" / "sizes.json"
    expected = _json.loads(sizes.read_text())
    sizes.unlink()
    assert main(["validate", str(tiny_root)]) != 0
    said = capsys.readouterr()
    assert f"{SIZES_COMMAND} {tiny_root}" in said.out + said.err
    assert SIZES_COMMAND == "psetae sizes"
    assert main(["sizes", str(tiny_root)]) == 0
    assert _json.loads(sizes.read_text()) == expected
