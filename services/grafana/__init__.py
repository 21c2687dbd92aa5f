"""Grafana as code: the dashboard JSON built from the metric names, and its provisioning."""
