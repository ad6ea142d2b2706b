"""Tests of psetae.data.simulate: format, determinism, realism checks, atomicity, idempotence."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from psetae.data import simulate as sim_mod
from psetae.data.classes import S2AGRI_CLASS_NAMES, S2AGRI_CLASSES
from psetae.data.format import (
    load_normalisation,
    read_dates,
    read_geomfeat,
    read_labels,
    read_sizes,
)
from psetae.data.simulate import (
    CLASS_SPECS,
    LABEL_19CLASS_NAMES,
    PRESETS,
    SimulationConfig,
    simulate_arrays,
    simulate_s2agri,
)

T, C = 24, 10
B2, B3, B4, B8 = 0, 1, 2, 6  # channel positions in BANDS


@pytest.fixture(scope="module")
def sim():
    return simulate_arrays(PRESETS["test"])


@pytest.fixture(scope="module")
def root(tmp_path_factory, sim):
    return simulate_s2agri(tmp_path_factory.mktemp("sim") / "s2agri-sim", preset="test")


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _ndvi(a: np.ndarray) -> np.ndarray:
    """Per-date NDVI of the parcel-mean spectrum of an array (T, C, n)."""
    m = a.astype(np.float64).mean(axis=2)
    return (m[:, B8] - m[:, B4]) / (m[:, B8] + m[:, B4])


def _mean_clean_ndvi(sim, class_ids) -> np.ndarray:
    """(T,) mean NDVI over the parcels of these classes, ignoring cloudy or shadowed dates."""
    rows = []
    for k in np.flatnonzero(np.isin(sim.label_44class, class_ids) & (sim.sizes > 0)):
        v = _ndvi(sim.pixels[int(sim.ids[k])])
        v[(sim.cloud[k] > 0) | (sim.shadow[k] > 0)] = np.nan
        rows.append(v)
    assert len(rows) >= 5, f"too few parcels of {class_ids} in the test preset"
    with warnings.catch_warnings():  # a date cloudy for every parcel of the class is NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.array(rows), axis=0)


def _day_of_year(dates) -> np.ndarray:
    return np.array([dt.datetime.strptime(str(d), "%Y%m%d").timetuple().tm_yday for d in dates])


# --------------------------------------------------------------------------- format


def test_files_shapes_dtypes_and_ids_agree(root, sim):
    meta = root / "META"
    for name in ("labels.json", "dates.json", "geomfeat.json", "sizes.json", "simulation.json"):
        assert (meta / name).is_file(), name
    ids = sorted(int(p.stem) for p in (root / "DATA").glob("*.npy"))
    assert len(ids) == PRESETS["test"].n_parcels
    sizes = read_sizes(root)
    geom = read_geomfeat(root)
    labels = {n: read_labels(root, n) for n in ("label_44class", "label_19class")}
    assert sorted(sizes) == ids and sorted(geom) == ids
    assert all(sorted(m) == ids for m in labels.values())
    for pid in ids:
        a = np.load(root / "DATA" / f"{pid}.npy", allow_pickle=False)
        assert a.dtype == np.int16 and a.shape == (T, C, sizes[pid])
        np.testing.assert_array_equal(a, sim.pixels[pid])  # files hold the in-memory simulation
    assert all(len(f) == 4 for f in geom.values())
    # dates.json has keys "0".."23", what the reference code reads
    assert list(json.loads((meta / "dates.json").read_text())) == [str(i) for i in range(T)]


def test_label_nomenclatures(root):
    l44 = read_labels(root, "label_44class")
    l19 = read_labels(root, "label_19class")
    present = set(l44.values())
    assert set(S2AGRI_CLASSES) <= present  # the paper's 20 classes all exist
    assert present - set(S2AGRI_CLASSES), "no class that the 20-class selection drops"
    # label_19class is a coarser grouping: a function of label_44class, onto 0..18
    group = {}
    for pid, c in l44.items():
        assert group.setdefault(c, l19[pid]) == l19[pid], f"44-class {c} split over groups"
    assert set(l19.values()) <= set(range(19)) and len(set(l19.values())) < len(present)
    assert len(LABEL_19CLASS_NAMES) == 19
    assert group[3] == group[6] == group[9]  # winter durum wheat, winter cereal, cereal


def test_names_of_the_20_classes_match_the_package():
    names = {s.id: s.name for s in CLASS_SPECS}
    assert [names[i] for i in S2AGRI_CLASSES] == S2AGRI_CLASS_NAMES


def test_normalisation_is_per_date_and_channel_of_all_pixels(root, sim):
    mean, std = load_normalisation(root / "normalisation.json")
    assert mean.shape == std.shape == (T, C)
    allpix = np.concatenate([a for a in sim.pixels.values()], axis=2).astype(np.float64)
    np.testing.assert_allclose(mean, allpix.mean(axis=2), rtol=1e-5)
    np.testing.assert_allclose(std, allpix.std(axis=2), rtol=1e-4)
    pm, ps = load_normalisation(root / "normalisation.pkl")  # the reference's pickle
    np.testing.assert_allclose(pm, mean)
    np.testing.assert_allclose(ps, std)


def test_simulation_record(root):
    rec = json.loads((root / "META" / "simulation.json").read_text())
    assert rec["config"] == PRESETS["test"].to_dict()
    assert rec["simulator_version"] == sim_mod.SIMULATOR_VERSION
    assert rec["bands"] == ["B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"]
    assert "not S2-Agri" in rec["note"]


def test_cloud_record_matches_the_truth(root, sim):
    rec = json.loads((root / "META" / "simulation_clouds.json").read_text())
    for kind, share in (("cloud", sim.cloud), ("shadow", sim.shadow)):
        want = {
            str(int(pid)): np.flatnonzero(share[k] > 0).tolist()
            for k, pid in enumerate(sim.ids)
            if (share[k] > 0).any()
        }
        assert rec[kind] == want


def test_the_package_reader_and_validator_accept_it(root):
    validate = pytest.importorskip("psetae.data.validate")
    report = validate.validate_dataset(root)
    assert report.ok, str(report)
    dataset = pytest.importorskip("psetae.data.dataset")
    ds = dataset.PixelSetDataset(
        root, classes=S2AGRI_CLASSES, normalisation=root / "normalisation.json", train=False
    )
    item = ds[0]
    assert tuple(item["pixels"].shape) == (T, C, 64)
    assert np.isfinite(item["pixels"].numpy()).all()
    assert 0 <= int(item["label"]) < 20


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_other_seed_other_data(tmp_path, root):
    again = simulate_s2agri(tmp_path / "again", preset="test")
    assert _digest(again) == _digest(root)
    other = simulate_s2agri(tmp_path / "other", preset="test", seed=1)
    a, b = _digest(other), _digest(root)
    data_a = {k for k in a if k.startswith("DATA")}
    data_b = {k for k in b if k.startswith("DATA")}
    common = data_a & data_b
    assert data_a != data_b or any(a[k] != b[k] for k in common)
    assert sum(a[k] == b[k] for k in common) < 0.05 * max(len(common), 1)


# --------------------------------------------------------------------------- realism


def test_class_distribution_is_long_tailed(sim):
    _, counts = np.unique(sim.label_44class, return_counts=True)
    share = np.sort(counts)[::-1] / counts.sum()
    assert share[:3].sum() > 0.5  # a few classes hold most parcels
    assert share[0] > 20 * share[-1]
    paper = np.isin(sim.label_44class, S2AGRI_CLASSES)
    assert 0.95 < paper.mean() < 1.0  # the dropped classes are rare
    # the rarest of the 20 classes holds about half a percent, as in S2-Agri
    shares = np.array([s.share for s in CLASS_SPECS])
    counts = sim_mod._class_quotas(4000, shares)
    assert counts.sum() == 4000 and counts.min() >= 1
    of_20 = [c for c, s in zip(counts, CLASS_SPECS, strict=True) if s.id in S2AGRI_CLASSES]
    assert 0.003 < min(of_20) / 4000 < 0.008


def dataclass_replace(cfg: SimulationConfig, **kw) -> SimulationConfig:
    import dataclasses

    return dataclasses.replace(cfg, **kw)


def test_parcel_sizes_span_a_few_to_hundreds_of_pixels(sim):
    sizes = sim.sizes
    assert (sizes == 0).sum() >= 1  # empty parcels exist, like in the real set
    assert ((sizes > 0) & (sizes <= 5)).sum() >= 1  # a handful of pixels
    assert (sizes < 64).sum() > 0.3 * len(sizes)
    assert (sizes > 64).sum() >= 10
    assert sizes.max() >= 150
    book = PRESETS["book"]  # the book's sizes go up to several hundred pixels
    assert book.max_pixels >= 500 and book.size_median < 64


def test_dates_increase_with_irregular_gaps(root):
    dates = read_dates(root)
    assert len(dates) == T and all(str(d).startswith("2017") for d in dates)
    days = np.array([dt.datetime.strptime(str(d), "%Y%m%d").toordinal() for d in dates])
    gaps = np.diff(days)
    assert (gaps > 0).all()
    assert len(set(gaps.tolist())) >= 3  # irregular
    assert 250 <= days[-1] - days[0] <= 330  # positions 0 .. ~300 like S2-Agri


def test_geometric_features_agree_with_sizes():
    cfg = dataclass_replace(PRESETS["test"], n_parcels=2000)
    s = simulate_arrays(cfg)
    perim, area, ratio, cover = s.geomfeat.T
    n = s.sizes
    np.testing.assert_allclose(ratio, perim / area, rtol=1e-12)
    area_px, perim_px = area / 100.0, perim / 10.0  # 10 m pixels
    full = n > 0
    # lattice points in a convex shape: the area up to about half the perimeter
    assert np.all(np.abs(n[full] - area_px[full]) <= 0.5 * perim_px[full] + 2)
    big = n > 100
    assert np.median(np.abs(n[big] / area_px[big] - 1)) < 0.05
    assert np.all(perim_px >= 4 * np.sqrt(area_px) - 1e-9)  # a square is the most compact
    assert np.all((cover[full] > 0) & (cover[full] <= 1)) and np.all(cover[~full] == 0)
    # an axis-aligned rectangle covers its bounding box, a rotated one does not
    assert cover[big].max() > 0.9 and cover[big].min() < 0.7


def test_rasterisation_of_hand_drawn_shapes():
    # a 4 x 4 pixel square and a diamond |x| + |y| <= 2.2 (13 lattice points, box 5 x 5)
    square = np.array([[[0.5, 0.5], [4.5, 0.5], [4.5, 4.5], [0.5, 4.5]]])
    diamond = np.array([[[0.0, -2.2], [2.2, 0.0], [0.0, 2.2], [-2.2, 0.0]]])
    poly = np.concatenate([square, diamond])
    raster = sim_mod._rasterise(poly)
    assert raster["sizes"].tolist() == [16, 13]
    sq = raster["parcel"] == 0
    assert raster["border"][sq].sum() == 12  # 4 interior pixels
    assert raster["border"][~sq].sum() == 8  # all but the centre and its 4 neighbours
    geom = sim_mod._geomfeat(poly, raster)
    np.testing.assert_allclose(geom[0], [160.0, 1600.0, 0.1, 1.0])
    d = 4 * 2.2 * np.sqrt(2)
    np.testing.assert_allclose(
        geom[1], [10 * d, 100 * 2 * 2.2**2, 10 * d / (200 * 2.2**2), 13 / 25]
    )


def test_phenology_winter_and_summer_crops(sim):
    doy = _day_of_year(sim.dates)
    summer = _mean_clean_ndvi(sim, [5, 16, 18])  # maize, sunflower, soy
    winter = _mean_clean_ndvi(sim, [3, 6, 9])  # winter cereals
    assert 170 <= doy[np.nanargmax(summer)] <= 245  # July-August
    assert 80 <= doy[np.nanargmax(winter)] <= 150  # April-May
    assert np.nanmax(summer) > 0.6 and np.nanmax(winter) > 0.6
    # summer crops are bare in spring, winter cereals bare after the July harvest
    spring = (doy >= 80) & (doy <= 130)
    august = (doy >= 200) & (doy <= 240)
    assert np.nanmean(summer[spring]) < np.nanmean(winter[spring]) - 0.2
    assert np.nanmean(winter[august]) < np.nanmean(summer[august]) - 0.2


def test_phenology_forest_and_non_agricultural(sim):
    doy = _day_of_year(sim.dates)
    wood = _mean_clean_ndvi(sim, [39])
    nonag = _mean_clean_ndvi(sim, [36])
    season = (doy >= 120) & (doy <= 270)
    assert np.nanmin(wood) > 0.45 and np.nanmin(wood[season]) > 0.6
    assert np.nanmax(nonag) < 0.45 and np.nanmean(nonag) < 0.4
    assert np.nanmin(wood - nonag) > 0.15 and np.nanmin(wood[season] - nonag[season]) > 0.25


def _mean_clean_yellowness(sim, class_ids) -> np.ndarray:
    """(T,) mean (B3 + B4) / B8 over clean dates: high for yellow flowers, low for green leaves."""
    rows = []
    for k in np.flatnonzero(np.isin(sim.label_44class, class_ids) & (sim.sizes > 0)):
        m = sim.pixels[int(sim.ids[k])].astype(float).mean(2)  # (T, C)
        r = (m[:, B3] + m[:, B4]) / m[:, B8]
        r[(sim.cloud[k] > 0) | (sim.shadow[k] > 0)] = np.nan
        rows.append(r)
    with warnings.catch_warnings():  # a date cloudy for every parcel of the class is NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.array(rows), axis=0)


def test_rapeseed_turns_yellow_in_april(sim):
    doy = _day_of_year(sim.dates)
    rapeseed = _mean_clean_yellowness(sim, [14])
    cereal = _mean_clean_yellowness(sim, [3, 6, 9])
    bloom = np.argmin(np.abs(doy - 110))  # mid April
    before = np.argmin(np.abs(doy - 80))  # late March, green rosettes
    assert rapeseed[bloom] > 1.3 * cereal[bloom]  # two dense canopies, one yellow
    assert rapeseed[bloom] > 1.25 * rapeseed[before]


def test_clouds_raise_visible_reflectance_and_shadows_darken(sim):
    up, down = [], []
    for k in range(len(sim.ids)):
        if sim.sizes[k] == 0:
            continue
        m = sim.pixels[int(sim.ids[k])].astype(float).mean(2)  # (T, C)
        clean = (sim.cloud[k] == 0) & (sim.shadow[k] == 0)
        for t in np.flatnonzero(sim.cloud[k] == 1):
            nearest = np.flatnonzero(clean)[np.argmin(np.abs(np.flatnonzero(clean) - t))]
            up.append(m[t, B2] - m[nearest, B2])
        for t in np.flatnonzero(sim.shadow[k] == 1):
            nearest = np.flatnonzero(clean)[np.argmin(np.abs(np.flatnonzero(clean) - t))]
            down.append(m[t, B8] - m[nearest, B8])
    assert len(up) >= 50 and len(down) >= 10
    assert np.mean(np.array(up) > 0) > 0.95 and np.median(up) > 1000  # +0.1 reflectance
    assert np.mean(np.array(down) < 0) > 0.9


def test_cloudy_acquisitions_touch_many_parcels_at_once(sim):
    touched = ((sim.cloud > 0) | (sim.shadow > 0)).mean(axis=0)  # (T,)
    assert touched.max() > 0.15  # a cloudy date
    assert np.median(touched) < 0.1  # most dates are clear for most parcels
    assert (touched > 0).sum() >= T - 2  # scattered contamination on other dates


def test_within_parcel_heterogeneity(sim):
    big = np.flatnonzero(sim.sizes > 50)
    cv = []
    for k in big:
        a = sim.pixels[int(sim.ids[k])].astype(float)
        clean = np.flatnonzero((sim.cloud[k] == 0) & (sim.shadow[k] == 0))
        cv.append(np.median(a[clean, B8].std(1) / a[clean, B8].mean(1)))
    assert 0.02 < np.median(cv) < 0.3  # pixels differ, but a parcel is still one field


# --------------------------------------------------------------------------- writing rules


def test_failure_midway_leaves_no_dataset(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_save = np.save

    def flaky_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 50:
            raise OSError("disk full (simulated)")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(np, "save", flaky_save)
    with pytest.raises(OSError, match="disk full"):
        simulate_s2agri(tmp_path / "sim", preset="test")
    assert not (tmp_path / "sim").exists()
    assert list(tmp_path.iterdir()) == []  # no half-written folder left behind either


def test_exist_ok_returns_at_once_with_same_parameters(root, monkeypatch):
    before = _digest(root)

    def boom(*args, **kwargs):
        raise AssertionError("simulated again")

    monkeypatch.setattr(sim_mod, "simulate_blocks", boom)
    assert simulate_s2agri(root, preset="test", exist_ok=True) == root
    assert _digest(root) == before


def test_existing_folder_with_other_parameters_is_refused(root):
    with pytest.raises(FileExistsError, match="seed"):
        simulate_s2agri(root, preset="test", seed=7, exist_ok=True)
    with pytest.raises(FileExistsError, match="n_parcels"):
        simulate_s2agri(root, preset="test", n_parcels=10, exist_ok=True)
    with pytest.raises(FileExistsError, match="exists"):
        simulate_s2agri(root, preset="test")


def test_existing_folder_that_is_not_a_simulation_is_refused(tmp_path):
    (tmp_path / "x" / "META").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="not a simulated dataset"):
        simulate_s2agri(tmp_path / "x", preset="test", exist_ok=True)


def test_overwrite_replaces(tmp_path):
    target = simulate_s2agri(tmp_path / "s", preset="test", n_parcels=30)
    simulate_s2agri(target, preset="test", n_parcels=40, overwrite=True)
    assert len(read_sizes(target)) == 40


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="preset"):
        SimulationConfig.from_preset("huge")
    with pytest.raises(ValueError, match="increasing"):
        SimulationConfig(dates=(20170301, 20170201))
    with pytest.raises(ValueError, match="YYYYMMDD"):
        SimulationConfig(dates=(2017031, 20170401))
    with pytest.raises(ValueError, match="n_parcels"):
        SimulationConfig(n_parcels=0)
    with pytest.raises(ValueError, match="shadow_share"):
        SimulationConfig(shadow_share=1.5)
    with pytest.raises(ValueError, match="label_noise"):
        SimulationConfig(label_noise=1.5)
    with pytest.raises(ValueError, match="phenology_shift"):
        SimulationConfig(phenology_shift=-1.0)
    with pytest.raises(ValueError, match="heterogeneity"):
        SimulationConfig(heterogeneity=float("nan"))


def test_few_parcels_still_work(tmp_path):
    s = simulate_arrays(SimulationConfig(n_parcels=3, seed=5))
    assert len(s.pixels) == 3 and all(a.shape[:2] == (T, C) for a in s.pixels.values())


# --------------------------------------------------------------------------- features and switches
# Each feature of the simulation has a parameter that turns it off; these tests check that the
# feature is there when on and gone when off. The random draws do not depend on the switches,
# so two runs that differ by one switch differ only where that feature acts.


def _variant(**kw) -> sim_mod.SimulatedSet:
    return simulate_arrays(dataclass_replace(PRESETS["test"], **kw))


def test_label_noise_changes_a_share_of_the_written_labels(sim, root):
    wrong = sim.label_44class != sim.true_label_44class
    rate = PRESETS["test"].label_noise
    assert 0.3 * rate < wrong.mean() < 2.5 * rate
    assert set(sim.label_44class[wrong]) <= {s.id for s in CLASS_SPECS}
    groups = {s.id: s.group for s in CLASS_SPECS}  # label_19class follows the written label
    assert [groups[c] for c in sim.label_44class] == sim.label_19class.tolist()
    # the truth is recorded for exactly the mislabelled parcels
    rec = json.loads((root / "META" / "simulation_labels.json").read_text())
    want = {
        str(int(i)): int(c)
        for i, c in zip(sim.ids[wrong], sim.true_label_44class[wrong], strict=True)
    }
    assert rec["true_label_44class"] == want
    clean = _variant(label_noise=0.0)
    np.testing.assert_array_equal(clean.label_44class, clean.true_label_44class)
    np.testing.assert_array_equal(clean.true_label_44class, sim.true_label_44class)
    np.testing.assert_array_equal(clean.pixels[int(sim.ids[0])], sim.pixels[int(sim.ids[0])])


def test_phenology_shift_spreads_the_peak_dates_of_a_class(sim):
    doy = _day_of_year(sim.dates)

    def peak_days(s):
        maize = s.true_label_44class == 5
        return doy[np.argmax(s.green[maize], axis=1)]  # day of the green-cover peak

    spread = peak_days(sim)
    assert np.percentile(spread, 90) - np.percentile(spread, 10) >= 20  # days
    fixed = peak_days(_variant(phenology_shift=0.0))
    assert np.ptp(fixed) == 0  # every parcel of the class on its class's calendar
    # the harvest moves too: the day winter cereals lose half their peak cover
    cereal = sim.true_label_44class == 6
    g = sim.green[cereal]
    after = (g < 0.5 * g.max(1, keepdims=True)) & (doy[None, :] > 120)
    assert len(np.unique(doy[np.argmax(after, axis=1)])) >= 3


def test_partial_clouds_cover_part_of_a_parcel(sim):
    big = sim.sizes >= 20
    hit = sim.cloud[big]
    hit = hit[hit > 0]
    partial = (hit > 0) & (hit < 1)
    assert 0.15 < partial.mean() < 0.7  # some contaminations are partial, most are whole
    # on a partly cloudy date, the pixels under the cloud (and only they) are bright in blue
    checked = 0
    for k in np.flatnonzero(big):
        dates = np.flatnonzero((sim.cloud[k] > 0.2) & (sim.cloud[k] < 0.8))
        clean = np.flatnonzero((sim.cloud[k] == 0) & (sim.shadow[k] == 0))
        a = sim.pixels[int(sim.ids[k])].astype(float)
        for t in dates:
            if sim.shadow[k, t] > 0:
                continue
            ref = clean[np.argmin(np.abs(clean - t))]
            bright = a[t, B2] > np.median(a[ref, B2]) + 800  # an opaque-enough cloud: +0.08
            assert bright.mean() <= sim.cloud[k, t] + 0.1
            checked += 1
    assert checked >= 10
    whole = _variant(partial_cloud_share=0.0)
    assert np.isin(whole.cloud[whole.sizes > 0], [0.0, 1.0]).all()
    assert np.isin(whole.shadow[whole.sizes > 0], [0.0, 1.0]).all()


def test_border_pixels_mix_the_neighbouring_field():
    on, off = (
        _variant(neighbour_field_share=1.0),
        _variant(neighbour_field_share=1.0, border_mix=0.0),
    )
    doy = _day_of_year(on.dates)
    august = np.flatnonzero((doy >= 200) & (doy <= 240))
    gap, mixed, total = [], 0, 0
    for k in np.flatnonzero(on.sizes > 0):
        pid = int(on.ids[k])
        a, b = on.pixels[pid].astype(float), off.pixels[pid].astype(float)
        border = (a != b).any(axis=(0, 1))  # only border pixels change: interiors are equal
        mixed, total = mixed + border.sum(), total + len(border)
        if on.true_label_44class[k] in (3, 6, 9) and on.neighbour_44class[k] in (5, 16, 18):
            # a winter cereal next to a summer crop: in August its border pixels are greener
            clean = [t for t in august if on.cloud[k, t] == 0 and on.shadow[k, t] == 0]
            if border.any() and (~border).any() and clean:
                nd = (a[clean, B8] - a[clean, B4]) / (a[clean, B8] + a[clean, B4])  # (t, n)
                gap.append(nd[:, border].mean() - nd[:, ~border].mean())
    assert 0.2 < mixed / total < 0.8  # small parcels are mostly border
    assert len(gap) >= 3 and np.median(gap) > 0.05, gap


def test_within_parcel_heterogeneity_can_be_turned_off():
    def median_cv(s):
        cv = []
        for k in np.flatnonzero(s.sizes > 30):
            a = s.pixels[int(s.ids[k])].astype(float)
            clean = np.flatnonzero((s.cloud[k] == 0) & (s.shadow[k] == 0))
            cv.append(np.median(a[clean, B8].std(1) / a[clean, B8].mean(1)))
        return np.median(cv)

    uniform = median_cv(_variant(border_mix=0.0, heterogeneity=0.0))  # sensor noise only
    varied = median_cv(_variant(border_mix=0.0))
    assert varied > 1.25 * uniform
    assert median_cv(_variant(border_mix=0.0, heterogeneity=3.0)) > 1.5 * varied


def test_size_distribution_has_a_long_tail_of_small_parcels():
    cfg = dataclass_replace(PRESETS["book"], n_parcels=1536)
    sizes = simulate_arrays(cfg).sizes
    full = sizes[sizes > 0]
    assert (full <= 10).mean() > 0.08  # many small parcels
    assert np.percentile(full, 99) > 8 * np.median(full)  # and a few very large ones
    without = simulate_arrays(dataclass_replace(cfg, small_share=0.0)).sizes
    assert (without[without > 0] <= 10).mean() < 0.6 * (full <= 10).mean()
    assert 0.8 < without.mean() / sizes.mean() < 1.3  # the tail barely changes the mean size


def test_blocks_make_the_whole_set_and_the_writer_streams_them(tmp_path, monkeypatch, sim):
    blocks = list(sim_mod.simulate_blocks(PRESETS["test"]))
    assert len(blocks) > 0 and np.concatenate([b.ids for b in blocks]).tolist() == sim.ids.tolist()
    # the writer saves a block's parcels before it simulates the next block
    events = []
    real_block, real_save = sim_mod._simulate_block, np.save
    monkeypatch.setattr(
        sim_mod, "_simulate_block", lambda *a: events.append("block") or real_block(*a)
    )
    monkeypatch.setattr(np, "save", lambda *a, **k: events.append("save") or real_save(*a, **k))
    cfg = dataclass_replace(PRESETS["test"], n_parcels=3 * sim_mod._CHUNK)
    simulate_s2agri(tmp_path / "s", config=cfg)
    assert events.count("block") == 3
    assert events.index("save") < events.index("block", 1)
    assert len(read_sizes(tmp_path / "s")) == cfg.n_parcels
