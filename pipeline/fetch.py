"""``python -m pipeline.fetch``: fetch the pose models and the sample video ahead of time."""

from __future__ import annotations

import argparse
import logging
import sys

from pipeline.assets import fetch, fetch_sample_video
from pipeline.errors import PipelineError


def main(argv: list[str] | None = None) -> int:
    from pipeline.pose.models import MODEL_PRESETS

    parser = argparse.ArgumentParser(description="Fetch the pose models and the sample video.")
    parser.add_argument("--public", default="public", help="folder for the sample video")
    parser.add_argument("--no-sample", action="store_true", help="only fetch the models")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        for name, asset in MODEL_PRESETS.items():
            print(f"model {name}: {fetch(asset)}")
        if not args.no_sample:
            print(f"sample video: {fetch_sample_video(args.public)}")
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
