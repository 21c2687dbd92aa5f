"""Cascade core: settings, routing policy, pipeline, Celery tasks, storage and cost model."""

__version__ = "0.1.0"
