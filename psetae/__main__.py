"""``python -m psetae``: the command line (see :mod:`psetae.cli`)."""

from psetae.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
