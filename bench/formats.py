"""Bytes per frame and person of each per-frame output, measured on the sample clip
(two people; ``--quality fast``, every output, ``--person_height 1.8``), once with
``--tables parquet`` and once with ``--tables csv``.

    .venv/bin/python bench/formats.py [--out bench/formats.json]

"Frame and person" counts the rows of the frames table: every analysed frame times the
persons shown in it. The TRC and MOT files hold a row per analysed frame from a person's
first to last frame (empty where the person is not seen), so their figure is per row of
those files. Prints a table and writes JSON; docs/benchmarks.md ("Output sizes") and the
README quote it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "public" / "demo.mp4"
FLAGS = ["--quality", "fast", "--person_height", "1.8", "--no_llm_data", "--quiet"]


def run(folder: Path, tables: str) -> None:
    args = [sys.executable, str(ROOT / "pipeline.py"), "--video", str(SAMPLE), *FLAGS, "--tables", tables]
    args += ["--output", str(folder / "output"), "--models", str(folder / "models")]
    subprocess.run(args, check=True, cwd=folder)


def data_rows(path: Path, header_lines: int) -> int:
    """Lines after the header (TRC: 5 lines and a blank one; MOT: 6 lines and the column names)."""
    return len(path.read_text(encoding="utf-8").splitlines()) - header_lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "formats.json"))
    args = parser.parse_args()
    sizes: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-formats-") as tmp:
        for tables in ("parquet", "csv"):
            folder = Path(tmp, tables)
            folder.mkdir()
            run(folder, tables)
            output, models = folder / "output", folder / "models"
            document = json.loads((models / "demo_pose.json").read_text(encoding="utf-8"))
            shown = sum(len(f["persons"] or []) for f in document["frames"])
            frames_table = output / "tables" / "frames" / "video=demo" / f"demo.{tables}"
            sizes[f"frames table ({tables})"] = {"bytes": frames_table.stat().st_size, "rows": shown}
            if tables == "csv":
                continue
            sizes["pose JSON"] = {"bytes": (models / "demo_pose.json").stat().st_size, "rows": shown}
            sizes["angles CSV"] = {"bytes": (output / "demo_angles.csv").stat().st_size, "rows": shown}
            trc = sorted((output / "opensim" / "demo").glob("*.trc"))
            mot = sorted((output / "opensim" / "demo").glob("*.mot"))
            sizes["TRC"] = {"bytes": sum(p.stat().st_size for p in trc), "rows": sum(data_rows(p, 6) for p in trc)}
            sizes["MOT"] = {"bytes": sum(p.stat().st_size for p in mot), "rows": sum(data_rows(p, 7) for p in mot)}
    for entry in sizes.values():
        entry["bytes_per_frame_person"] = round(entry["bytes"] / entry["rows"])
    width = max(len(name) for name in sizes)
    for name, entry in sizes.items():
        print(
            f"{name:<{width}}  {entry['bytes']:>9} B  {entry['rows']:>5} rows  {entry['bytes_per_frame_person']:>6} B/row"
        )
    result = {"clip": "public/demo.mp4 (230 frames, two people)", "flags": FLAGS, "sizes": sizes}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
