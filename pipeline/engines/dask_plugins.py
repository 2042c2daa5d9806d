"""Dask worker plugins the run installs on a cluster it attaches to (imported only then:
``distributed`` is a heavy import)."""

from __future__ import annotations

from distributed.diagnostics.plugin import WorkerPlugin

from pipeline import storage


class StorageOptions(WorkerPlugin):
    """Sets the run's object-store options (``storage.configure``) on every worker of an
    attached cluster, those that join later too. Never credentials (``configure`` refuses them)."""

    name = "pose-pipeline-storage-options"

    def __init__(self, options: dict[str, str]) -> None:
        self.options = dict(options)

    def setup(self, worker) -> None:
        storage.configure(self.options)
