"""One call that gives the book (and the command line) a dataset folder, whatever the machine.

``prepare_dataset("simulated")`` writes the simulated S2-Agri of the book's preset once (offline,
deterministic; later calls return at once); ``prepare_dataset("s2agri")`` downloads the real S2-Agri
pixel-set release from Zenodo (resumable, verified; later calls return at once).
"""

from __future__ import annotations

from pathlib import Path

from psetae.io import cleanup_stale_temporaries

DATASETS = ("simulated", "s2agri")


def prepare_dataset(
    name: str = "simulated", data_dir: str | Path = "../data", progress: bool = True
) -> Path:
    """Return the root folder of a dataset in the S2-Agri pixel-set format, preparing it if needed.

    Parameters
    ----------
    name
        ``"simulated"``: the simulated S2-Agri written by :func:`psetae.data.simulate.simulate_s2agri`
        with the ``"book"`` preset, in ``data_dir/s2agri-sim``. ``"s2agri"``: the real S2-Agri
        pixel-set set (Zenodo record 5815488), downloaded into ``data_dir/s2agri``.
    data_dir
        Folder that holds the datasets (the repository's ``data/`` by default, seen from ``book/``).
    progress
        Show progress bars.

    Raises
    ------
    ValueError
        For an unknown dataset name.
    """
    data_dir = Path(data_dir)
    if name == "simulated":
        from psetae.data.simulate import simulate_s2agri

        root = data_dir / "s2agri-sim"
        # A run killed while swapping folders left the old copy hidden: put it back first.
        cleanup_stale_temporaries(data_dir, root.name)
        try:
            return simulate_s2agri(root, preset="book", exist_ok=True)
        except FileExistsError:
            # The folder holds a simulation from other parameters or an older simulator: it is a
            # derived, deterministic artefact, so write it anew. Anything else is never replaced.
            if not (root / "META" / "simulation.json").is_file():
                raise
            print(f"{root} was simulated with other settings; simulating it again", flush=True)
            return simulate_s2agri(root, preset="book", overwrite=True)
    if name == "s2agri":
        from psetae.data.download import download_s2agri

        return download_s2agri(data_dir / "s2agri", progress=progress)
    raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
