"""``output/tables/``: the per-frame values and the events of every video as tables
that pandas, Polars, DuckDB and spreadsheets read directly (``--tables parquet|csv``).

Two tables, each a dataset partitioned by video (Hive layout), so a batch reads as
one table::

    tables/frames/video=<name>/<name>.parquet   one row per analysed frame and person shown
    tables/events/video=<name>/<name>.parquet   one row per event (jump, drop, contact, repetition)

The ``video`` column comes from the folder name (``pyarrow.dataset`` with Hive
partitioning, ``read_parquet(..., hive_partitioning=true)`` in DuckDB,
``pl.scan_parquet(..., hive_partitioning=True)`` in Polars); the files do not repeat it.

Frames table columns (the pose JSON's per-frame values, unrounded; the README lists them):
``frame``, ``time_s``, ``person``; for each of the 33 landmarks ``<name>_x``, ``_y``
(normalised image coordinates), ``_z``, ``_visibility``, ``_presence`` and
``<name>_world_x_m``, ``_world_y_m``, ``_world_z_m``; ``<angle>_deg`` and
``<angle>_velocity_deg_s`` per joint angle; ``com_x_px``, ``com_y_px``,
``com_height_bh``; ``speed_<point>_bh_s`` per velocity point; ``ground_contact``; and
the same positions and speeds in metres (``com_x_m``, ``com_y_m`` with y upwards from
the frame's bottom edge, ``com_height_m``, ``speed_<point>_m_s``), null for a person
without a height (``--person_height``). Every video has the same columns.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from pipeline import storage
from pipeline.analysis.analyzer import Analysis
from pipeline.analysis.body import VELOCITY_POINTS
from pipeline.analysis.store import AnalysisStore
from pipeline.config import PipelineConfig
from pipeline.errors import OutputError
from pipeline.outputs.registry import DiskNeed, OutputPlan, OutputTask, OutputWriter, VideoOutputs
from pipeline.pose.skeleton import ANGLE_NAMES, LANDMARK_NAMES
from pipeline.video.probe import VideoInfo

TABLES = ("frames", "events")
LANDMARK_FIELDS = ("x", "y", "z", "visibility", "presence")
WORLD_FIELDS = ("world_x_m", "world_y_m", "world_z_m")
# Disk estimates, bytes per frame and person: measured on the sample clip 1,791 (Parquet) and 3,511
# (CSV), bench/formats.py; rounded up (a person with every value known writes more).
PARQUET_BYTES_PER_FRAME_PERSON = 2048
CSV_BYTES_PER_FRAME_PERSON = 4096


def _frame_fields(pa) -> list:
    f32 = pa.float32()
    fields = [pa.field("frame", pa.int32()), pa.field("time_s", pa.float64()), pa.field("person", pa.int32())]
    for name in LANDMARK_NAMES:
        fields += [pa.field(f"{name}_{field}", f32) for field in LANDMARK_FIELDS]
    for name in LANDMARK_NAMES:
        fields += [pa.field(f"{name}_{field}", f32) for field in WORLD_FIELDS]
    fields += [pa.field(f"{name}_deg", f32) for name in ANGLE_NAMES]
    fields += [pa.field(f"{name}_velocity_deg_s", f32) for name in ANGLE_NAMES]
    fields += [pa.field(name, f32) for name in ("com_x_px", "com_y_px", "com_height_bh")]
    fields += [pa.field(f"speed_{point}_bh_s", f32) for point in VELOCITY_POINTS]
    fields.append(pa.field("ground_contact", pa.bool_()))
    fields += [pa.field(name, f32) for name in ("com_x_m", "com_y_m", "com_height_m")]
    fields += [pa.field(f"speed_{point}_m_s", f32) for point in VELOCITY_POINTS]
    return fields


def frames_schema():
    import pyarrow as pa  # imported when used: the driver never needs pyarrow

    return pa.schema(_frame_fields(pa))


# The events table: every key any event has, with its type (null where an event has no such value).
EVENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("person", "int32"),
    ("type", "string"),
    ("start_frame", "int32"),
    ("end_frame", "int32"),
    ("start_s", "float64"),
    ("end_s", "float64"),
    ("takeoff_frame", "int32"),
    ("apex_frame", "int32"),
    ("landing_frame", "int32"),
    ("flight_time_s", "float64"),
    ("height_m", "float64"),
    ("com_rise_bh", "float64"),
    ("com_rise_m", "float64"),
    ("heights_agree", "bool_"),
    ("rise_bh", "float64"),
    ("level_change_bh", "float64"),
    ("contact_time_s", "float64"),
    ("index", "int32"),
    ("peak_frame", "int32"),
    ("peak_s", "float64"),
    ("signal", "string"),
    ("amplitude", "float64"),
    ("plausible", "bool_"),
    ("flags", "string"),  # the event's flags, "; "-joined (empty: none)
)


def events_schema():
    import pyarrow as pa

    return pa.schema([pa.field(name, getattr(pa, kind)()) for name, kind in EVENT_COLUMNS])


def _scales(summary: dict) -> tuple[dict[int, float], dict[int, float]]:
    """Per person id with a height: metres per pixel, and the height in metres."""
    per_px, height = {}, {}
    for person in summary.get("persons", []):
        scale = person.get("scale")
        if scale:
            per_px[person["id"]], height[person["id"]] = scale["metres_per_px"], scale["height_m"]
    return per_px, height


def frame_columns(block: Analysis, frame_height: int, scales: tuple[dict, dict]) -> dict[str, np.ndarray]:
    """The frames table's columns for one block of a stored analysis (the persons it shows)."""
    track = block.track
    rows, lanes, ids = block.persons_shown()
    columns: dict[str, np.ndarray] = {
        "frame": track.frame_index[rows].astype(np.int32),
        "time_s": track.timestamp_ms[rows].astype(np.float64) / 1000.0,
        "person": ids.astype(np.int32),
    }
    image = np.concatenate([track.image_xyzv[rows, lanes], track.presence[rows, lanes][..., None]], axis=-1)
    world = track.world_xyz[rows, lanes]
    for k, name in enumerate(LANDMARK_NAMES):
        for j, field in enumerate(LANDMARK_FIELDS):
            columns[f"{name}_{field}"] = image[:, k, j]
    for k, name in enumerate(LANDMARK_NAMES):
        for j, field in enumerate(WORLD_FIELDS):
            columns[f"{name}_{field}"] = world[:, k, j]
    angles, velocity = block.angles[rows, lanes], block.angular_velocity[rows, lanes]
    for k, name in enumerate(ANGLE_NAMES):
        columns[f"{name}_deg"] = angles[:, k]
    for k, name in enumerate(ANGLE_NAMES):
        columns[f"{name}_velocity_deg_s"] = velocity[:, k]
    com = block.com_px[rows, lanes]
    columns["com_x_px"], columns["com_y_px"] = com[:, 0], com[:, 1]
    columns["com_height_bh"] = block.com_height_bh[rows, lanes]
    speed = block.speed_bh_s[rows, lanes]
    for k, point in enumerate(VELOCITY_POINTS):
        columns[f"speed_{point}_bh_s"] = speed[:, k]
    contact = block.contact[rows, lanes]
    columns["ground_contact"] = np.where(contact < 0, None, contact == 1)  # None: unknown
    per_px, height = scales
    mpp = np.array([per_px.get(int(i), np.nan) for i in ids], dtype=np.float64)
    metres = np.array([height.get(int(i), np.nan) for i in ids], dtype=np.float64)
    columns["com_x_m"] = (com[:, 0] * mpp).astype(np.float32)
    columns["com_y_m"] = ((frame_height - com[:, 1]) * mpp).astype(np.float32)
    columns["com_height_m"] = (columns["com_height_bh"] * metres).astype(np.float32)
    for k, point in enumerate(VELOCITY_POINTS):
        columns[f"speed_{point}_m_s"] = (speed[:, k] * metres).astype(np.float32)
    return columns


def _record_batch(pa, schema, columns: dict[str, np.ndarray]):
    arrays = []
    for field in schema:
        values = columns[field.name]
        if field.type == pa.bool_():
            arrays.append(pa.array(values.tolist(), type=field.type))
        else:  # NaN is a missing value, as in the pose JSON's nulls
            arrays.append(pa.array(values, type=field.type, from_pandas=True))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def event_rows(events) -> dict[str, list]:
    """The events table's columns (lists, None where an event has no such value)."""
    rows: dict[str, list] = {name: [] for name, _ in EVENT_COLUMNS}
    for event in events:
        start_s = event.get("start_s", event.get("takeoff_s"))
        end_s = event.get("end_s", event.get("landing_s"))
        for name, _ in EVENT_COLUMNS:
            if name == "start_s":
                value = start_s
            elif name == "end_s":
                value = end_s
            elif name == "flags":
                value = "; ".join(event.get("flags", []))
            else:
                value = event.get(name)
            rows[name].append(value)
    return rows


class _Sink:
    """Batches to one file, as Parquet or CSV."""

    def __init__(self, fh, schema, kind: str) -> None:
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        self._writer = (
            pq.ParquetWriter(fh, schema, compression="zstd") if kind == "parquet" else pcsv.CSVWriter(fh, schema)
        )

    def write(self, batch) -> None:
        self._writer.write_batch(batch)

    def close(self) -> None:
        self._writer.close()


def write_frames_table(location: str, store: AnalysisStore, frame_height: int, kind: str) -> str:
    """The frames table of one video, written a block of frames at a time."""
    import pyarrow as pa

    schema = frames_schema()
    scales = _scales(store.summary)

    def write(fh) -> None:
        sink = _Sink(fh, schema, kind)
        try:
            for block in store.blocks():
                sink.write(_record_batch(pa, schema, frame_columns(block, frame_height, scales)))
        finally:
            sink.close()

    return storage.atomic_write(location, write)


def write_events_table(location: str, events, kind: str) -> str:
    import pyarrow as pa

    schema = events_schema()
    table = pa.Table.from_pydict(event_rows(events), schema=schema)

    def write(fh) -> None:
        sink = _Sink(fh, schema, kind)
        try:
            for batch in table.to_batches() or [pa.RecordBatch.from_pylist([], schema=schema)]:
                sink.write(batch)
        finally:
            sink.close()

    return storage.atomic_write(location, write)


def table_location(output_dir: str, table: str, name: str, kind: str) -> str:
    """``output_dir/tables/<table>/video=<name>/<name>.<kind>``."""
    return storage.join(output_dir, "tables", table, f"video={name}", f"{name}.{kind}")


def write_tables(frames_at: str, events_at: str, store: str, frame_height: int, kind: str) -> str:
    """Both tables of a video from its stored analysis."""
    analysis = AnalysisStore(store)
    write_events_table(events_at, analysis.events, kind)
    return write_frames_table(frames_at, analysis, frame_height, kind)


# The tables are written by a process of their own: pyarrow, once imported, keeps about 60 MiB in
# the process for good, which a long-lived Dask worker would then hold through every later render
# (a run at --memory_limit 0.3 on an 8 GiB laptop has no such room). The process is admitted by the
# memory monitor like any task ("table" in pipeline.memory) and ends when the tables are written.
TABLES_TIMEOUT_S = 3600.0  # hours of video are written in under a minute


def main(argv: list[str]) -> None:
    """The tables' process: ``frames_at events_at store frame_height kind`` (``tables_task``)."""
    frames_at, events_at, store, frame_height, kind = argv
    write_tables(frames_at, events_at, store, int(frame_height), kind)


def tables_task(frames_at: str, events_at: str, store: str, frame_height: int, kind: str) -> str:
    """Task: both tables of a video, written by a child process (``write_tables``)."""
    child = "import sys; from pipeline.outputs.tables import main; main(sys.argv[1:])"
    command = [sys.executable, "-c", child, frames_at, events_at, store, str(frame_height), kind]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TABLES_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise OutputError(f"tables: not written within {TABLES_TIMEOUT_S:.0f} s") from exc
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise OutputError(f"tables: {lines[-1] if lines else f'the writing process ended with code {done.returncode}'}")
    return frames_at


class TablesWriter(OutputWriter):
    name = "tables"
    label = "tables"

    def enabled(self, config: PipelineConfig) -> bool:
        return config.tables != "none"

    def location(self, config: PipelineConfig, name: str) -> str:
        return table_location(config.output_dir, "frames", name, config.tables)

    def files(self, config: PipelineConfig, name: str) -> tuple[str, ...]:
        return tuple(table_location(config.output_dir, table, name, config.tables) for table in TABLES)

    def disk_need(self, config: PipelineConfig, info: VideoInfo) -> DiskNeed:
        per_frame = PARQUET_BYTES_PER_FRAME_PERSON if config.tables == "parquet" else CSV_BYTES_PER_FRAME_PERSON
        return DiskNeed(
            config.output_dir, f"{config.tables} tables", info.frame_count * config.resolved_num_poses * per_frame
        )

    def plan(self, video: VideoOutputs) -> OutputPlan:
        config = video.config
        frames_at, events_at = (
            storage.absolute(table_location(config.output_dir, table, video.name, config.tables)) for table in TABLES
        )
        args = (frames_at, events_at, video.store, video.info.height, config.tables)
        return OutputPlan([OutputTask(tables_task, args, f"tables-{video.name}", "table")])
