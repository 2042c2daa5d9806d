"""Entry point: ``python pipeline.py --input public``. See ``--help``."""

from pipeline.cli import main

if __name__ == "__main__":  # Dask's worker processes re-import this module
    raise SystemExit(main())
