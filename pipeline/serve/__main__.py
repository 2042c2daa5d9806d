"""``python -m pipeline.serve``: the job service."""

from pipeline.serve import main

if __name__ == "__main__":  # Dask's worker processes re-import this module
    raise SystemExit(main())
