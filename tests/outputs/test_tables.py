"""The per-frame and event tables (``--tables``): one Parquet dataset partitioned by video
for the whole batch, read back with pyarrow and with DuckDB (a reader the project did not
write) and checked against each video's pose JSON, value by value."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from pose_tables import check_events_table, check_frames_table, check_metres, load_document

from pipeline.outputs.tables import EVENT_COLUMNS, frames_schema

VIDEOS = ("demo", "jump", "reps")


def _tables_root(batch) -> Path:
    frames = Path(next(v for v in batch.videos if v.name == "jump").outputs["tables"])
    return frames.parents[2]  # tables/frames/video=jump/jump.parquet -> tables


def _documents(batch) -> dict[str, dict]:
    return {v.name: load_document(v.outputs["pose_json"]) for v in batch.videos}


def _dataset(root: Path, table: str) -> ds.Dataset:
    video = ds.partitioning(pa.schema([("video", pa.string())]), flavor="hive")
    return ds.dataset(root / table, format="parquet", partitioning=video)


def test_the_batch_reads_as_one_table_equal_to_the_pose_json(batch):
    root = _tables_root(batch)
    assert sorted(p.name for p in (root / "frames").iterdir()) == [f"video={name}" for name in VIDEOS]
    table = _dataset(root, "frames").to_table()
    # One schema for every video: the frames columns, and the video from the folder.
    assert table.schema.names == [*frames_schema().names, "video"]
    documents = _documents(batch)
    compared = 0
    for name, document in documents.items():
        rows = table.filter(pa.compute.field("video") == name).to_pylist()
        assert rows, name
        compared += check_frames_table(rows, document)
        check_metres(rows, document)
    assert compared > 100_000  # every value of every person shown, in three videos


def test_duckdb_reads_the_partitioned_dataset(batch):
    root = _tables_root(batch)
    documents = _documents(batch)
    connection = duckdb.connect()
    counts = connection.execute(
        f"SELECT video, count(*) FROM read_parquet('{root}/frames/*/*.parquet', hive_partitioning = true) "
        "GROUP BY video ORDER BY video"
    ).fetchall()
    shown = {name: sum(len(f["persons"] or []) for f in doc["frames"]) for name, doc in documents.items()}
    assert counts == sorted(shown.items())
    # A question an analyst asks: the jumper's highest centre of mass, in metres, and when.
    top = connection.execute(
        f"SELECT frame, com_height_m FROM read_parquet('{root}/frames/*/*.parquet', hive_partitioning = true) "
        "WHERE video = 'jump' AND person = 0 ORDER BY com_height_m DESC NULLS LAST LIMIT 1"
    ).fetchone()
    jump = documents["jump"]
    person = next(p for p in jump["summary"]["persons"] if p["id"] == 0)
    assert top[1] == pytest.approx(person["com_height_m"]["max"], abs=1.5e-3)
    events = connection.execute(
        f"SELECT video, count(*) FILTER (WHERE type = 'jump') FROM read_parquet('{root}/events/*/*.parquet', "
        "hive_partitioning = true) GROUP BY video ORDER BY video"
    ).fetchall()
    assert events == sorted((name, doc["summary"]["event_counts"]["jump"]) for name, doc in documents.items())


def test_events_table_equals_the_pose_json_events(batch):
    root = _tables_root(batch)
    table = _dataset(root, "events").to_table()
    assert table.schema.names == [*(name for name, _ in EVENT_COLUMNS), "video"]
    for name, document in _documents(batch).items():
        rows = table.filter(pa.compute.field("video") == name).to_pylist()
        check_events_table(rows, document)


def test_metres_are_given_only_for_persons_with_a_height(batch):
    """jump: a height for every person; demo: for person 0 only; reps: none."""
    documents = _documents(batch)
    scaled = {
        name: sorted(p["id"] for p in doc["summary"]["persons"] if p.get("scale")) for name, doc in documents.items()
    }
    assert scaled["jump"] == [0] and scaled["demo"] == [0] and scaled["reps"] == []
    assert documents["demo"]["settings"]["person_height_m"] == {"0": 1.8}
    assert documents["reps"]["settings"]["person_height_m"] is None
