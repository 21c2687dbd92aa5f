"""The edges: Flask app (API, review UI, dashboard), the `cascade` CLI, the embedded runner."""
