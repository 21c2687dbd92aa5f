"""gunicorn settings: Prometheus multiprocess clean-up when a web worker exits."""

from typing import Any


def child_exit(server: Any, worker: Any) -> None:
    import os

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
