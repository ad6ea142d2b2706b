"""A simulated S2-Agri: an offline, deterministic look-alike of the real pixel-set set.

:func:`simulate_s2agri` writes a dataset folder in exactly the S2-Agri pixel-set format (see
book/contract.md and :mod:`psetae.data.format`), so that the whole book runs without a download.
The simulation is a small radiative-mixing model, vectorised with numpy:

1. **Parcels and shapes.** Each parcel gets a class (long-tailed shares, fixed quotas), a
   convex quadrilateral (a randomly skewed, rotated rectangle with a log-normal area) that is
   rasterised on the 10 m pixel grid; its pixels are the grid centres inside it, so the
   geometric features (perimeter, area, perimeter/area, cover ratio) follow from the shape.
   Areas have a log-normal body and a long tail of small parcels.
2. **Phenology.** Each class has a double-logistic green-cover curve over the day of year
   (green-up, senescence), optionally mowing cuts (meadows, fodders), a flowering bout
   (rapeseed, sunflower), a second cycle (rapeseed sown in late summer), and the conversion of
   lost green cover into dry material (straw, stubble) until harvest and tillage. Parcels get
   random shifts of their sowing and harvest dates and of amplitudes, so similar classes overlap.
3. **Spectra.** A pixel's reflectance in 10 Sentinel-2 bands is a linear mixture of endmember
   spectra (green canopy, yellow flowers, dry vegetation, soil or impervious surface) weighted
   by the cover fractions, with within-parcel heterogeneity (pixel noise, a gradient and a
   patch across the parcel, border pixels mixed with what lies beyond: often another field,
   of another class, with its own time series).
4. **Atmosphere.** Some acquisitions are cloudy for many parcels at once, and random
   (parcel, date) pairs are contaminated too: by a cloud (raising all bands, most of all the
   visible ones) or by its shadow (darkening), over the whole parcel or part of it.
5. **Labels.** A small share of the parcels is written with a wrong class (label noise).

Each feature has a parameter of :class:`SimulationConfig` that turns it off. Parcels are
simulated in blocks of a few hundred, each with its own random streams, and
:func:`simulate_s2agri` writes each block before simulating the next, so memory does not grow
with the number of parcels (a million parcels need only disk).

Reflectance is stored as ``round(reflectance * 10000)`` in int16, like the real set. The
assumptions and limits are written in ``data/README.md``: results on this data come from a
simulation, not from S2-Agri.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import shutil
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from psetae.data.format import DatasetFormatError, read_json, write_normalisation
from psetae.errors import OutputExistsError
from psetae.io import replace_dir

__all__ = [
    "BANDS",
    "DEFAULT_DATES",
    "SIMULATOR_VERSION",
    "ClassSpec",
    "CLASS_SPECS",
    "LABEL_19CLASS_NAMES",
    "SimulationConfig",
    "PRESETS",
    "SimulatedSet",
    "simulate_arrays",
    "simulate_blocks",
    "simulate_s2agri",
    "simulation_params",
]

#: Bumped whenever the simulation changes, so that an old folder is not taken for a new one.
SIMULATOR_VERSION = 3

#: The 10 Sentinel-2 bands of S2-Agri, in the order of the channel axis.
BANDS: tuple[str, ...] = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")

# 24 acquisitions of one 2017 season, as days after 3 January 2017 (0 ... 300, like S2-Agri's
# positions). Gaps are multiples of 5 days (the Sentinel-2 revisit) and irregular (5 to 30 days),
# as happens when cloudy acquisitions are discarded.
_OFFSETS = (0, 15, 45, 60, 80, 95, 110, 115, 130, 140, 150, 165, 170, 180, 190, 205, 215, 225,
            235, 250, 260, 275, 290, 300)  # fmt: skip
_START = _dt.date(2017, 1, 3)
#: Default acquisition dates (YYYYMMDD) of the simulated season.
DEFAULT_DATES: tuple[int, ...] = tuple(
    int((_START + _dt.timedelta(days=o)).strftime("%Y%m%d")) for o in _OFFSETS
)

# Endmember reflectance spectra (surface reflectance, 0..1) in the order of BANDS.
# Values are typical of the literature's spectral libraries, rounded; they are a model, not
# measurements.
_GREEN = np.array([0.025, 0.065, 0.025, 0.105, 0.310, 0.390, 0.430, 0.450, 0.200, 0.090])
_FLOWER = np.array([0.040, 0.170, 0.140, 0.200, 0.320, 0.370, 0.400, 0.420, 0.230, 0.120])
_DRY = np.array([0.085, 0.125, 0.175, 0.210, 0.250, 0.270, 0.285, 0.295, 0.400, 0.310])
_SOIL = np.array([0.080, 0.110, 0.160, 0.190, 0.205, 0.215, 0.225, 0.232, 0.320, 0.280])
_URBAN = np.array([0.110, 0.125, 0.135, 0.150, 0.165, 0.175, 0.185, 0.190, 0.220, 0.200])
_CLOUD = np.array([0.500, 0.480, 0.470, 0.470, 0.470, 0.470, 0.470, 0.460, 0.330, 0.220])
# How much a canopy's "NIR gain" acts on each band (structure scatters NIR, a bit of SWIR)
# and how much its "visible gain" does (canopy shadowing darkens blue-green-red).
_NIR_WEIGHT = np.array([0.0, 0.0, 0.0, 0.2, 0.7, 1.0, 1.0, 1.0, 0.3, 0.1])
_VIS_WEIGHT = np.array([1.0, 1.0, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.3, 0.3])
_NEVER = 10_000.0  # a day of year that never comes (no harvest, no tillage)


@dataclass(frozen=True)
class ClassSpec:
    """Phenology, spectra and share of one ``label_44class`` class.

    Days are days of the year 2017. The green cover of a parcel is
    ``base + (peak - base) * s((t - sos) / rise) - (peak - end) * s((t - eos) / fall)`` with
    ``s`` the logistic function, then cut, flowered, and partly turned into dry material.

    Parameters
    ----------
    id, name
        The ``label_44class`` id (the real S2-Agri ids) and name.
    group
        The ``label_19class`` id (see :data:`LABEL_19CLASS_NAMES`).
    share
        Relative share of parcels (normalised over all classes).
    base, peak, end
        Green cover before green-up, at the peak, and after senescence (0..1).
    sos, rise, eos, fall
        Mid green-up day and its time scale; mid senescence day and its time scale (days).
    shift_sd
        Standard deviation of the per-parcel shift of all dates (days).
    amp_sd
        Relative standard deviation of the per-parcel amplitude.
    k_dry
        Share of the lost green cover that stays as dry material (straw, dead leaves).
    harvest, stubble
        Day the dry material is removed, and the share of it left as stubble.
    till
        Day the remaining dry material is tilled into bare soil.
    cuts, cut_depth, cut_prob
        Mowing days, the share of green cover each removes, the probability each happens.
    flower
        ``(day, width, strength)`` of a flowering bout (yellow cover replacing green).
    second
        ``(sos, cover)`` of a second green-up late in the season (next crop, regrowth).
    nir_gain, vis_gain
        Canopy structure: multiplies the green endmember's NIR and visible bands.
    urban
        ``(low, high)`` range of the share of impervious surface in the background.
    pix_sd
        Standard deviation of the pixel-level vigour (within-parcel heterogeneity).
    size_scale
        Multiplies the parcel area (vineyards are small, cereal fields large).
    """

    id: int
    name: str
    group: int
    share: float
    base: float
    peak: float
    end: float
    sos: float
    rise: float
    eos: float
    fall: float
    shift_sd: float = 8.0
    amp_sd: float = 0.08
    k_dry: float = 0.0
    harvest: float = _NEVER
    stubble: float = 0.5
    till: float = _NEVER
    cuts: tuple[float, ...] = ()
    cut_depth: float = 0.0
    cut_prob: float = 0.8
    flower: tuple[float, float, float] | None = None
    second: tuple[float, float] | None = None
    nir_gain: float = 1.0
    vis_gain: float = 1.0
    urban: tuple[float, float] = (0.0, 0.0)
    pix_sd: float = 0.06
    size_scale: float = 1.0


_C = ClassSpec
#: The simulated classes: the paper's 20 classes with their real S2-Agri ids, plus five rare
#: ids that the 20-class selection drops (their names are this simulator's, not the real set's).
CLASS_SPECS: tuple[ClassSpec, ...] = (
    # Grasslands: green all year, mown one to four times, dry in late summer.
    _C(1, "Meadow", 0, 0.300, 0.45, 0.80, 0.55, 85, 12, 205, 15, shift_sd=10, amp_sd=0.12,
       k_dry=0.5, cuts=(135, 190), cut_depth=0.5, cut_prob=0.7, pix_sd=0.08),
    _C(12, "Leguminous Fodder", 5, 0.040, 0.45, 0.85, 0.60, 80, 10, 290, 10, k_dry=0.3,
       cuts=(130, 170, 210, 250), cut_depth=0.6, cut_prob=0.85, nir_gain=1.08),
    _C(13, "Other Fodder", 6, 0.035, 0.35, 0.80, 0.50, 80, 10, 210, 12, shift_sd=10,
       k_dry=0.4, cuts=(125, 175), cut_depth=0.55, cut_prob=0.75),
    # Winter cereals: green in winter, peak in April-May, ripe in June, harvested in July.
    _C(3, "Winter Durum Wheat", 1, 0.060, 0.22, 0.85, 0.04, 80, 9, 165, 6, k_dry=0.85,
       harvest=186, till=240, size_scale=1.4),
    _C(6, "Winter Cereal", 1, 0.160, 0.22, 0.83, 0.04, 76, 9, 160, 6, shift_sd=10,
       k_dry=0.85, harvest=183, till=235, size_scale=1.4),
    _C(9, "Cereal", 1, 0.012, 0.20, 0.80, 0.04, 78, 9, 162, 6, shift_sd=12, amp_sd=0.10,
       k_dry=0.85, harvest=185, till=235, size_scale=1.2),
    _C(4, "Spring Cereal", 2, 0.025, 0.04, 0.78, 0.04, 105, 8, 175, 6, k_dry=0.85,
       harvest=200, till=245),
    _C(19, "Protein Crop", 10, 0.010, 0.08, 0.80, 0.04, 88, 8, 165, 6, k_dry=0.7,
       harvest=185, till=230, nir_gain=1.08),
    # Rapeseed: well developed in winter, yellow in April, next crop sown in late August.
    _C(14, "Winter Rapeseed", 7, 0.040, 0.50, 0.88, 0.04, 55, 10, 155, 6, k_dry=0.8,
       harvest=180, till=215, flower=(108, 12, 0.85), second=(255, 0.40), nir_gain=1.10,
       size_scale=1.3),
    # Summer crops: bare until May-June, green in July-August.
    _C(5, "Summer Cereal", 3, 0.110, 0.03, 0.88, 0.05, 170, 8, 255, 8, k_dry=0.8,
       harvest=280, stubble=0.6, nir_gain=1.05, size_scale=1.3),
    _C(8, "Sorghum/Millet/Moha", 4, 0.008, 0.03, 0.75, 0.05, 176, 9, 250, 9, shift_sd=10,
       k_dry=0.8, harvest=272, stubble=0.6),
    _C(16, "Sunflower", 8, 0.050, 0.03, 0.75, 0.04, 150, 8, 225, 7, k_dry=0.9, harvest=260,
       stubble=0.4, till=290, flower=(200, 8, 0.30), nir_gain=1.12, size_scale=1.2),
    _C(18, "Soy", 9, 0.020, 0.03, 0.85, 0.04, 165, 8, 250, 6, k_dry=0.8, harvest=275,
       nir_gain=1.12),
    _C(23, "Potato", 11, 0.005, 0.02, 0.85, 0.03, 150, 7, 215, 7, k_dry=0.5, harvest=235,
       stubble=0.2, till=240, nir_gain=1.15, size_scale=0.7),
    _C(28, "Fruits/Vegetables/Flowers", 12, 0.010, 0.10, 0.60, 0.10, 130, 10, 230, 10,
       shift_sd=30, amp_sd=0.25, k_dry=0.3, harvest=240, till=250, pix_sd=0.15,
       size_scale=0.4),
    # Woody crops: trees or vines in rows over grass or bare soil.
    _C(31, "Ligneous", 13, 0.006, 0.30, 0.60, 0.35, 115, 12, 285, 12, shift_sd=10,
       k_dry=0.2, nir_gain=0.95, pix_sd=0.10, size_scale=0.6),
    _C(33, "Orchards", 13, 0.010, 0.25, 0.65, 0.35, 105, 10, 290, 12, k_dry=0.2,
       nir_gain=0.95, pix_sd=0.12, size_scale=0.6),
    _C(34, "Grapevine", 14, 0.030, 0.12, 0.45, 0.18, 140, 10, 285, 10, k_dry=0.2,
       nir_gain=0.90, pix_sd=0.15, size_scale=0.5),
    # Not crops: built-up or bare surfaces with little vegetation; forests.
    _C(36, "Non-agricultural Surface", 15, 0.025, 0.05, 0.14, 0.07, 100, 15, 260, 15,
       shift_sd=15, amp_sd=0.3, urban=(0.4, 1.0), pix_sd=0.20, size_scale=0.6),
    _C(39, "Wood", 16, 0.030, 0.62, 0.90, 0.65, 110, 10, 295, 10, amp_sd=0.06, k_dry=0.2,
       nir_gain=0.75, vis_gain=0.7, size_scale=1.2),
    # Rare classes that the paper's 20-class selection drops (fewer than 100 parcels in S2-Agri).
    _C(2, "Fallow Land", 17, 0.0025, 0.20, 0.50, 0.30, 100, 12, 220, 15, shift_sd=15,
       amp_sd=0.2, k_dry=0.5, pix_sd=0.15),
    _C(7, "Spring Rapeseed", 7, 0.0025, 0.03, 0.80, 0.04, 110, 8, 190, 6, k_dry=0.8,
       harvest=215, till=240, flower=(150, 8, 0.5), nir_gain=1.10),
    _C(15, "Other Oilseed", 18, 0.0025, 0.05, 0.75, 0.04, 100, 8, 175, 6, k_dry=0.8,
       harvest=200, till=240),
    _C(21, "Hemp", 18, 0.0025, 0.03, 0.85, 0.05, 150, 8, 240, 8, k_dry=0.8, harvest=250,
       stubble=0.6, nir_gain=1.05),
    _C(25, "Tobacco", 18, 0.0025, 0.03, 0.80, 0.05, 160, 8, 245, 8, k_dry=0.6, harvest=255,
       till=270, nir_gain=1.12),
)  # fmt: skip
del _C

#: Names of the ``label_19class`` groups (this simulator's coarser grouping of label_44class).
LABEL_19CLASS_NAMES: tuple[str, ...] = (
    "Meadow",  # 0: 1
    "Winter cereals",  # 1: 3, 6, 9
    "Spring cereals",  # 2: 4
    "Maize",  # 3: 5
    "Sorghum and millet",  # 4: 8
    "Leguminous fodder",  # 5: 12
    "Other fodder",  # 6: 13
    "Rapeseed",  # 7: 14, 7
    "Sunflower",  # 8: 16
    "Soy",  # 9: 18
    "Protein crops",  # 10: 19
    "Potato",  # 11: 23
    "Fruits, vegetables and flowers",  # 12: 28
    "Tree crops",  # 13: 31, 33
    "Grapevine",  # 14: 34
    "Non-agricultural surfaces",  # 15: 36
    "Wood",  # 16: 39
    "Fallow",  # 17: 2
    "Other industrial crops",  # 18: 15, 21, 25
)


def _parse_yyyymmdd(d: int) -> _dt.date:
    s = str(d)
    if len(s) != 8 or not s.isdigit():
        raise ValueError(f"date {d!r} is not YYYYMMDD")
    return _dt.date(int(s[:4]), int(s[4:6]), int(s[6:]))


@dataclass(frozen=True)
class SimulationConfig:
    """Parameters of one simulated dataset (all of them: same config, same bytes).

    Parameters
    ----------
    n_parcels
        Number of parcels (ids are a random sample of 0 .. 4 * n_parcels - 1).
    seed
        Seed of every random draw.
    dates
        Acquisition dates (YYYYMMDD, increasing, within one year).
    size_median, size_sigma
        Median (pixels) and log standard deviation of the log-normal parcel area, before the
        class's ``size_scale``.
    min_pixels, max_pixels
        Bounds of the parcel area in pixels (the rasterised count is close to it).
    empty_fraction
        Share of parcels that are slivers too thin to hold a pixel centre (0 pixels).
    cloudy_date_share
        Share of the acquisitions that are cloudy over the region (rounded to a count).
    cloudy_cover
        ``(low, high)``: on a cloudy acquisition, the share of parcels affected is uniform in it.
    random_cloud_prob
        Probability that any other (parcel, date) pair is contaminated.
    shadow_share
        Share of contaminations that are cloud shadows rather than clouds.
    noise
        Standard deviation of the per-pixel, per-band sensor noise (reflectance units).
    small_share, small_median, small_sigma
        Long tail of small parcels: this share of the parcels draws its area from a second
        log-normal (median ``small_median`` pixels, log standard deviation ``small_sigma``);
        0 turns it off.
    phenology_shift
        Multiplies every class's ``shift_sd`` and the spread of the harvest, tillage, mowing
        and flowering dates, so that sowing and harvest dates shift from parcel to parcel;
        0: every parcel of a class follows its class's calendar exactly.
    heterogeneity
        Multiplies the within-parcel variation (pixel vigour, gradient, patch, per-pixel soil
        brightness); 0: all pixels of a parcel alike but for sensor noise and clouds.
    border_mix
        Largest share of a border pixel taken from what lies beyond the parcel (the share
        is uniform in ``[0.3, 1] * border_mix``); 0: no mixed border pixels.
    neighbour_field_share
        Share of parcels whose neighbour beyond the border is another field, of a random class
        with its own phenology (the others border a grassy verge, a road or bare soil).
    partial_cloud_share
        Share of the cloud and shadow contaminations that cover only part of the parcel (the
        pixels on one side of a random line); 0: a contamination covers the whole parcel.
    label_noise
        Share of parcels whose written label is another class than the simulated one (drawn
        from the class shares), as declared labels are sometimes wrong; 0: no label noise.
    """

    n_parcels: int = 8000
    seed: int = 0
    dates: tuple[int, ...] = DEFAULT_DATES
    size_median: float = 45.0
    size_sigma: float = 0.95
    min_pixels: float = 2.0
    max_pixels: float = 2500.0
    empty_fraction: float = 0.003
    cloudy_date_share: float = 0.2
    cloudy_cover: tuple[float, float] = (0.2, 0.8)
    random_cloud_prob: float = 0.02
    shadow_share: float = 0.25
    noise: float = 0.004
    small_share: float = 0.1
    small_median: float = 8.0
    small_sigma: float = 0.6
    phenology_shift: float = 1.5
    heterogeneity: float = 1.0
    border_mix: float = 0.5
    neighbour_field_share: float = 0.6
    partial_cloud_share: float = 0.4
    label_noise: float = 0.03

    def __post_init__(self) -> None:
        if int(self.n_parcels) != self.n_parcels or self.n_parcels < 1:
            raise ValueError(f"n_parcels must be a positive integer, not {self.n_parcels!r}")
        object.__setattr__(self, "n_parcels", int(self.n_parcels))  # JSON-ready, not np.int64
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "dates", tuple(int(d) for d in self.dates))
        object.__setattr__(self, "cloudy_cover", tuple(float(c) for c in self.cloudy_cover))
        days = [_parse_yyyymmdd(d) for d in self.dates]
        if len(days) < 2 or any(b <= a for a, b in zip(days[:-1], days[1:], strict=False)):
            raise ValueError(f"dates must be at least 2 increasing YYYYMMDD dates: {self.dates}")
        if not 0 < self.min_pixels <= self.size_median <= self.max_pixels:
            raise ValueError("need 0 < min_pixels <= size_median <= max_pixels")
        shares = ("empty_fraction", "cloudy_date_share", "random_cloud_prob", "shadow_share",
                  "small_share", "border_mix", "neighbour_field_share", "partial_cloud_share",
                  "label_noise")  # fmt: skip
        for name in shares:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], not {getattr(self, name)!r}")
        lo, hi = self.cloudy_cover
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"cloudy_cover must be (low, high) in [0, 1], not {self.cloudy_cover}")
        scales = ("size_sigma", "noise", "small_sigma", "phenology_shift", "heterogeneity")
        for name in scales:
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, not {getattr(self, name)!r}")
        if not 0 < self.small_median <= self.max_pixels:
            raise ValueError("need 0 < small_median <= max_pixels")

    def to_dict(self) -> dict[str, object]:
        """The parameters as a JSON-ready dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_preset(cls, preset: str, **overrides: object) -> SimulationConfig:
        """The config of a preset (see :data:`PRESETS`), with some fields replaced.

        Raises
        ------
        ValueError
            Unknown preset.
        """
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}: choose one of {sorted(PRESETS)}")
        return dataclasses.replace(PRESETS[preset], **overrides)


#: Named configurations. ``book``: what the book trains on, on a CPU, in minutes;
#: ``test``: tiny, for unit tests; ``large``: closer to the real set's size, for benchmarks.
PRESETS: dict[str, SimulationConfig] = {
    "test": SimulationConfig(
        n_parcels=400, size_median=20.0, max_pixels=300.0, empty_fraction=0.01
    ),
    "book": SimulationConfig(n_parcels=8000),
    "large": SimulationConfig(n_parcels=40000),
}


@dataclass
class SimulatedSet:
    """A simulated dataset in memory, with the hidden truth the files do not hold.

    Attributes
    ----------
    config
        The parameters it was made with.
    dates
        (T,) YYYYMMDD integers.
    ids
        (N,) parcel ids, increasing.
    label_44class, label_19class
        (N,) class of each parcel in both nomenclatures.
    sizes
        (N,) number of pixels of each parcel.
    geomfeat
        (N, 4) perimeter (m), area (m^2), perimeter / area (1/m), cover ratio.
    pixels
        ``{id: int16 array (T, C, n)}`` reflectance x 10000.
    cloud, shadow
        (N, T) share of each parcel's pixels under a cloud, or under a cloud shadow.
    green
        (N, T) the parcel's simulated green cover before heterogeneity and clouds.
    true_label_44class
        (N,) the class that was simulated (``label_44class`` is what is written: with label
        noise, sometimes another class).
    neighbour_44class
        (N,) the class of the field beyond the parcel's border, -1 if it borders no field.
    """

    config: SimulationConfig
    dates: np.ndarray = field(repr=False)
    ids: np.ndarray = field(repr=False)
    label_44class: np.ndarray = field(repr=False)
    label_19class: np.ndarray = field(repr=False)
    sizes: np.ndarray = field(repr=False)
    geomfeat: np.ndarray = field(repr=False)
    pixels: dict[int, np.ndarray] = field(repr=False)
    cloud: np.ndarray = field(repr=False)
    shadow: np.ndarray = field(repr=False)
    green: np.ndarray = field(repr=False)
    true_label_44class: np.ndarray | None = field(default=None, repr=False)
    neighbour_44class: np.ndarray | None = field(default=None, repr=False)


# --------------------------------------------------------------------------- helpers


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # logistic function, overflow-free


def _class_quotas(n: int, shares: np.ndarray) -> np.ndarray:
    """Parcels per class: largest remainders of n * share, every class at least once if n allows."""
    p = shares / shares.sum()
    counts = np.floor(n * p).astype(np.int64)
    if n >= len(p):
        counts = np.maximum(counts, 1)
    while counts.sum() > n:  # the minimum of 1 overshot: take from the largest classes
        counts[np.argmax(counts)] -= 1
    rest = n - counts.sum()
    order = np.argsort(-(n * p - np.floor(n * p)), kind="stable")
    counts[order[:rest]] += 1
    return counts


# --------------------------------------------------------------------------- geometry


def _shapes(rng: np.random.Generator, area: np.ndarray, empty: np.ndarray) -> np.ndarray:
    """Convex quadrilaterals in pixel units, counter-clockwise, shape (N, 4, 2).

    A rectangle of the wanted area and a random elongation is skewed (its far side slides and
    shrinks or grows), rotated, rescaled to the area and placed at a random sub-pixel offset.
    Slivers (``empty``) are 12 m x 4 m, centred between pixel centres, so they hold none.
    """
    n = len(area)
    aspect = np.exp(np.abs(rng.normal(0.0, 0.6, n)))  # length / width, 1 .. ~5
    length = np.sqrt(area * aspect)
    width = np.sqrt(area / aspect)
    skew = rng.uniform(-0.2, 0.2, (n, 2)) * length[:, None]
    angle = rng.uniform(0.0, np.pi, n)
    offset = rng.uniform(0.0, 1.0, (n, 2))
    u = np.stack([-length / 2, length / 2, length / 2 + skew[:, 1], -length / 2 + skew[:, 0]], 1)
    v = np.stack([-width / 2, -width / 2, width / 2, width / 2], 1)
    u = np.where(empty[:, None], np.array([-0.6, 0.6, 0.6, -0.6]), u)
    v = np.where(empty[:, None], np.array([-0.2, -0.2, 0.2, 0.2]), v)
    u -= u.mean(1, keepdims=True)
    poly_area = _polygon_area(np.stack([u, v], -1))
    scale = np.where(empty, 1.0, np.sqrt(area / poly_area))
    u, v = u * scale[:, None], v * scale[:, None]
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    x = c * u - s * v + np.where(empty, 0.5, offset[:, 0])[:, None]
    y = s * u + c * v + np.where(empty, 0.5, offset[:, 1])[:, None]
    return np.stack([x, y], -1)  # (N, 4, 2)


def _polygon_area(poly: np.ndarray) -> np.ndarray:
    """Shoelace area of polygons (N, V, 2), positive for counter-clockwise vertices."""
    x, y = poly[..., 0], poly[..., 1]
    return 0.5 * np.sum(x * np.roll(y, -1, 1) - np.roll(x, -1, 1) * y, axis=1)


def _inside(poly: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Whether points (px, py) lie in their convex counter-clockwise polygons poly (M, V, 2)."""
    ok = np.ones(px.shape, dtype=bool)
    for k in range(poly.shape[1]):  # a loop over the 4 edges, not over points
        a, b = poly[:, k], poly[:, (k + 1) % poly.shape[1]]
        cross = (b[:, 0] - a[:, 0]) * (py - a[:, 1]) - (b[:, 1] - a[:, 1]) * (px - a[:, 0])
        ok &= cross >= 0
    return ok


def _rasterise(poly: np.ndarray) -> dict[str, np.ndarray]:
    """Pixel centres (integer coordinates) inside each polygon, in raster order.

    Returns ``parcel`` (P,), ``i`` and ``j`` (P,) column and row of every pixel, grouped by
    parcel; ``border`` (P,) whether a 4-neighbour centre is outside; and ``sizes`` (N,).
    """
    n = poly.shape[0]
    lo = np.ceil(poly.min(1)).astype(np.int64)  # (N, 2) first candidate centre
    hi = np.floor(poly.max(1)).astype(np.int64)
    nx, ny = np.maximum(hi[:, 0] - lo[:, 0] + 1, 0), np.maximum(hi[:, 1] - lo[:, 1] + 1, 0)
    count = nx * ny
    parcel = np.repeat(np.arange(n), count)
    k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    i = lo[parcel, 0] + k % nx[parcel]
    j = lo[parcel, 1] + k // nx[parcel]
    keep = _inside(poly[parcel], i.astype(float), j.astype(float))
    parcel, i, j = parcel[keep], i[keep], j[keep]
    pp = poly[parcel]
    border = np.zeros(len(parcel), dtype=bool)
    for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        border |= ~_inside(pp, (i + di).astype(float), (j + dj).astype(float))
    sizes = np.bincount(parcel, minlength=n)
    return {"parcel": parcel, "i": i, "j": j, "border": border, "sizes": sizes}


def _geomfeat(poly: np.ndarray, raster: dict[str, np.ndarray]) -> np.ndarray:
    """(N, 4): perimeter (m), area (m^2), perimeter / area (1/m), cover ratio.

    The cover ratio is the parcel's pixels over the pixels of their bounding box (0 if empty).
    """
    n = poly.shape[0]
    perimeter = 10.0 * np.sum(np.linalg.norm(np.roll(poly, -1, 1) - poly, axis=-1), axis=1)
    area = 100.0 * _polygon_area(poly)
    sizes = raster["sizes"]
    box = np.zeros(n)
    full = np.flatnonzero(sizes > 0)
    if len(full):
        start = (np.cumsum(sizes) - sizes)[full]
        i, j = raster["i"], raster["j"]
        w = np.maximum.reduceat(i, start) - np.minimum.reduceat(i, start) + 1
        h = np.maximum.reduceat(j, start) - np.minimum.reduceat(j, start) + 1
        box[full] = w * h
    cover = np.divide(sizes, box, out=np.zeros(n), where=box > 0)
    return np.stack([perimeter, area, perimeter / area, cover], 1)


# --------------------------------------------------------------------------- phenology


def _class_table(specs: tuple[ClassSpec, ...]) -> dict[str, np.ndarray]:
    """Per-class parameters as arrays indexed by class position."""
    names = [f.name for f in dataclasses.fields(ClassSpec)]
    skip = {"id", "name", "cuts", "flower", "second", "urban"}
    table = {
        k: np.array([getattr(s, k) for s in specs], dtype=float) for k in names if k not in skip
    }
    max_cuts = max(len(s.cuts) for s in specs)
    table["cuts"] = np.array([list(s.cuts) + [_NEVER] * (max_cuts - len(s.cuts)) for s in specs])
    table["flower"] = np.array([s.flower or (_NEVER, 1.0, 0.0) for s in specs], dtype=float)
    table["second"] = np.array([s.second or (_NEVER, 0.0) for s in specs], dtype=float)
    table["urban"] = np.array([s.urban for s in specs], dtype=float)
    return table


def _phenology(
    rng: np.random.Generator,
    cls: np.ndarray,
    doy: np.ndarray,
    tab: dict[str, np.ndarray],
    spread: float = 1.0,
) -> dict[str, np.ndarray]:
    """Per-parcel cover fractions (N, T): green, yellow (flowers) and dry material.

    ``spread`` multiplies the per-parcel spread of every date (sowing, senescence, harvest,
    tillage, mowing, flowering); the random draws do not depend on it.
    """
    n = len(cls)
    p = {k: v[cls] for k, v in tab.items()}
    t = doy[None, :]  # (1, T)
    shift = rng.normal(0.0, 1.0, n) * p["shift_sd"] * spread
    # senescence follows green-up but with its own spread (weather during grain filling)
    shift_end = 0.6 * shift + rng.normal(0.0, 1.0, n) * 0.6 * p["shift_sd"] * spread
    amp = np.clip(1.0 + rng.normal(0.0, 1.0, n) * p["amp_sd"], 0.5, 1.3)
    base = np.clip(p["base"] * np.clip(1.0 + rng.normal(0.0, 0.15, n), 0.5, 1.5), 0.0, 0.9)
    peak = np.clip(base + (p["peak"] - base) * amp, 0.0, 0.97)
    end = np.clip(p["end"] * amp, 0.0, 0.9)
    sos, eos = p["sos"] + shift, p["eos"] + shift_end
    up = _sigmoid((t - sos[:, None]) / p["rise"][:, None])
    down = _sigmoid((t - eos[:, None]) / p["fall"][:, None])
    green = base[:, None] + (peak - base)[:, None] * up - (peak - end)[:, None] * down
    # mowing: each cut removes a share of the cover, which grows back over ~3 weeks
    cuts = p["cuts"] + rng.normal(0.0, 10.0 * spread, p["cuts"].shape)
    cuts = np.where(rng.uniform(size=cuts.shape) < p["cut_prob"][:, None], cuts, _NEVER)
    depth = p["cut_depth"][:, None] * rng.uniform(0.7, 1.1, cuts.shape)  # (N, K)
    since = t[:, :, None] - cuts[:, None, :]  # (N, T, K)
    removed = np.where(since >= 0, depth[:, None, :] * np.exp(-np.maximum(since, 0) / 20.0), 0)
    green = green * np.prod(1.0 - np.clip(removed, 0.0, 0.95), axis=2)
    # a second green-up late in the season (rapeseed sown in August)
    sec_sos = p["second"][:, 0] + 0.5 * shift
    green = green + p["second"][:, 1:2] * _sigmoid((t - sec_sos[:, None]) / 8.0)
    green = np.clip(green, 0.0, 0.97)
    # flowering turns part of the canopy yellow
    fl_day = p["flower"][:, 0] + 0.8 * shift + rng.normal(0.0, 3.0 * spread, n)
    bloom = p["flower"][:, 2:3] * np.exp(-0.5 * ((t - fl_day[:, None]) / p["flower"][:, 1:2]) ** 2)
    yellow = green * np.clip(bloom * rng.uniform(0.7, 1.2, (n, 1)), 0.0, 0.9)
    # lost green cover stays as dry material until harvest (stubble left) and tillage
    lost = np.maximum.accumulate(green, axis=1) - green
    harvest = p["harvest"] + shift_end + rng.normal(0.0, 5.0 * spread, n)
    till = p["till"] + shift_end + rng.normal(0.0, 10.0 * spread, n)
    keep = 1.0 - (1.0 - p["stubble"][:, None]) * _sigmoid((t - harvest[:, None]) / 3.0)
    keep = keep * (1.0 - _sigmoid((t - till[:, None]) / 3.0))
    dry = p["k_dry"][:, None] * lost * keep
    return {"green": green - yellow, "yellow": yellow, "dry": dry}


# --------------------------------------------------------------------------- spectra


def _parcel_spectra(
    rng: np.random.Generator, cls: np.ndarray, tab: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Per-parcel endmembers (N, C): the canopy and the background (soil, impervious)."""
    n = len(cls)
    nir = tab["nir_gain"][cls] * (1.0 + rng.normal(0.0, 0.04, n))
    vis = tab["vis_gain"][cls] * (1.0 + rng.normal(0.0, 0.05, n))
    canopy = _GREEN * (1.0 + (nir[:, None] - 1.0) * _NIR_WEIGHT)
    canopy = canopy * (1.0 + (vis[:, None] - 1.0) * _VIS_WEIGHT)
    lo, hi = tab["urban"][cls, 0], tab["urban"][cls, 1]
    urban = rng.uniform(lo, hi)
    brightness = np.exp(rng.normal(0.0, 0.15, n))  # soils differ in colour and texture
    soil = _SOIL * brightness[:, None]
    background = (1.0 - urban)[:, None] * soil + urban[:, None] * _URBAN
    return {"canopy": canopy, "background": background, "soil": soil}


def _field_reflectance(
    frac: dict[str, np.ndarray], spec: dict[str, np.ndarray], wet: np.ndarray
) -> np.ndarray:
    """Noise-free reflectance (N, T, C) of whole fields: cover fractions times endmembers."""
    bare = 1.0 - frac["green"] - frac["yellow"] - frac["dry"]
    refl = frac["green"][:, :, None] * spec["canopy"][:, None, :]
    refl += frac["yellow"][:, :, None] * _FLOWER
    refl += frac["dry"][:, :, None] * _DRY
    refl += (bare * wet[None, :])[:, :, None] * spec["background"][:, None, :]
    return refl


def _neighbours(
    rng: np.random.Generator,
    n: int,
    days: np.ndarray,
    wet: np.ndarray,
    tab: dict[str, np.ndarray],
    cfg: SimulationConfig,
    soil: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """What lies beyond each parcel's border: its class (-1: not a field) and (N, T, C) reflectance.

    A share ``cfg.neighbour_field_share`` of the parcels border another field of a random class
    (drawn from the class shares, so often the same crop) with its own phenology; the others a
    grassy verge, a road or bare soil (the parcel's own soil, seen beyond its edge).
    """
    share = tab["share"] / tab["share"].sum()
    ncls = rng.choice(len(share), size=n, p=share)
    field_ = rng.uniform(size=n) < cfg.neighbour_field_share
    frac = _phenology(rng, ncls, days, tab, cfg.phenology_shift)
    refl = _field_reflectance(frac, _parcel_spectra(rng, ncls, tab), wet)  # (N, T, C)
    kind = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    verge = 0.6 * _GREEN + 0.4 * _SOIL
    static = np.where((kind == 0)[:, None], verge, np.where((kind == 1)[:, None], _URBAN, soil))
    refl = np.where(field_[:, None, None], refl, static[:, None, :])
    return np.where(field_, ncls, -1), refl


def _contamination(
    rng: np.random.Generator, n: int, share: np.ndarray, cfg: SimulationConfig
) -> dict[str, np.ndarray]:
    """Which (parcel, date) pairs a cloud or a shadow touches, and how (all (N, T)).

    ``share`` (T,) is the probability that a parcel is contaminated on each date (high on the
    region's cloudy dates, ``cfg.random_cloud_prob`` on the others).
    """
    n_dates = len(share)
    hit = rng.uniform(size=(n, n_dates)) < share[None, :]
    is_shadow = rng.uniform(size=(n, n_dates)) < cfg.shadow_share
    # the whole parcel, or the part on one side of a random line across it
    part = rng.uniform(size=(n, n_dates)) < cfg.partial_cloud_share
    cover = np.where(part, rng.uniform(0.1, 0.9, (n, n_dates)), 1.0)
    return {
        "cloud": hit & ~is_shadow,
        "shadow": hit & is_shadow,
        "cover": cover,
        "direction": rng.uniform(0.0, 2 * np.pi, (n, n_dates)),
        "opacity": rng.uniform(0.3, 1.0, (n, n_dates)),  # thin haze .. opaque cloud
        "darkening": rng.uniform(0.35, 0.65, (n, n_dates)),  # shadow keeps this share of light
    }


# Parcels per block: each block has its own random streams and bounds the memory (~50 MB),
# whatever the number of parcels. Changing it changes the data: bump SIMULATOR_VERSION with it.
_CHUNK = 512


def _render_chunk(
    rng: np.random.Generator,
    pix: dict[str, np.ndarray],
    frac: dict[str, np.ndarray],
    spec: dict[str, np.ndarray],
    atm: dict[str, np.ndarray],
    wet: np.ndarray,
    gain: np.ndarray,
    cfg: SimulationConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reflectance x 10000 of the pixels of a block of parcels, int16 (P, T, C).

    ``pix`` holds per-pixel arrays (parcel index, coordinates, border flag, radius); ``frac``,
    ``spec`` and ``atm`` per-parcel arrays. Also returns the per-pixel cloud and shadow masks.
    The random draws do not depend on the config's switches, so that turning one feature off
    leaves everything else as it was.
    """
    p = pix["parcel"]
    m = len(p)
    # within-parcel vigour: pixel noise + a gradient across the parcel + sometimes a patch
    x, y, radius = pix["x"], pix["y"], pix["radius"]
    vigour = rng.normal(0.0, 1.0, m) * pix["pix_sd"]
    vigour += pix["slope"] * (x * np.cos(pix["slope_dir"]) + y * np.sin(pix["slope_dir"])) / radius
    d2 = ((x - pix["patch_x"]) ** 2 + (y - pix["patch_y"]) ** 2) / pix["patch_r"] ** 2
    vigour += pix["patch"] * np.exp(-d2)
    vigour *= cfg.heterogeneity
    v = np.clip(1.0 + vigour, 0.3, 1.7)[:, None]  # (P, 1)
    green = frac["green"][p] * v  # (P, T)
    yellow = frac["yellow"][p] * v
    dry = frac["dry"][p] * np.clip(1.0 + 0.5 * vigour, 0.5, 1.5)[:, None]
    total = green + yellow + dry
    over = np.maximum(total / 0.98, 1.0)
    green, yellow, dry = green / over, yellow / over, dry / over
    bare = 1.0 - green - yellow - dry
    grain = np.exp(rng.normal(0.0, 0.04, m) * cfg.heterogeneity)  # per-pixel soil brightness
    soil = spec["background"][p] * grain[:, None]  # (P, C)
    # the (P, T, C) stage runs in float32, in place: it is most of the simulation's time
    f32 = np.float32
    refl = green.astype(f32)[:, :, None] * spec["canopy"][p].astype(f32)[:, None, :]
    refl += yellow.astype(f32)[:, :, None] * _FLOWER.astype(f32)
    refl += dry.astype(f32)[:, :, None] * _DRY.astype(f32)
    refl += (bare * wet[None, :]).astype(f32)[:, :, None] * soil.astype(f32)[:, None, :]
    # border pixels: partly the neighbouring field, verge or road (its own time series)
    mix = rng.uniform(0.3, 1.0, m) * cfg.border_mix
    mix = np.where(pix["border"], mix, 0.0).astype(f32)[:, None, None]
    refl *= 1.0 - mix
    refl += mix * spec["beyond"][p]
    refl *= gain.astype(f32)[None, :, :]  # residual atmospheric differences between dates
    # clouds and shadows: pixels on one side of a line across the parcel
    theta = atm["direction"][p]  # (P, T)
    along = (x[:, None] * np.cos(theta) + y[:, None] * np.sin(theta)) / radius[:, None]
    under = along <= 2.0 * atm["cover"][p] - 1.0 + 1e-9  # along is in [-1, 1]
    cloud = under & atm["cloud"][p]
    shadow = under & atm["shadow"][p]
    alpha = atm["opacity"][p] * np.clip(rng.normal(1.0, 0.1, (m, 1)), 0.7, 1.2)
    alpha = np.where(cloud, np.clip(alpha, 0.0, 1.0), 0.0).astype(f32)[:, :, None]
    refl *= 1.0 - alpha
    refl += alpha * _CLOUD.astype(f32)
    refl *= np.where(shadow, atm["darkening"][p], 1.0).astype(f32)[:, :, None]
    refl += np.where(shadow, 0.01, 0.0).astype(f32)[:, :, None]  # blue-ish skylight in shadow
    eps = rng.standard_normal(refl.shape, dtype=f32)  # sensor noise, larger on bright pixels
    eps *= cfg.noise * (1.0 + 5.0 * refl)
    refl += eps
    refl *= 10000.0
    out = np.clip(np.rint(refl), 0, 20000).astype(np.int16)
    return out, cloud, shadow


# --------------------------------------------------------------------------- entry points


@dataclass(frozen=True)
class _Plan:
    """What is drawn once for the whole set; everything else is drawn block by block."""

    cls: np.ndarray  # (N,) class positions, int16
    ids: np.ndarray  # (N,) parcel ids, increasing
    empty: np.ndarray  # (N,) slivers with no pixel
    days: np.ndarray  # (T,) day of the year
    cloud_share: np.ndarray  # (T,) probability that a parcel is contaminated on each date
    wet: np.ndarray  # (T,) soil moisture factor
    gain: np.ndarray  # (T, C) residual atmospheric gain


def _plan(cfg: SimulationConfig, tab: dict[str, np.ndarray]) -> _Plan:
    n = cfg.n_parcels
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, SIMULATOR_VERSION, 0]))
    counts = _class_quotas(n, tab["share"])
    cls = rng.permutation(np.repeat(np.arange(len(counts), dtype=np.int16), counts))
    ids = np.sort(rng.choice(4 * n, size=n, replace=False))
    empty = np.zeros(n, dtype=bool)
    empty[rng.choice(n, size=int(round(cfg.empty_fraction * n)), replace=False)] = True
    n_dates = len(cfg.dates)
    cloudy_date = np.zeros(n_dates, dtype=bool)
    cloudy_date[rng.permutation(n_dates)[: int(round(cfg.cloudy_date_share * n_dates))]] = True
    share = np.where(cloudy_date, rng.uniform(*cfg.cloudy_cover, n_dates), 0.0)
    return _Plan(
        cls=cls,
        ids=ids,
        empty=empty,
        days=np.array([_parse_yyyymmdd(d).timetuple().tm_yday for d in cfg.dates], dtype=float),
        cloud_share=np.maximum(share, cfg.random_cloud_prob),
        wet=np.clip(rng.normal(1.0, 0.06, n_dates), 0.8, 1.15),
        gain=1.0 + rng.normal(0.0, 0.015, (n_dates, len(BANDS))),
    )


def _noisy_labels(
    rng: np.random.Generator, cls: np.ndarray, share: np.ndarray, rate: float
) -> np.ndarray:
    """The written class of each parcel: with probability ``rate`` another class, by share."""
    p = share / share.sum()
    other = np.where(np.arange(len(p))[None, :] == cls[:, None], 0.0, p[None, :])  # (N, K)
    cdf = np.cumsum(other, axis=1)
    u = rng.uniform(size=len(cls)) * cdf[:, -1]
    wrong = np.minimum((cdf <= u[:, None]).sum(axis=1), len(p) - 1)
    return np.where(rng.uniform(size=len(cls)) < rate, wrong, cls)


def _simulate_block(
    cfg: SimulationConfig, plan: _Plan, tab: dict[str, np.ndarray], block: int
) -> SimulatedSet:
    """Parcels ``block * _CHUNK`` to the next block's first, from their own random streams."""
    lo, hi = block * _CHUNK, min((block + 1) * _CHUNK, cfg.n_parcels)
    seeds = np.random.SeedSequence([cfg.seed, SIMULATOR_VERSION, 1, block]).spawn(6)
    rng_parcel, rng_phen, rng_spec, rng_atm, rng_het, rng_pix = map(np.random.default_rng, seeds)
    n, cls, empty = hi - lo, plan.cls[lo:hi].astype(np.int64), plan.empty[lo:hi]

    # areas: a log-normal body and a long tail of small parcels; shapes and their pixels
    body = np.exp(rng_parcel.normal(np.log(cfg.size_median), cfg.size_sigma, n))
    small = np.exp(rng_parcel.normal(np.log(cfg.small_median), cfg.small_sigma, n))
    area = np.where(rng_parcel.uniform(size=n) < cfg.small_share, small, body)
    area = np.clip(area * tab["size_scale"][cls], cfg.min_pixels, cfg.max_pixels)
    poly = _shapes(rng_parcel, area, empty)
    raster = _rasterise(poly)
    sizes = raster["sizes"]
    written = _noisy_labels(rng_parcel, cls, tab["share"], cfg.label_noise)

    # parcel-level phenology, spectra, surroundings and contamination
    frac = _phenology(rng_phen, cls, plan.days, tab, cfg.phenology_shift)
    spec = _parcel_spectra(rng_spec, cls, tab)
    beyond_cls, beyond = _neighbours(rng_spec, n, plan.days, plan.wet, tab, cfg, spec["soil"])
    spec["beyond"] = beyond.astype(np.float32)
    atm = _contamination(rng_atm, n, plan.cloud_share, cfg)

    # per-pixel arrays of the within-parcel heterogeneity
    centre = poly.mean(1)  # (n, 2)
    radius = np.maximum(np.max(np.linalg.norm(poly - centre[:, None], axis=-1), axis=1), 0.5)
    het = {
        "pix_sd": tab["pix_sd"][cls],
        "slope": rng_het.normal(0.0, 0.06, n),
        "slope_dir": rng_het.uniform(0.0, 2 * np.pi, n),
        "patch": np.where(rng_het.uniform(size=n) < 0.4, rng_het.normal(0.0, 0.25, n), 0.0),
        "patch_r": np.maximum(rng_het.uniform(0.15, 0.4, n) * np.sqrt(area), 0.7),
        "radius": radius,
    }
    # the patch centre: a random pixel of the parcel (or the centre if empty)
    start = np.cumsum(sizes) - sizes
    pick = start + np.floor(rng_het.uniform(size=n) * np.maximum(sizes, 1)).astype(np.int64)
    has = sizes > 0
    px, py = np.zeros(n), np.zeros(n)
    px[has] = raster["i"][pick[has]] - centre[has, 0]
    py[has] = raster["j"][pick[has]] - centre[has, 1]
    parcel = raster["parcel"]
    pix = {k: v[parcel] for k, v in het.items()}
    pix.update(
        parcel=parcel,
        border=raster["border"],
        x=raster["i"] - centre[parcel, 0],
        y=raster["j"] - centre[parcel, 1],
        patch_x=px[parcel],
        patch_y=py[parcel],
    )
    refl, cloud, shadow = _render_chunk(rng_pix, pix, frac, spec, atm, plan.wet, plan.gain, cfg)
    ids = plan.ids[lo:hi]
    pixels = {}
    for k in range(n):
        s, e = start[k], start[k] + sizes[k]
        pixels[int(ids[k])] = np.ascontiguousarray(refl[s:e].transpose(1, 2, 0))  # (T, C, n)
    # share of each parcel's pixels under a cloud or a shadow (pixels are grouped by parcel)
    cloud_share = np.zeros((n, len(plan.days)))
    shadow_share = np.zeros((n, len(plan.days)))
    if has.any():
        first, counts = start[has], sizes[has][:, None]
        cloud_share[has] = np.add.reduceat(cloud, first, axis=0, dtype=np.int64) / counts
        shadow_share[has] = np.add.reduceat(shadow, first, axis=0, dtype=np.int64) / counts
    spec_ids = np.array([s.id for s in CLASS_SPECS])
    groups = np.array([s.group for s in CLASS_SPECS])
    return SimulatedSet(
        config=cfg,
        dates=np.array(cfg.dates, dtype=np.int64),
        ids=ids,
        label_44class=spec_ids[written],
        label_19class=groups[written],
        sizes=sizes,
        geomfeat=_geomfeat(poly, raster),
        pixels=pixels,
        cloud=cloud_share,
        shadow=shadow_share,
        green=frac["green"] + frac["yellow"],
        true_label_44class=spec_ids[cls],
        neighbour_44class=np.where(beyond_cls >= 0, spec_ids[np.maximum(beyond_cls, 0)], -1),
    )


def simulate_blocks(config: SimulationConfig) -> Iterator[SimulatedSet]:
    """Simulate a dataset block by block (a few hundred parcels each), in id order.

    The blocks concatenated are :func:`simulate_arrays`'s result; only one block is in memory
    at a time (plus a few bytes per parcel), so any number of parcels can be streamed to disk.

    Parameters
    ----------
    config
        The parameters; the result depends on nothing else.

    Yields
    ------
    SimulatedSet
        The parcels of one block.
    """
    tab = _class_table(CLASS_SPECS)
    plan = _plan(config, tab)
    for block in range(-(-config.n_parcels // _CHUNK)):
        yield _simulate_block(config, plan, tab, block)


def simulate_arrays(config: SimulationConfig) -> SimulatedSet:
    """Simulate a dataset in memory (see the module's docstring for the model).

    Parameters
    ----------
    config
        The parameters; the result depends on nothing else.

    Returns
    -------
    SimulatedSet
        The arrays, labels, features and the hidden truth (clouds, green cover, clean labels).
    """
    blocks = list(simulate_blocks(config))
    pixels: dict[int, np.ndarray] = {}
    for b in blocks:
        pixels.update(b.pixels)

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(b, name) for b in blocks])

    return SimulatedSet(
        config=config,
        dates=blocks[0].dates,
        pixels=pixels,
        **{
            name: cat(name)
            for name in (
                "ids",
                "label_44class",
                "label_19class",
                "sizes",
                "geomfeat",
                "cloud",
                "shadow",
                "green",
                "true_label_44class",
                "neighbour_44class",
            )
        },  # fmt: skip
    )


def simulation_params(config: SimulationConfig) -> dict[str, object]:
    """What ``META/simulation.json`` records: the simulator version, the config, the classes."""
    return {
        "simulator_version": SIMULATOR_VERSION,
        "config": config.to_dict(),
        "bands": list(BANDS),
        "reflectance_scale": 10000,
        "label_44class_names": {str(s.id): s.name for s in CLASS_SPECS},
        "label_19class_names": dict(enumerate(LABEL_19CLASS_NAMES)),
        "label_19class_of_44class": {str(s.id): s.group for s in CLASS_SPECS},
        "note": "Simulated data (psetae.data.simulate), not S2-Agri: see data/README.md.",
    }


def _same_simulation(root: Path, params: Mapping[str, object]) -> list[str]:
    """Differences between the parameters ``root`` was simulated with and ``params``."""
    path = root / "META" / "simulation.json"
    if not path.is_file():
        raise OutputExistsError(
            f"{root}: exists but is not a simulated dataset ({path} is missing); "
            "choose another folder or delete it"
        )
    try:
        old = read_json(path)
    except DatasetFormatError as e:
        raise OutputExistsError(
            f"{root}: exists but its simulation record is unreadable: {e}"
        ) from e
    if not isinstance(old, dict):
        raise OutputExistsError(f"{path}: not a simulation record")
    new = json.loads(json.dumps(params))
    diffs = []
    if old.get("simulator_version") != new["simulator_version"]:
        diffs.append(f"simulator_version {old.get('simulator_version')} != {SIMULATOR_VERSION}")
    old_cfg, new_cfg = old.get("config") or {}, new["config"]
    for k in sorted(set(old_cfg) | set(new_cfg)):
        if old_cfg.get(k) != new_cfg.get(k):
            diffs.append(f"{k}: {old_cfg.get(k)!r} there, {new_cfg.get(k)!r} asked")
    return diffs


def simulate_s2agri(
    root: str | Path,
    n_parcels: int | None = None,
    seed: int | None = None,
    preset: str = "book",
    config: SimulationConfig | None = None,
    exist_ok: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write a simulated S2-Agri dataset folder (S2-Agri pixel-set format), atomically.

    The folder holds ``DATA/<id>.npy`` (int16 reflectance x 10000, (T, C, n)),
    ``META/labels.json`` (``label_44class`` with the real S2-Agri ids and this simulator's
    ``label_19class``), ``META/dates.json``, ``META/geomfeat.json``, ``META/sizes.json``,
    ``META/simulation.json`` (the parameters), ``META/simulation_clouds.json`` (which dates
    of which parcels are contaminated), ``META/simulation_labels.json`` (the simulated class
    of the parcels whose written label is wrong) and the per date and channel normalisation
    (``normalisation.json`` and the reference's ``normalisation.pkl``). Parcels are simulated
    and written block by block (see :func:`simulate_blocks`): memory stays bounded whatever
    ``n_parcels``.

    Parameters
    ----------
    root
        The folder to create.
    n_parcels, seed
        Replace the preset's values when given.
    preset
        A name of :data:`PRESETS` (``"book"``, ``"test"``, ``"large"``); ignored if ``config``.
    config
        The full configuration (then ``n_parcels`` and ``seed`` still override it).
    exist_ok
        If ``root`` exists and was simulated with the same parameters, return it at once.
    overwrite
        Replace ``root`` whatever it holds.

    Returns
    -------
    Path
        ``root``.

    Raises
    ------
    FileExistsError
        ``root`` exists and neither flag allows it, or (``exist_ok``) it exists with other
        parameters or is not a simulated dataset; the message lists the differences.
    ValueError
        Unknown preset or invalid parameters.
    """
    root = Path(root)
    cfg = config if config is not None else SimulationConfig.from_preset(preset)
    overrides = {k: v for k, v in (("n_parcels", n_parcels), ("seed", seed)) if v is not None}
    cfg = dataclasses.replace(cfg, **overrides)
    params = simulation_params(cfg)
    if root.exists() and not overwrite:
        if not exist_ok:
            raise OutputExistsError(
                f"{root}: exists already (pass exist_ok=True or overwrite=True)"
            )
        diffs = _same_simulation(root, params)
        if not diffs:
            return root
        raise OutputExistsError(
            f"{root}: exists but was simulated with other parameters ({'; '.join(diffs)}); "
            "delete it, choose another folder or pass overwrite=True"
        )

    return _write_streaming(root, cfg, params)


def _write_id_map(f: TextIO, ids: np.ndarray, values: list[str]) -> None:
    """Write ``{"<id>": <value>, ...}`` (values already JSON text), as ``json.dump`` would."""
    f.write("{")
    f.write(", ".join(f'"{i}": {v}' for i, v in zip(ids.tolist(), values, strict=True)))
    f.write("}")


def _dates_lists(share: np.ndarray) -> list[str]:
    return [json.dumps(np.flatnonzero(row > 0).tolist()) for row in share]


def _write_streaming(root: Path, cfg: SimulationConfig, params: dict[str, object]) -> Path:
    """Simulate block by block into a temporary sibling folder, then swap it into place.

    Per parcel only a few numbers are kept (id, labels, size, geometric features, which dates
    are contaminated); the pixels of a block are written and dropped, and the normalisation is
    accumulated exactly (integer sums), so memory does not grow with the number of parcels
    beyond those few numbers.
    """
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{uuid.uuid4().hex[:8]}"
    kept: dict[str, list[np.ndarray]] = {k: [] for k in ("ids", "l44", "l19", "sizes", "geom")}
    dirty: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"cloud": [], "shadow": []}
    noisy: list[tuple[np.ndarray, np.ndarray]] = []
    s1 = np.zeros((len(cfg.dates), len(BANDS)), dtype=np.int64)
    s2 = np.zeros_like(s1)
    try:
        (tmp / "DATA").mkdir(parents=True)
        (tmp / "META").mkdir()
        for b in simulate_blocks(cfg):
            for pid, arr in b.pixels.items():
                np.save(tmp / "DATA" / f"{pid}.npy", arr, allow_pickle=False)
                a = arr.astype(np.int64)
                s1 += a.sum(axis=2)
                s2 += np.square(a).sum(axis=2)
            for k, v in zip(kept, (b.ids, b.label_44class, b.label_19class, b.sizes, b.geomfeat),
                            strict=True):  # fmt: skip
                kept[k].append(v)
            for kind, share in (("cloud", b.cloud), ("shadow", b.shadow)):
                rows = np.flatnonzero((share > 0).any(axis=1))
                dirty[kind].append((b.ids[rows], np.packbits(share[rows] > 0, axis=1)))
            wrong = np.flatnonzero(b.label_44class != b.true_label_44class)
            noisy.append((b.ids[wrong], b.true_label_44class[wrong]))
        ids, l44, l19, sizes, geom = (np.concatenate(kept[k]) for k in kept)
        meta = tmp / "META"
        with open(meta / "labels.json", "w", encoding="utf-8") as f:
            f.write('{"label_44class": ')
            _write_id_map(f, ids, [str(v) for v in l44.tolist()])
            f.write(', "label_19class": ')
            _write_id_map(f, ids, [str(v) for v in l19.tolist()])
            f.write("}")
        with open(meta / "sizes.json", "w", encoding="utf-8") as f:
            _write_id_map(f, ids, [str(v) for v in sizes.tolist()])
        with open(meta / "geomfeat.json", "w", encoding="utf-8") as f:
            _write_id_map(f, ids, [json.dumps(row) for row in geom.tolist()])
        with open(meta / "simulation_clouds.json", "w", encoding="utf-8") as f:
            for n, kind in enumerate(("cloud", "shadow")):
                f.write(f'{"{" if n == 0 else ", "}"{kind}": ')
                which = np.concatenate([d[0] for d in dirty[kind]])
                bits = np.concatenate([d[1] for d in dirty[kind]])
                share = np.unpackbits(bits, axis=1, count=len(cfg.dates))
                _write_id_map(f, which, _dates_lists(share))
            f.write("}")
        with open(meta / "simulation_labels.json", "w", encoding="utf-8") as f:
            f.write('{"true_label_44class": ')
            wrong_ids, true = (np.concatenate([x[k] for x in noisy]) for k in (0, 1))
            _write_id_map(f, wrong_ids, [str(v) for v in true.tolist()])
            f.write("}")
        with open(meta / "dates.json", "w", encoding="utf-8") as f:
            json.dump({str(k): int(d) for k, d in enumerate(cfg.dates)}, f)
        with open(meta / "simulation.json", "w", encoding="utf-8") as f:
            json.dump(params, f)
        count = int(sizes.sum())
        if count == 0:
            raise ValueError("the simulation has no pixels to compute the normalisation from")
        mean = s1 / count
        std = np.sqrt(np.maximum(s2 / count - np.square(mean), 0.0))
        write_normalisation(tmp, mean, std, per="date_channel")
        replace_dir(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
