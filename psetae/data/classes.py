"""The paper's 20 classes of S2-Agri's ``label_44class`` nomenclature.

S2-Agri labels each parcel in two nomenclatures; the paper keeps the 20 classes of
``label_44class`` that have more than 100 parcels and maps them to 0..19 in the order
below (see book/contract.md).
"""

from __future__ import annotations

__all__ = ["S2AGRI_NOMENCLATURE", "S2AGRI_CLASSES", "S2AGRI_CLASS_NAMES", "s2agri_class_name"]

#: The nomenclature of ``META/labels.json`` the paper uses.
S2AGRI_NOMENCLATURE = "label_44class"

#: The ``label_44class`` ids the paper keeps; position i is the model's class i.
S2AGRI_CLASSES: list[int] = [
    1,
    3,
    4,
    5,
    6,
    8,
    9,
    12,
    13,
    14,
    16,
    18,
    19,
    23,
    28,
    31,
    33,
    34,
    36,
    39,
]

#: Names of the 20 classes, in the same order as :data:`S2AGRI_CLASSES`.
S2AGRI_CLASS_NAMES: list[str] = [
    "Meadow",
    "Winter Durum Wheat",
    "Spring Cereal",
    "Summer Cereal",
    "Winter Cereal",
    "Sorghum/Millet/Moha",
    "Cereal",
    "Leguminous Fodder",
    "Other Fodder",
    "Winter Rapeseed",
    "Sunflower",
    "Soy",
    "Protein Crop",
    "Potato",
    "Fruits/Vegetables/Flowers",
    "Ligneous",
    "Orchards",
    "Grapevine",
    "Non-agricultural Surface",
    "Wood",
]


def s2agri_class_name(label_44class: int) -> str:
    """Name of a ``label_44class`` id among the paper's 20 classes.

    Raises
    ------
    KeyError
        The id is not one of :data:`S2AGRI_CLASSES`.
    """
    try:
        return S2AGRI_CLASS_NAMES[S2AGRI_CLASSES.index(int(label_44class))]
    except ValueError:
        raise KeyError(f"{label_44class} is not one of the paper's 20 classes") from None
