"""fit()'s bookkeeping, each checked against an independent computation.

Every test here kills one hand-made bug of ``tools/mutate.py``: the best epoch taken as the
last on ties, the last weights returned instead of the best, a training loss not weighted
by batch size, a validation loss on the wrong scale, the same pixel draws every epoch.
"""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch

from psetae.data.dataset import PixelSetDataset
from psetae.data.format import read_sizes
from psetae.train.checkpoint import load_checkpoint
from psetae.train.fit import fit
from tests.train.test_fit import datasets, tiny_config, write_tiny

# The module (``psetae.train.fit`` as an attribute is the function, re-exported).
fit_module = importlib.import_module("psetae.train.fit")


@pytest.fixture(scope="module")
def crop_root(tmp_path_factory):
    return write_tiny(tmp_path_factory.mktemp("book") / "ds")


def _scripted_evaluation(monkeypatch, mious):
    """Replace fit's validation by scripted mIoUs; keep each epoch's weights as evaluated."""
    seen = []

    def evaluate(model, dataset, config, device=None, desc=""):
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        miou = mious[len(seen) - 1]
        return {"loss": 1.0, "cm": np.eye(3, dtype=np.int64), "oa": 0.5, "miou": miou}

    monkeypatch.setattr(fit_module, "evaluate_model", evaluate)
    return seen


def _same_weights(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_the_best_epoch_is_the_first_of_tied_bests_and_its_weights_are_returned(
    crop_root, tmp_path, monkeypatch
):
    # The peak (0.5) comes early, is tied at epoch 3, and is not the last epoch.
    mious = [0.2, 0.5, 0.1, 0.5, 0.3]
    seen = _scripted_evaluation(monkeypatch, mious)
    config = tiny_config(epochs=len(mious))
    result = fit(*datasets(crop_root, config), config, tmp_path / "run")

    assert result.best_epoch == 2 and result.best_metric == 0.5
    assert [r["val_miou"] for r in result.history] == mious
    best = load_checkpoint(result.best_path)
    assert best["epoch"] == 2 and best["best_epoch"] == 2
    assert _same_weights(best["state_dict"], seen[1])
    # The returned model holds epoch 2's weights, not the last epoch's (they differ).
    assert not _same_weights(seen[1], seen[-1])
    assert _same_weights(result.model.state_dict(), seen[1])
    last = load_checkpoint(result.last_path)
    assert last["epoch"] == 5 and _same_weights(last["state_dict"], seen[-1])


def test_no_defined_validation_miou_keeps_the_last_weights_not_an_older_runs(
    crop_root, tmp_path, monkeypatch
):
    # An earlier run in the same folder left a best.pt; starting over must not return it.
    earlier = tiny_config(epochs=1, seed=5)
    fit(*datasets(crop_root, earlier), earlier, tmp_path / "run")
    seen = _scripted_evaluation(monkeypatch, [math.nan, math.nan])
    config = tiny_config(epochs=2)
    result = fit(*datasets(crop_root, config), config, tmp_path / "run", resume=False)
    assert result.best_epoch == 0 and result.best_metric == -math.inf
    assert _same_weights(result.model.state_dict(), seen[-1])
    assert _same_weights(load_checkpoint(result.best_path)["state_dict"], seen[-1])


# ------------------------------------------------------------------ losses by hand


def _focal(logits: np.ndarray, label: int, gamma: float) -> float:
    p = np.exp(logits - logits.max())
    p /= p.sum()
    return float(-((1.0 - p[label]) ** gamma) * np.log(p[label]))


def test_losses_are_means_over_parcels_computed_by_hand(crop_root, tmp_path, monkeypatch):
    # Scripted logits per parcel id, so that the loss of every parcel is known in advance.
    # 10 training parcels in batches of 4 give batches of 4, 4 and 2: a mean of the batch
    # means would weigh the last two parcels double.
    rng = np.random.default_rng(3)
    ids = sorted(int(p.stem) for p in (crop_root / "DATA").glob("*.npy"))
    table = {pid: rng.normal(0.0, 2.0, 3) for pid in ids}

    def forward(model, batch):
        logits = torch.tensor(np.stack([table[int(i)] for i in batch["id"]]), dtype=torch.float32)
        anchor = next(model.parameters())
        return logits + 0.0 * anchor.sum()  # (B, K), differentiable, the weights ignored

    monkeypatch.setattr(fit_module, "_forward", forward)
    config = tiny_config(epochs=1, batch_size=4, gamma=2.0)
    train = PixelSetDataset(crop_root, "crop", npixel=6, ids=ids[:10], seed=0)
    val = PixelSetDataset(
        crop_root, "crop", npixel=6, ids=ids[10:17], train=False, extra_stats=train.extra_stats
    )
    result = fit(train, val, config, tmp_path / "run")
    record = result.history[0]

    def mean_loss(ds):
        return np.mean(
            [_focal(table[int(i)], int(y), 2.0) for i, y in zip(ds.ids, ds.labels, strict=True)]
        )

    assert record["train_loss"] == pytest.approx(mean_loss(train), rel=1e-5)
    assert record["val_loss"] == pytest.approx(mean_loss(val), rel=1e-5)


# ------------------------------------------------------------------ pixel draws


def test_each_epoch_draws_other_pixels(crop_root, tmp_path, monkeypatch):
    # Each epoch's training view is replayed in a fixed parcel order from a fresh stream
    # (``subset`` copies the view's seed, not its position in the stream), so that the draws
    # compared are those of the epoch's seed, whatever order the loader shuffles.
    drawn: list[list[torch.Tensor]] = []
    orders: list[list[int]] = []
    original = fit_module._train_one_epoch

    def recording(model, loader, *args, **kwargs):
        view = loader.dataset
        replay = view.subset(np.arange(len(view)))
        drawn.append([replay[i]["pixels"] for i in range(len(replay))])
        batches = list(loader)  # one pass: the order recorded is the order trained on
        orders.append([int(i) for batch in batches for i in batch["id"]])
        return original(model, batches, *args, **kwargs)

    monkeypatch.setattr(fit_module, "_train_one_epoch", recording)
    config = tiny_config(epochs=2, jitter=None, npixel=2)
    train, val = datasets(crop_root, config)
    fit(train, val, config, tmp_path / "run")
    sizes = read_sizes(crop_root)
    big = [k for k, pid in enumerate(train.ids) if sizes[int(pid)] > config.npixel]
    assert len(big) > 5
    changed = [k for k in big if not torch.equal(drawn[0][k], drawn[1][k])]
    # Without replacement from n > S pixels, a parcel may repeat its draw by chance, but
    # not most of them.
    assert len(changed) > len(big) // 2
    # The order of the parcels is reshuffled every epoch too.
    assert sorted(orders[0]) == sorted(orders[1]) and orders[0] != orders[1]
