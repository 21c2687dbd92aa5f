"""gunicorn settings: Prometheus multiprocess clean-up when a web worker exits."""

from typing import Any


def child_exit(server: Any, worker: Any) -> None:
    from cascade.metrics import mark_process_dead

    mark_process_dead(worker.pid)
